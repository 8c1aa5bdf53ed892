// unrolled viz: the page. Plain JavaScript, no build step, no library.
// It talks to the local server's JSON (/api/...), or, in an exported page, to the data embedded in
// window.UNROLLED_DATA through the same functions (localApi below), so both pages run the same code.
"use strict";

const CHAR_W = 10;            // pixels per character on the time axis (style.css .text-row span)
const PLOT_H = 240;           // the tracks' canvas height
const WINDOW = 120;           // characters on screen
const HEAT_CELL = [CHAR_W, 7]; // a match heat map's cell: one character wide, 7 pixels per selected cell

const view = {info: null, layer: 0, quantity: "h", threshold: 0.3, start: 0, window: null,
              brush: null, dragging: false, selected: [], matches: [], cell: null};
window.vizTimings = {};

// ------------------------------------------------------------------ data

// float16 -> float32 by a table of all 65536 bit patterns
const F16 = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h >> 15, exponent = (h >> 10) & 31, fraction = h & 1023;
    let value;
    if (exponent === 0) value = fraction * 2 ** -24;
    else if (exponent === 31) value = fraction ? NaN : Infinity;
    else value = (1 + fraction / 1024) * 2 ** (exponent - 15);
    table[h] = sign ? -value : value;
  }
  return table;
})();

function decode(values) {
  if (typeof values !== "string") return values; // already numbers (an exported page)
  const bytes = atob(values), out = new Float32Array(bytes.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = F16[bytes.charCodeAt(2 * i) | (bytes.charCodeAt(2 * i + 1) << 8)];
  return out;
}

async function api(path, params = {}) {
  if (window.UNROLLED_DATA) return localApi(path, params);
  const url = new URL(path, window.location.href);
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function showError(error) {
  const box = document.getElementById("error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

// ------------------------------------------------------------------ the embedded data of an exported page

const local = {tracks: {}};

function localTrack(layer, quantity) {  // (H * N) float32, cell-major
  const key = `l${layer}.${quantity}`, data = window.UNROLLED_DATA;
  if (!(key in data.states)) throw new Error(`quantity ${quantity} of layer ${layer} was not exported`);
  if (!local.tracks[key]) local.tracks[key] = decode(data.states[key]);
  return local.tracks[key];
}

function localRows(track, cells, start, end) {
  const n = window.UNROLLED_DATA.text.length, width = end - start + 1, out = new Float32Array(cells.length * width);
  cells.forEach((c, r) => out.set(track.subarray(c * n + start, c * n + end + 1), r * width));
  return out;
}

function localApi(path, p) {
  const data = window.UNROLLED_DATA, text = data.text, n = text.length;
  const hidden = data.info.states ? data.info.states.hidden : 0, all = [...Array(hidden).keys()];
  const at = (name) => Number(p[name]);
  if (path === "/api/info") return data.info;
  if (path === "/api/curves") return data.curves;
  if (path === "/api/attention") return {examples: data.attention};
  const track = localTrack(at("layer"), p.quantity), start = at("start"), end = at("end");
  if (!(start >= 0 && start <= end && end < n)) throw new Error(`the range ${start}..${end} is not inside 0..${n - 1}`);
  const on = (c, t) => track[c * n + t] >= at("threshold");
  if (path === "/api/window") {
    return {start, end, text: text.slice(start, end + 1), cells: hidden, values: localRows(track, all, start, end)};
  }
  if (path === "/api/select") {
    const cells = all.filter((c) => {
      for (let t = start; t <= end; t++) if (!on(c, t)) return false;
      return (start === 0 || !on(c, start - 1)) && (end === n - 1 || !on(c, end + 1));
    });
    return {start, end, threshold: at("threshold"), cells};
  }
  if (path === "/api/match") return localMatch(p, on, track);
  if (path === "/api/cell") return localCell(track, at("cell"), start, end);
  throw new Error(`no such query: ${path}`);
}

function localMatch(p, on, track) {  // the rule of unrolled/viz/select.py, line for line
  const text = window.UNROLLED_DATA.text, n = text.length;
  const cells = p.cells.split(",").map(Number), start = Number(p.start), end = Number(p.end);
  const needed = Math.ceil(0.5 * cells.length), found = [];
  for (let t = 0; t < n; t++) {
    const count = (u) => cells.filter((c) => on(c, u)).length;
    if (count(t) < needed) continue;
    const a = t;
    while (t + 1 < n && count(t + 1) >= needed) t++;
    if (a <= start && t >= end) continue;
    let full = 0;
    for (const c of cells) { let all = true; for (let u = a; u <= t; u++) all = all && on(c, u); full += all; }
    found.push({start: a, end: t, overlap: full / cells.length, distance: Math.abs((t - a) - (end - start))});
  }
  found.sort((x, y) => y.overlap - x.overlap || x.distance - y.distance || x.start - y.start);
  const matches = found.slice(0, Number(p.limit || 20)).map((m) => {
    const shownStart = Math.max(0, m.start - 8), shownEnd = Math.min(n - 1, m.end + 8, shownStart + 79);
    return {...m, shownStart, text: text.slice(shownStart, shownEnd + 1),
            values: localRows(track, cells, shownStart, shownEnd)};
  });
  return {cells, threshold: Number(p.threshold), matches};
}

function localCell(track, cell, start, end) {
  const text = window.UNROLLED_DATA.text, n = text.length, row = track.subarray(cell * n, (cell + 1) * n);
  const order = [...row.keys()].sort((a, b) => row[b] - row[a]), top = [];
  for (const position of order) {
    if (top.length === 10) break;
    if (top.every((t) => Math.abs(t.position - position) >= 10)) {
      const a = Math.max(0, position - 40), b = Math.min(n - 1, position + 10);
      top.push({position, value: row[position], start: a, text: text.slice(a, b + 1), values: row.slice(a, b + 1)});
    }
  }
  return {cell, start, end, text: text.slice(start, end + 1), values: row.slice(start, end + 1), top};
}

// ------------------------------------------------------------------ drawing helpers

function shown(ch) { return ch === "\n" ? "\u21b5" : ch === "\t" ? "\u21e5" : ch === " " ? "\u00a0" : ch; }

function textRow(box, text, firstPosition) {
  box.replaceChildren(...[...text].map((ch, i) => {
    const span = document.createElement("span");
    span.textContent = shown(ch);
    span.dataset.pos = firstPosition + i;
    if (ch === "\n" || ch === "\t") span.className = "special";
    return span;
  }));
}

function colour(value, low, high) {  // blue below 0, red above, white at 0
  const scale = Math.max(Math.abs(low), Math.abs(high)) || 1, x = Math.max(-1, Math.min(1, value / scale));
  const fade = Math.round(255 * (1 - Math.abs(x)));
  return x >= 0 ? `rgb(255,${fade},${fade})` : `rgb(${fade},${fade},255)`;
}

function colouredText(box, text, values, range) {
  box.replaceChildren(...[...text].map((ch, i) => {
    const span = document.createElement("span");
    span.textContent = ch === "\n" ? "\u21b5\n" : ch;
    span.style.background = colour(values[i], range[0], range[1]);
    span.title = values[i].toFixed(3);
    return span;
  }));
}

function range() { return view.info.states.ranges[`l${view.layer}.${view.quantity}`] || [-1, 1]; }

function cellColour(index) { return `hsl(${(index * 137) % 360}, 70%, 42%)`; }

// ------------------------------------------------------------------ the states view

async function loadWindow() {
  const length = view.info.states.length;
  view.start = Math.max(0, Math.min(view.start, length - 1));
  const end = Math.min(length - 1, view.start + WINDOW - 1);
  view.window = await api("/api/window", {layer: view.layer, quantity: view.quantity, start: view.start, end});
  view.window.values = decode(view.window.values);
  document.getElementById("start").value = view.start;
  document.getElementById("position").textContent = `${view.start}..${end} of ${length} characters`;
  textRow(document.getElementById("text-axis"), view.window.text, view.start);
  drawTracks();
  if (!window.vizTimings.firstPaint) window.vizTimings.firstPaint = performance.now();
  document.body.dataset.ready = "1";
}

function drawTracks() {
  const w = view.window, width = w.text.length, canvas = document.getElementById("tracks");
  canvas.width = width * CHAR_W;
  canvas.height = PLOT_H;
  const g = canvas.getContext("2d"), [low, high] = range(), pad = 0.05 * (high - low || 1);
  const y = (v) => PLOT_H - 4 - (v - low + pad) / (high - low + 2 * pad) * (PLOT_H - 8);
  g.clearRect(0, 0, canvas.width, PLOT_H);
  if (view.brush) {
    const a = Math.max(view.brush[0], w.start) - w.start, b = Math.min(view.brush[1], w.end) - w.start;
    g.fillStyle = "rgba(255, 216, 107, 0.45)";
    if (a <= b) g.fillRect(a * CHAR_W, 0, (b - a + 1) * CHAR_W, PLOT_H);
  }
  const line = (cell) => {
    g.beginPath();
    for (let t = 0; t < width; t++) {
      const x = t * CHAR_W + CHAR_W / 2, v = y(w.values[cell * width + t]);
      if (t === 0) g.moveTo(x, v); else g.lineTo(x, v);
    }
    g.stroke();
  };
  g.lineWidth = 1;
  g.strokeStyle = "rgba(60, 60, 90, 0.18)";
  const chosen = new Set(view.selected);
  for (let c = 0; c < w.cells; c++) if (!chosen.has(c)) line(c);
  g.lineWidth = 2;
  for (const c of view.selected) { g.strokeStyle = cellColour(c); line(c); }
  g.setLineDash([5, 4]);
  g.strokeStyle = "#c33";
  g.lineWidth = 1;
  g.beginPath(); g.moveTo(0, y(view.threshold)); g.lineTo(canvas.width, y(view.threshold)); g.stroke();
  g.setLineDash([]);
  for (const span of document.querySelectorAll("#text-axis span")) {
    const p = Number(span.dataset.pos);
    span.classList.toggle("brushed", !!view.brush && p >= view.brush[0] && p <= view.brush[1]);
  }
}

function positionAt(event) {
  const box = document.getElementById("states-plot").getBoundingClientRect();
  const t = Math.floor((event.clientX - box.left) / CHAR_W);
  return view.window.start + Math.max(0, Math.min(view.window.text.length - 1, t));
}

function startBrush(event) {
  if (!view.window) return;
  view.dragging = true;
  const p = positionAt(event);
  view.brush = [p, p];
  view.anchor = p;
  drawTracks();
}

function moveBrush(event) {
  if (!view.dragging) return;
  const p = positionAt(event);
  view.brush = [Math.min(view.anchor, p), Math.max(view.anchor, p)];
  drawTracks();
}

function endBrush() {
  if (!view.dragging) return;
  view.dragging = false;
  runSelect().catch(showError);
}

async function runSelect() {
  if (!view.brush) return;
  const began = performance.now();
  const [start, end] = view.brush, where = {layer: view.layer, quantity: view.quantity, threshold: view.threshold};
  const answer = await api("/api/select", {...where, start, end});
  view.selected = answer.cells;
  showSelected();
  drawTracks();
  const list = document.getElementById("matches");
  list.dataset.done = "0";
  if (!view.selected.length) { list.replaceChildren(); list.dataset.done = "1"; return; }
  const found = await api("/api/match", {...where, start, end, cells: view.selected.join(",")});
  view.matches = found.matches;
  showMatches();
  window.vizTimings.match = performance.now() - began;  // brush released -> matches shown
  list.dataset.done = "1";
}

function showSelected() {
  document.getElementById("selected-count").textContent = `(${view.selected.length})`;
  document.getElementById("selected").replaceChildren(...view.selected.map((c) => {
    const item = document.createElement("li");
    item.dataset.cell = c;
    item.textContent = `cell ${c}`;
    item.style.color = cellColour(c);
    item.addEventListener("click", () => openCell(c).catch(showError));
    return item;
  }));
}

function showMatches() {
  const [low, high] = range();
  document.getElementById("matches").replaceChildren(...view.matches.map((m) => {
    const item = document.createElement("li"), values = decode(m.values), width = m.text.length;
    Object.assign(item.dataset, {start: m.start, end: m.end, overlap: m.overlap});
    const label = document.createElement("div");
    label.className = "match-label";
    label.textContent = `${m.start}..${m.end}, overlap ${Math.round(100 * m.overlap)}%`;
    const canvas = document.createElement("canvas"), g = canvas.getContext("2d");
    canvas.width = width * HEAT_CELL[0];
    canvas.height = view.selected.length * HEAT_CELL[1];
    view.selected.forEach((_, r) => {
      for (let t = 0; t < width; t++) {
        g.fillStyle = colour(values[r * width + t], low, high);
        g.fillRect(t * HEAT_CELL[0], r * HEAT_CELL[1], HEAT_CELL[0], HEAT_CELL[1] - 1);
      }
    });
    const row = document.createElement("div");
    row.className = "text-row";
    textRow(row, m.text, m.shownStart);
    for (const span of row.children) {
      const p = Number(span.dataset.pos);
      if (p >= m.start && p <= m.end) span.classList.add("brushed");
    }
    item.append(label, canvas, row);
    item.addEventListener("click", () => { view.start = Math.max(0, m.start - 20); loadWindow().catch(showError); });
    return item;
  }));
}

// ------------------------------------------------------------------ one cell

async function openCell(cell) {
  view.cell = cell;
  const end = Math.min(view.info.states.length - 1, view.start + 4 * WINDOW - 1);
  const answer = await api("/api/cell", {layer: view.layer, quantity: view.quantity, cell, start: view.start, end});
  const r = range();
  document.getElementById("cell-title").textContent =
    `Cell ${cell} of layer ${view.layer}, ${view.quantity}: characters ${view.start}..${end}`;
  colouredText(document.getElementById("cell-text"), answer.text, decode(answer.values), r);
  document.getElementById("cell-top").replaceChildren(...answer.top.map((t) => {
    const item = document.createElement("li"), box = document.createElement("div");
    box.className = "colour-text";
    colouredText(box, t.text, decode(t.values), r);
    item.dataset.position = t.position;
    item.append(`${t.value.toFixed(3)} at ${t.position}`, box);
    return item;
  }));
  showTab("cell");
}

// ------------------------------------------------------------------ attention

async function loadAttention() {
  const answer = await api("/api/attention");
  view.attention = answer.examples;
  const select = document.getElementById("attention-example");
  select.replaceChildren(...view.attention.map((e, i) => new Option(`${i + 1}: ${e.name || e.source.join(" ").slice(0, 60)}`, i)));
  select.onchange = () => showAttention(Number(select.value));
  if (view.attention.length) showAttention(0);
}

function showAttention(index) {
  const example = view.attention[index], grid = document.getElementById("attention-grid");
  const head = document.createElement("tr");
  head.append(document.createElement("th"), ...example.source.map((token) => {
    const th = document.createElement("th"); th.textContent = token; return th;
  }));
  const thead = document.createElement("thead"), body = document.createElement("tbody");
  thead.append(head);
  example.target.forEach((token, r) => {
    const row = document.createElement("tr"), th = document.createElement("th");
    th.textContent = token;
    row.dataset.row = r;
    row.append(th, ...example.weights[r].map((w, c) => {
      const td = document.createElement("td");
      Object.assign(td.dataset, {row: r, col: c, weight: w});
      td.style.background = `rgba(40, 40, 120, ${w})`;
      td.title = `${token} \u2190 ${example.source[c]}: ${w.toFixed(3)}`;
      return td;
    }));
    row.addEventListener("mouseenter", () => focusRow(example, r));
    body.append(row);
  });
  grid.replaceChildren(thead, body);
  const box = document.getElementById("attention-image-box");
  box.replaceChildren();
  if (example.image) {
    const picture = new Image();
    picture.src = example.image;
    picture.id = "attention-image";
    const overlay = document.createElement("canvas");
    overlay.id = "attention-overlay";
    box.append(picture, overlay);
  }
  focusRow(example, 0);
}

function focusRow(example, r) {
  for (const row of document.querySelectorAll("#attention-grid tbody tr")) {
    row.classList.toggle("focus", Number(row.dataset.row) === r);
  }
  const focus = document.getElementById("attention-focus");
  focus.dataset.row = r;
  const label = document.createElement("b");
  label.textContent = `${example.target[r]} \u2190 `;
  focus.replaceChildren(label, ...example.source.map((token, c) => {
    const span = document.createElement("span"), w = example.weights[r][c];
    span.textContent = token;
    span.dataset.weight = w;
    span.style.background = `rgba(40, 40, 120, ${w})`;
    span.style.color = w > 0.5 ? "white" : "black";
    return span;
  }));
  const overlay = document.getElementById("attention-overlay");
  if (overlay && example.grid) drawOverlay(overlay, example, r);
}

function drawOverlay(overlay, example, r) {  // a caption's weights over the image's grid
  const [rows, cols] = example.grid, picture = document.getElementById("attention-image");
  overlay.width = picture.naturalWidth || 224;
  overlay.height = picture.naturalHeight || 224;
  Object.assign(overlay.style, {position: "absolute", left: "0", top: "0", width: "100%", height: "100%"});
  const g = overlay.getContext("2d"), w = overlay.width / cols, h = overlay.height / rows;
  const peak = Math.max(...example.weights[r]) || 1;
  example.weights[r].forEach((weight, k) => {
    g.fillStyle = `rgba(0, 0, 0, ${0.75 * (1 - weight / peak)})`;
    g.clearRect(Math.floor(k % cols) * w, Math.floor(k / cols) * h, w, h);
    g.fillRect(Math.floor(k % cols) * w, Math.floor(k / cols) * h, w, h);
  });
}

// ------------------------------------------------------------------ training curves

async function loadCurves() {
  const curves = await api("/api/curves"), svg = document.getElementById("curves");
  const note = document.getElementById("curves-note");
  const series = [["train", "#2a6fb0"], ["validation", "#e07b00"]].filter(([name]) => curves[name].length);
  if (!series.length) { note.textContent = "This run has no metrics.jsonl lines yet."; svg.replaceChildren(); return; }
  const points = series.flatMap(([name]) => curves[name]);
  const steps = points.map((p) => p[0]), losses = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...steps), Math.max(...steps) || 1], [y0, y1] = [Math.min(...losses), Math.max(...losses)];
  const W = 720, H = 360, m = {l: 55, r: 110, t: 15, b: 40};
  const x = (s) => m.l + (s - x0) / ((x1 - x0) || 1) * (W - m.l - m.r);
  const y = (v) => H - m.b - (v - y0) / ((y1 - y0) || 1) * (H - m.t - m.b);
  const ns = "http://www.w3.org/2000/svg", add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  svg.replaceChildren();
  add("line", {x1: m.l, y1: H - m.b, x2: W - m.r, y2: H - m.b, stroke: "#444"});
  add("line", {x1: m.l, y1: m.t, x2: m.l, y2: H - m.b, stroke: "#444"});
  add("text", {x: m.l, y: H - m.b + 16}, String(x0));
  add("text", {x: W - m.r, y: H - m.b + 16, "text-anchor": "end"}, String(x1));
  add("text", {x: (W - m.r + m.l) / 2, y: H - 6, "text-anchor": "middle"}, "step");
  add("text", {x: m.l - 6, y: y(y1) + 4, "text-anchor": "end"}, y1.toFixed(3));
  add("text", {x: m.l - 6, y: y(y0) + 4, "text-anchor": "end"}, y0.toFixed(3));
  add("text", {x: 14, y: (H - m.b + m.t) / 2, transform: `rotate(-90 14 ${(H - m.b + m.t) / 2})`,
               "text-anchor": "middle"}, "loss (nats)");
  series.forEach(([name, stroke], k) => {
    const line = curves[name].map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    add("polyline", {points: line, fill: "none", stroke, "stroke-width": 2, class: `curve-${name}`});
    add("text", {x: W - m.r + 8, y: m.t + 14 + 18 * k, fill: stroke}, name);
  });
  note.textContent = `${curves.train.length} training and ${curves.validation.length} validation points.`;
}

// ------------------------------------------------------------------ set-up

function showTab(name) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${name}`;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
}

function setUpStates() {
  const s = view.info.states;
  view.quantity = s.quantities.includes("h") ? "h" : s.quantities[0];
  const layer = document.getElementById("layer"), quantity = document.getElementById("quantity");
  layer.replaceChildren(...[...Array(s.layers).keys()].map((l) => new Option(String(l), l)));
  quantity.replaceChildren(...s.quantities.map((q) => new Option(q, q, false, q === view.quantity)));
  const threshold = document.getElementById("threshold");
  threshold.value = view.threshold;
  const reload = () => {
    view.layer = Number(layer.value);
    view.quantity = quantity.value;
    view.brush = null; view.selected = []; showSelected();
    document.getElementById("matches").replaceChildren();
    loadWindow().catch(showError);
  };
  layer.onchange = reload;
  quantity.onchange = reload;
  threshold.onchange = () => { view.threshold = Number(threshold.value); drawTracks(); runSelect().catch(showError); };
  const move = (by) => { view.start += by; loadWindow().catch(showError); };
  document.getElementById("back").onclick = () => move(-Math.floor(0.8 * WINDOW));
  document.getElementById("forward").onclick = () => move(Math.floor(0.8 * WINDOW));
  document.getElementById("start").onchange = (e) => { view.start = Number(e.target.value); move(0); };
  const plot = document.getElementById("states-plot");
  plot.addEventListener("mousedown", startBrush);
  window.addEventListener("mousemove", moveBrush);
  window.addEventListener("mouseup", endBrush);
}

async function main() {
  try {
    view.info = await api("/api/info");
    view.threshold = view.info.threshold;
    document.getElementById("run-name").textContent = view.info.run;
    for (const button of document.querySelectorAll("#tabs button")) {
      button.onclick = () => showTab(button.dataset.tab);
    }
    document.querySelector('[data-tab="states"]').hidden = !view.info.states;
    document.querySelector('[data-tab="cell"]').hidden = !view.info.states;
    document.querySelector('[data-tab="attention"]').hidden = !view.info.attention;
    loadCurves().catch(showError);
    if (view.info.attention) await loadAttention();
    if (view.info.states) {
      setUpStates();
      showTab("states");
      await loadWindow();
    } else {
      showTab(view.info.attention ? "attention" : "training");
      document.body.dataset.ready = "1";
    }
  } catch (error) {
    showError(error);
  }
}

main();

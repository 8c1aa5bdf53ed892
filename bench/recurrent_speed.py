"""Training-step speed of `unrolled.Recurrent` against torch.nn.LSTM / GRU / RNN, side by side.

For every config and mode, four contenders run in one process on the same input:

* peer:        torch.nn.<MODE> called directly;
* fused:       Recurrent(fused=True), torch's fused kernel on Recurrent's own parameters;
* transparent: Recurrent(fused=False), the Python loop over the cells;
* gemm step:   an fp32 GEMM of one LSTM step's shape, (B, E+H) x (E+H, 4H), repeated T times;
* gemm seq:    the same FLOPs as one GEMM over all steps at once, (B*T, E+H) x (E+H, 4H);
               the faster of the two is the "GEMM peak" the others' GFLOP/s are compared with (%GEMM);
* nn.LSTM, oneDNN off (lstm on CPU only, a diagnostic without target): torch's native CPU LSTM,
               the per-step loop in C++, where nn.LSTM itself runs oneDNN's fused LSTM.

The three models share the peer's weights (load_state_dict). A step is a training step:
zero grads, forward, loss = mean(out^2), backward. After warm-up, the contenders are
timed round-robin (the order rotates every repeat), so a noisy, shared machine slows
them alike; the headline is the paired ratio peer time / contender time (the tokens/s
ratio), the median over repeats, with its min-max. Peak memory of each training step is
measured in a fresh subprocess per contender, after all timings.

FLOPs count the matmuls only: forward per token, layer and direction 2*G*H*(I_layer + H)
with G = 4 (lstm), 3 (gru), 1 (rnn), I_layer = E for layer 0 and H above; training = 3x.

    .venv/bin/python bench/recurrent_speed.py                 # the full run (several minutes)
    .venv/bin/python bench/recurrent_speed.py --quick         # tiny sizes: checks it runs
    .venv/bin/python bench/recurrent_speed.py --configs small --modes lstm --repeats 11
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import harness
import torch
from torch import Tensor, nn

from unrolled import Recurrent

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
PEERS: dict[str, type[nn.Module]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
MODELS = ("peer", "fused", "transparent")
NATIVE = "native"  # nn.LSTM with oneDNN off: a diagnostic
TARGETS = {
    ("fused", "lstm"): 0.97,
    ("fused", "gru"): 0.97,
    ("fused", "rnn"): 0.97,
    ("transparent", "lstm"): 0.80,
    ("transparent", "gru"): 0.90,
    ("transparent", "rnn"): 0.90,
}
MIB = 1024.0 * 1024.0


@dataclass(frozen=True)
class Config:
    """One benchmark shape: layers, H hidden, E input features, B batch, T steps."""

    name: str
    layers: int
    hidden: int
    inputs: int
    batch: int
    steps: int
    batch_first: bool

    def describe(self) -> str:
        return (
            f"{self.name}: layers={self.layers} H={self.hidden} E={self.inputs} B={self.batch} "
            f"T={self.steps} batch_first={self.batch_first}"
        )

    @property
    def tokens(self) -> int:
        return self.batch * self.steps


PRESETS = {
    "large": Config("large", 2, 512, 64, 64, 128, True),
    "small": Config("small", 1, 128, 64, 32, 64, False),
    "tiny": Config("tiny", 2, 32, 16, 4, 8, True),
    "tiny1": Config("tiny1", 1, 24, 8, 3, 6, False),
}
QUICK = {"configs": "tiny,tiny1", "repeats": 3, "warmup": 1, "min_time": 0.005}
FULL = {"configs": "large,small", "repeats": 7, "warmup": 2, "min_time": 0.25}


@dataclass
class Contender:
    """A timed callable: its training (or GEMM) step, its FLOPs and its samples (seconds per step)."""

    name: str
    label: str
    step: Callable[[], None]
    flops: float
    samples: list[float] = field(default_factory=list)
    count: int = 1


# -- configs and models -------------------------------------------------------------------------


def parse_config(text: str) -> Config:
    """A preset name, or LxHxExBxT (batch_first) for a custom shape, e.g. 2x256x64x32x100."""
    if text in PRESETS:
        return PRESETS[text]
    try:
        layers, hidden, inputs, batch, steps = (int(part) for part in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown config {text!r}: use {sorted(PRESETS)} or LxHxExBxT") from None
    return Config(text, layers, hidden, inputs, batch, steps, True)


def forward_flops(cfg: Config, mode: str) -> float:
    """Matmul FLOPs of one forward pass: 2*G*H*(I_layer + H) per token and layer."""
    g, h = GATES[mode], cfg.hidden
    per_token = sum(2 * g * h * ((cfg.inputs if layer == 0 else h) + h) for layer in range(cfg.layers))
    return float(per_token * cfg.tokens)


def make_model(cfg: Config, mode: str, name: str, device: torch.device) -> nn.Module:
    if name in ("peer", NATIVE):
        return PEERS[mode](cfg.inputs, cfg.hidden, cfg.layers, batch_first=cfg.batch_first).to(device)
    fused = name == "fused"
    layer = Recurrent(mode, cfg.inputs, cfg.hidden, cfg.layers, batch_first=cfg.batch_first, fused=fused, device=device)
    if (layer.fused_mode is not None) != fused:
        raise RuntimeError(f"Recurrent({mode!r}, fused={fused}) has fused_mode={layer.fused_mode!r}")
    return layer


def build_models(cfg: Config, mode: str, device: torch.device) -> dict[str, nn.Module]:
    """The three models (and the oneDNN-off diagnostic where it applies), all with the peer's weights."""
    torch.manual_seed(0)
    names = MODELS + ((NATIVE,) if has_native(mode, device) else ())
    models = {name: make_model(cfg, mode, name, device) for name in names}
    for name in names[1:]:
        models[name].load_state_dict(models["peer"].state_dict())
    return models


def make_input(cfg: Config, device: torch.device) -> Tensor:
    torch.manual_seed(1)
    shape = (cfg.batch, cfg.steps, cfg.inputs) if cfg.batch_first else (cfg.steps, cfg.batch, cfg.inputs)
    return torch.randn(shape, device=device)


def has_native(mode: str, device: torch.device) -> bool:
    """Whether nn.<MODE> runs oneDNN here, so that turning it off gives a different (native) peer."""
    return mode == "lstm" and device.type == "cpu" and torch.backends.mkldnn.is_available()


@contextlib.contextmanager
def onednn_off() -> Iterator[None]:
    """oneDNN off for the block (only that flag: mkldnn.flags() would also reset TF32 and precision)."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def training_step(model: nn.Module, x: Tensor, onednn: bool = True) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        with contextlib.nullcontext() if onednn else onednn_off():
            out, _ = model(x)
            out.pow(2).mean().backward()

    return step


def gemm_contender(cfg: Config, device: torch.device, per_step: bool) -> Contender:
    """LSTM layer-0 shape W [x, h]: T products (B, E+H) x (E+H, 4H), or one (B*T, E+H) x (E+H, 4H)."""
    k, n = cfg.inputs + cfg.hidden, 4 * cfg.hidden
    rows, times = (cfg.batch, cfg.steps) if per_step else (cfg.tokens, 1)
    a, w = torch.randn(rows, k, device=device), torch.randn(n, k, device=device)
    out = torch.empty(rows, n, device=device)

    def step() -> None:
        for _ in range(times):
            torch.mm(a, w.t(), out=out)

    label = f"gemm {'step' if per_step else 'seq'} ({rows}x{k})x({k}x{n})" + (f" x{times}" if per_step else "")
    return Contender("gemm_step" if per_step else "gemm_seq", label, step, float(2 * rows * k * n * times))


def max_difference(models: dict[str, nn.Module], x: Tensor) -> dict[str, float]:
    """max |out - peer out| of each model: the weights are really shared."""
    with torch.no_grad():
        outs = {name: model(x)[0] for name, model in models.items()}
    return {name: float((out - outs["peer"]).abs().max()) for name, out in outs.items()}


# -- timing -------------------------------------------------------------------------------------


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def timed(step: Callable[[], None], count: int, sync: Callable[[], None]) -> float:
    """Seconds per step over `count` consecutive steps."""
    sync()
    start = time.perf_counter()
    for _ in range(count):
        step()
    sync()
    return (time.perf_counter() - start) / count


def run_round_robin(
    contenders: list[Contender], repeats: int, warmup: int, min_time: float, sync: Callable[[], None]
) -> None:
    """Warm up (and size each sample to >= min_time), then time all, rotating the order each repeat."""
    for _ in range(max(warmup, 1)):
        for c in contenders:
            c.count = max(1, math.ceil(min_time / max(timed(c.step, 1, sync), 1e-9)))
    for r in range(repeats):
        shift = r % len(contenders)
        for c in contenders[shift:] + contenders[:shift]:
            gc.collect()
            c.samples.append(timed(c.step, c.count, sync))


def time_group(cfg: Config, mode: str, device: torch.device, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Time the peer, fused, transparent and GEMM contenders of one (config, mode); one row each."""
    models, x = build_models(cfg, mode, device), make_input(cfg, device)
    diffs = max_difference(models, x)
    flops = 3.0 * forward_flops(cfg, mode)
    labels = {
        "peer": f"nn.{mode.upper()}",
        "fused": "Recurrent fused",
        "transparent": "Recurrent transparent",
        NATIVE: f"(nn.{mode.upper()}, oneDNN off)",
    }
    contenders = [Contender(n, labels[n], training_step(m, x, n != NATIVE), flops) for n, m in models.items()]
    contenders += [gemm_contender(cfg, device, per_step) for per_step in (True, False)]
    run_round_robin(contenders, args.repeats, args.warmup, args.min_time, synchronizer(device))
    peer = contenders[0]
    gemm_rate = max(c.flops / statistics.median(c.samples) for c in contenders if c.name.startswith("gemm"))
    return [row(cfg, mode, c, peer, gemm_rate, diffs.get(c.name)) for c in contenders]


def row(cfg: Config, mode: str, c: Contender, peer: Contender, gemm_rate: float, diff: float | None) -> dict[str, Any]:
    seconds = statistics.median(c.samples)
    rate = c.flops / seconds
    result: dict[str, Any] = {
        "config": cfg.name,
        "mode": mode,
        "contender": c.name,
        "label": c.label,
        "ms_per_step": 1e3 * seconds,
        "samples_s": c.samples,
        "steps_per_sample": c.count,
        "gflops": rate / 1e9,
        "gemm_fraction": rate / gemm_rate,
        "max_abs_diff": diff,
        "peak_mib": None,
    }
    if c.name.startswith("gemm"):
        return result
    ratios = [p / s for p, s in zip(peer.samples, c.samples, strict=True)]
    target = TARGETS.get((c.name, mode))
    ratio = statistics.median(ratios)
    result |= {
        "tokens_per_s": cfg.tokens / seconds,
        "ratio": ratio,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "target": target,
        "verdict": None if target is None else ("PASS" if ratio >= target else "MISS"),
    }
    return result


# -- memory -------------------------------------------------------------------------------------


def measure_peak(step: Callable[[], None], steps: int, device: torch.device) -> dict[str, Any]:
    """Peak memory of `steps` training steps above what is held before them (MiB)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        for _ in range(steps):
            step()
        torch.cuda.synchronize(device)
        return {"peak_mib": (torch.cuda.max_memory_allocated(device) - base) / MIB, "method": "cuda allocated"}
    meter = harness.PeakMeter()
    meter.start()
    for _ in range(steps):
        step()
    peak = meter.stop()
    return {"peak_mib": peak["above_start_mib"], "method": peak["method"]}


def memory_child(payload: str) -> None:
    """Subprocess entry: build one contender alone, run a few steps, print its peak memory as JSON."""
    spec = json.loads(payload)
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    cfg, device = Config(**spec["config"]), torch.device(spec["device"])
    torch.manual_seed(0)
    model = make_model(cfg, spec["mode"], spec["contender"], device)
    step = training_step(model, make_input(cfg, device), spec["contender"] != NATIVE)
    print(json.dumps(measure_peak(step, spec["steps"], device)))


def memory_of(cfg: Config, mode: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = {
        "config": asdict(cfg),
        "mode": mode,
        "contender": name,
        "device": args.device,
        "threads": args.threads,
        "steps": args.memory_steps,
    }
    return harness.child_json(os.path.abspath(__file__), spec, {"peak_mib": None})


def add_memory(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Fill each model row's peak_mib, one subprocess per contender (a few at once: memory, not speed)."""
    todo = [r for r in rows if not r["contender"].startswith("gemm")]
    configs = {cfg.name: cfg for cfg in args.configs}
    jobs = 1 if args.device == "cuda" else max(1, min(2, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = pool.map(lambda r: memory_of(configs[r["config"]], r["mode"], r["contender"], args), todo)
        for r, result in zip(todo, results, strict=True):
            r["peak_mib"], r["memory_method"] = result["peak_mib"], result["method"]


# -- report -------------------------------------------------------------------------------------


def header(args: argparse.Namespace) -> dict[str, Any]:
    info: dict[str, Any] = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": args.device,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpus": os.cpu_count(),
        "cpu": harness.cpu_model(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "min_time_s": args.min_time,
    }
    if args.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def print_header(info: dict[str, Any]) -> None:
    print("recurrent_speed: training step (forward + backward) of unrolled.Recurrent against torch.nn.<MODE>")
    print(f"command: {info['command']}")
    print(
        f"torch {info['torch']} | python {info['python']} | device {info['device']} | "
        f"threads {info['threads']} (interop {info['interop_threads']}) | cpus {info['cpus']}"
    )
    print(f"cpu: {info['cpu']}" + (f" | gpu: {info['gpu']}" if "gpu" in info else ""))
    print(
        f"load average at start: {info['load_average']} | repeats {info['repeats']} (median, round-robin) | "
        f"warm-up {info['warmup']} | sample >= {info['min_time_s']} s",
        flush=True,
    )


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(cfg: Config, rows: list[dict[str, Any]]) -> None:
    print(f"\n== {cfg.describe()}")
    print(
        f"{'mode':<5} {'contender':<34} {'ms/step':>9} {'tokens/s':>9} {'GFLOP/s':>8} {'%GEMM':>6} "
        f"{'ratio':>6} {'[min-max]':>11} {'target':>6} {'':4} {'peak MiB':>8} {'max|diff|':>9}"
    )
    for r in rows:
        span = f"[{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]" if "ratio" in r else "-"
        target = f">={r['target']:.2f}" if r.get("target") else "-"
        print(
            f"{r['mode']:<5} {r['label']:<34} {r['ms_per_step']:>9.2f} {fmt(r.get('tokens_per_s'), '.0f'):>9} "
            f"{r['gflops']:>8.2f} {100 * r['gemm_fraction']:>5.0f}% {fmt(r.get('ratio'), '.3f'):>6} {span:>11} "
            f"{target:>6} {r.get('verdict') or '':4} {fmt(r['peak_mib'], '.1f'):>8} "
            f"{fmt(r['max_abs_diff'], '.1e'):>9}"
        )


def print_headline(rows: list[dict[str, Any]]) -> None:
    print("\nHEADLINE: tokens/s ratio against torch.nn.<MODE> (median of paired repeats; target, verdict)")
    for r in rows:
        if r.get("target") is not None:
            print(
                f"  {r['config']:<6} {r['mode']:<4} {r['contender']:<11} {r['ratio']:.3f}x  "
                f"(>= {r['target']:.2f})  {r['verdict']}"
            )


def print_notes(seconds: float) -> None:
    print("\nratio: peer seconds / contender seconds in the same repeat (= tokens/s ratio), median [min-max].")
    print("GFLOP/s: matmul FLOPs only, training step = 3 x forward. gemm rows: fp32, LSTM layer-0 shape W [x, h] for")
    print("every mode, per step (B rows, T times) and all steps at once (B*T rows); %GEMM = GFLOP/s / the faster.")
    print("peak MiB: training-step memory above the model and input, a fresh subprocess per contender.")
    print(f"Total {seconds:.0f} s.")


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--configs",
        help=f"comma list of {sorted(PRESETS)} or LxHxExBxT "
        f"(default {FULL['configs']}; {QUICK['configs']} with --quick)",
    )
    parser.add_argument("--modes", default="lstm,gru,rnn", help="comma list of lstm, gru, rnn (default: all)")
    parser.add_argument("--repeats", type=int, help=f"timed samples per contender (default {FULL['repeats']})")
    parser.add_argument("--warmup", type=int, help=f"untimed steps per contender first (default {FULL['warmup']})")
    parser.add_argument("--min-time", type=float, help=f"seconds a sample lasts at least (default {FULL['min_time']})")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--memory-steps", type=int, default=2, help="training steps per memory subprocess")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: checks that it runs")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to PATH as JSON")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = harness.parse_form(parser, argv, QUICK, FULL)
    args.configs = [parse_config(name) for name in args.configs.split(",")]
    args.modes = args.modes.split(",")
    if unknown := set(args.modes) - set(GATES):
        parser.error(f"unknown modes {sorted(unknown)}: use lstm, gru, rnn")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        return memory_child(args.memory_child)
    device, start, info = torch.device(args.device), time.perf_counter(), header(args)
    print_header(info)
    rows: list[dict[str, Any]] = []
    for cfg in args.configs:
        for mode in args.modes:
            print(f"  timing {cfg.name} {mode} ...", file=sys.stderr, flush=True)
            rows += time_group(cfg, mode, device, args)
    if not args.no_memory:
        print("  measuring peak memory (one subprocess per contender) ...", file=sys.stderr, flush=True)
        add_memory(rows, args)
    for cfg in args.configs:
        print_table(cfg, [r for r in rows if r["config"] == cfg.name])
    print_headline(rows)
    info["seconds"] = time.perf_counter() - start
    print_notes(info["seconds"])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"header": info, "rows": rows}, out, indent=1)
    return None


if __name__ == "__main__":
    main()

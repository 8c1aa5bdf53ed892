"""One self-contained page for a short text: the page's files inlined, its data embedded, no server needed.

The page runs the same app.js as the served one; with ``window.UNROLLED_DATA``
set it answers its own queries (select and match included) from the embedded
states instead of asking a server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from unrolled.viz.explorer import Explorer, encode_states
from unrolled.viz.server import static_file

MAX_EXPORT_CHARS = 5000  # every state of every character travels in the page


def page_data(explorer: Explorer) -> dict[str, Any]:
    """What an exported page embeds: the info, the text, every recorded state map, the curves, the attention."""
    data: dict[str, Any] = {"info": explorer.info(), "text": "", "states": {}, "curves": explorer.curves(),
                            "attention": explorer.attention_examples}
    recording = explorer.recording
    if recording is not None:
        if recording.length > MAX_EXPORT_CHARS:
            raise ValueError(f"the text has {recording.length} characters; an exported page holds at most "
                             f"{MAX_EXPORT_CHARS} (serve longer texts with `unrolled viz RUN TEXT`)")
        data["text"] = recording.text
        for layer in range(recording.index.layers):
            for quantity in recording.index.quantities:
                data["states"][f"l{layer}.{quantity}"] = encode_states(recording.states(layer, quantity))
    return data


def script_safe(text: str) -> str:
    """Text that cannot end the <script> element it is put in."""
    return text.replace("</", "<\\/")


def export_page(explorer: Explorer, path: str | os.PathLike[str]) -> int:
    """Write the page to `path`; returns its size in bytes."""
    html = static_file("index.html").decode("utf-8")
    css = static_file("style.css").decode("utf-8")
    script = static_file("app.js").decode("utf-8")
    data = script_safe(json.dumps(page_data(explorer), separators=(",", ":")))
    html = html.replace('<link rel="stylesheet" href="/static/style.css">', f"<style>\n{css}</style>")
    html = html.replace('<script src="/static/app.js"></script>',
                        f"<script>window.UNROLLED_DATA = {data};</script>\n<script>\n{script_safe(script)}</script>")
    Path(path).write_text(html, encoding="utf-8")
    return len(html.encode("utf-8"))

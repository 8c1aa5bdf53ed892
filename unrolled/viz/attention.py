"""Record the attention of a seq2seq run over a few sources, for the page's attention view.

Each source is translated greedily with the weights of every output step kept
(`Translator.translate(..., attention=True)`); an example is
``{"source": [tokens], "target": [tokens, "</s>" if it ended], "weights": rows of floats}``,
one row per target token over the source tokens. The examples are kept as
JSON in ``RUN/viz/attention-<12 hex of the sources' sha256>.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from unrolled.viz.record import VIZ_DIR, run_kind

SEQ2SEQ_KIND = "seq2seq"
END_TOKEN = "</s>"
WEIGHT_DIGITS = 4


def record_attention(run: str | os.PathLike[str], sources: list[str], *, beam: int = 1) -> list[dict[str, Any]]:
    """The attention of run `run` over each source text (one output each, by beam search of width `beam`)."""
    from unrolled.tasks.seq2seq import Translator

    _, kind, _ = run_kind(run)
    if kind != SEQ2SEQ_KIND:
        raise ValueError(f"{run} holds a {kind!r} model, not a seq2seq one: it has no attention to show")
    sources = [s for s in sources if s.strip()]
    if not sources:
        raise ValueError("no source texts: give a file with one source per line")
    translator = Translator.load(run)
    if translator.model.attention is None:
        raise ValueError(f"{run} was trained without attention (--attention none): there are no weights to show")
    examples = []
    for [best] in translator.translate(sources, beam=beam, attention=True):
        assert best.attention is not None
        rows = best.attention.tolist()
        target = [*best.tokens, END_TOKEN][: len(rows)]
        examples.append({"source": best.source_tokens, "target": target,
                         "weights": [[round(w, WEIGHT_DIGITS) for w in row] for row in rows]})
    folder = Path(run) / VIZ_DIR
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256("\n".join(sources).encode("utf-8")).hexdigest()[:12]
    (folder / f"attention-{digest}.json").write_text(json.dumps({"examples": examples}), encoding="utf-8")
    return examples

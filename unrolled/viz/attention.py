"""Record the attention of a seq2seq, captioning or speech run over a few inputs, for the page's attention view.

Each source is translated (each image captioned) greedily with the weights of
every output step kept (`Translator.translate` / `ImageCaptioner.caption` with
attention=True); an example is
``{"source": [tokens], "target": [tokens, "</s>" if it ended], "weights": rows of floats}``,
one row per target token over the source tokens. For a caption the "source" is
the encoder's grid, cell by cell ("row,column"), and the example also carries
``"grid": [h', w']``, ``"image"``, the picture as a PNG data URL, for the
overlay, and ``"name"``, the file's. For speech the "source" is the encoder's
steps, each named by the time it starts ("1.28s"), the "target" the characters
spelled (a space shown as "␣"), and ``"name"`` the audio file's. The examples
are kept as JSON in ``RUN/viz/attention-<12 hex of the inputs' sha256>.json``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

from unrolled.extras import need
from unrolled.viz.record import VIZ_DIR, run_kind

SEQ2SEQ_KIND = "seq2seq"
CAPTION_KIND = "captioner"
SPEECH_KIND = "speech"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
END_TOKEN = "</s>"
WEIGHT_DIGITS = 4


def record_attention(run: str | os.PathLike[str], sources: list[str], *, beam: int = 1,
                     device: str = "auto") -> list[dict[str, Any]]:
    """The attention of run `run` over each source text (one output each, by beam search of width `beam`)."""
    from unrolled.apps.seq2seq import Translator

    _, kind, _ = run_kind(run)
    if kind != SEQ2SEQ_KIND:
        raise ValueError(f"{run} holds a {kind!r} model, not a seq2seq one: it has no attention to show")
    sources = [s for s in sources if s.strip()]
    if not sources:
        raise ValueError("no source texts: give a file with one source per line")
    translator = Translator.load(run, device=device)
    if translator.model.attention is None:
        raise ValueError(f"{run} was trained without attention (--attention none): there are no weights to show")
    examples = []
    for [best] in translator.translate(sources, beam=beam, attention=True):
        assert best.attention is not None
        rows = best.attention.tolist()
        target = [*best.tokens, END_TOKEN][: len(rows)]
        examples.append({"source": best.source_tokens, "target": target,
                         "weights": [[round(w, WEIGHT_DIGITS) for w in row] for row in rows]})
    keep(run, "\n".join(sources), examples)
    return examples


def keep(run: str | os.PathLike[str], inputs: str, examples: list[dict[str, Any]]) -> None:
    """Write the examples into RUN/viz/attention-<hash of the inputs>.json."""
    folder = Path(run) / VIZ_DIR
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(inputs.encode("utf-8")).hexdigest()[:12]
    (folder / f"attention-{digest}.json").write_text(json.dumps({"examples": examples}), encoding="utf-8")


def image_files(data: Path, limit: int) -> list[Path]:
    """An image file, or the first `limit` images of a folder (by name)."""
    if data.is_dir():
        found = sorted(p for p in data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
        if not found:
            raise ValueError(f"{data} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return found
    return [data]


def record_caption_attention(run: str | os.PathLike[str], paths: list[Path], *,
                             beam: int = 1, device: str = "auto") -> list[dict[str, Any]]:
    """The attention of captioning run `run` over each image, as examples with their grid and picture."""
    need("PIL", "drawing attention maps")
    from PIL import Image

    from unrolled.apps.caption import ImageCaptioner
    from unrolled.data.images import read_images

    _, kind, _ = run_kind(run)
    if kind != CAPTION_KIND:
        raise ValueError(f"{run} holds a {kind!r} model, not a captioner")
    captioner = ImageCaptioner.load(run, device=device)
    if captioner.model.config.attention != "soft":
        raise ValueError(f"{run} was trained without attention: there are no weights to show")
    images = read_images(paths, size=captioner.size)
    rows, cols = captioner.grid()
    examples = []
    captions = captioner.caption(images, beam=beam, attention=True)
    for path, image, [best] in zip(paths, images, captions, strict=True):
        assert best.attention is not None
        weights = best.attention.reshape(best.attention.shape[0], -1).tolist()  # (steps, h' * w')
        png = io.BytesIO()
        Image.fromarray(image).save(png, format="PNG")
        examples.append({"name": path.name, "source": [f"{r},{c}" for r in range(rows) for c in range(cols)],
                         "target": [*best.tokens, END_TOKEN][: len(weights)],
                         "weights": [[round(w, WEIGHT_DIGITS) for w in row] for row in weights],
                         "grid": [rows, cols],
                         "image": "data:image/png;base64," + base64.b64encode(png.getvalue()).decode("ascii")})
    keep(run, "\n".join(str(p) for p in paths), examples)
    return examples


def audio_files(data: Path, limit: int) -> list[Path]:
    """An audio file, the first `limit` audio files of a folder (by name), or of a JSON-lines manifest."""
    if data.suffix.lower() in (".jsonl", ".json"):
        from unrolled.data.speech import read_manifest

        return [u.audio for u in read_manifest(data, check_silence=False)[:limit]]
    if data.is_dir():
        found = sorted(p for p in data.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)[:limit]
        if not found:
            raise ValueError(f"{data} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
        return found
    return [data]


def record_speech_attention(run: str | os.PathLike[str], paths: list[Path], *,
                            beam: int = 1, device: str = "auto") -> list[dict[str, Any]]:
    """The attention of speech run `run` (attention or joint decoder) over each audio file, as examples."""
    import torch

    from unrolled import decoding
    from unrolled.apps.transcriber import Transcriber
    from unrolled.data.audio import AudioError, read_audio
    from unrolled.models.speech import BLANK
    from unrolled.sound import character_limit

    _, kind, _ = run_kind(run)
    if kind != SPEECH_KIND:
        raise ValueError(f"{run} holds a {kind!r} model, not a speech recogniser")
    transcriber = Transcriber.load(run, device=device)
    model = transcriber.model
    if not model.config.uses_attention:
        raise ValueError(f"{run} was trained with --decoder ctc: there is no attention to show (train with "
                         "--decoder attention or joint)")
    features = model.config.features
    step_seconds = features.hop_ms / 1000 * features.stride * 2 ** model.config.levels
    examples = []
    for path in paths:
        try:
            wave = read_audio(path)
        except AudioError as error:
            raise ValueError(str(error)) from None
        samples = torch.tensor([len(wave)])
        with torch.inference_mode():
            log_probs, state = model.prime(torch.from_numpy(wave)[None].to(transcriber.device),
                                           samples.to(transcriber.device))
            steps = int(state.mask.sum())
            limit = character_limit(len(wave))
            [[best]] = decoding.beam_search(model, log_probs, state, beam_size=beam, max_length=limit,
                                            end_token=BLANK, weights=lambda s: s.weights)
        assert best.weights is not None
        rows = best.weights[:, :steps].tolist()
        characters = [c if c != " " else "\u2423" for c in transcriber.alphabet.decode(best.tokens)]
        examples.append({"name": path.name, "source": [f"{k * step_seconds:.2f}s" for k in range(steps)],
                         "target": [*characters, END_TOKEN][: len(rows)],
                         "weights": [[round(w, WEIGHT_DIGITS) for w in row] for row in rows]})
    keep(run, "\n".join(str(p) for p in paths), examples)
    return examples

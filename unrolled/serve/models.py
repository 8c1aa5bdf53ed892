"""The runs a service loads, what `GET /v1/models` says of each, and the request body of each application.

A run folder's checkpoint names its kind (``config.json``'s ``"kind"``), which is one
application's ``predictor.kind``; that application's `Predictor` loads it. Its
request body is made from its predict options dataclass (`Application.predict_options`):
every option a client may set, with the same name, type, default and help as the
command line's flag, less those that concern the server (device, batch size,
output format, files it would write or read), plus the inputs of the application
(`INPUTS`). Bodies are strict: a wrong type (a seed of 1.5 or "1"), NaN or an
unknown field is a 422.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from unrolled.apps.base import Application, Predictor
from unrolled.apps.registry import APPLICATIONS
from unrolled.checkpoint import CONFIG_FILE, resolve_checkpoint
from unrolled.serve.config import OPTION_LIMITS, ServeOptions

INPUTS = {"lm": "prime", "classify": "texts", "tag": "texts", "seq2seq": "sources", "caption": "images",
          "glimpse": "images", "speech": "audio", "video": "clips"}
"""What each application's requests carry: a prime (its options), a list of texts, or files (images, audio
files, clips files: base64 in JSON, or multipart uploads)."""
SERVER_OPTIONS = frozenset({"device", "batch_size", "json", "attention_map", "path", "lm", "text_column", "vocabulary"})
"""Predict options a client may not set: the server's own, and those that name files on the server."""
FILE_SUFFIX = {"images": ".png", "audio": ".wav", "clips": ".npz"}  # when an upload has no name
SEED_RANGE = (0, 2**63 - 1)
MIN_TEMPERATURE = 0.01  # below this, dividing log-probabilities by it overflows float32 to -inf everywhere
LENGTH_PENALTY_BOUND = 5.0  # |alpha| of the GNMT penalty ((5 + |Y|) / 6)^alpha; far beyond it the power overflows
STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
VOCABULARY_COUNTS = ("vocab_size", "source_vocab", "target_vocab", "classes", "num_classes", "tags", "symbols")


@dataclass
class Loaded:
    """One loaded run: the name its routes use, its folder, its application and predictor, its checkpoint config."""

    name: str
    run: Path
    app: Application
    predictor: Predictor[Any, Any]
    saved: dict[str, Any]

    @property
    def inputs(self) -> str:
        return INPUTS[self.app.name]

    @property
    def replies(self) -> bool:
        """Whether the model answers ``/reply``: a seq2seq model (message in, replies out)."""
        return self.app.name == "seq2seq"

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/models`` says of this run."""
        model = self.saved.get("model")
        sizes = {key: value for key, value in (model or {}).items()
                 if key in VOCABULARY_COUNTS and isinstance(value, int)} if isinstance(model, dict) else {}
        if isinstance(self.saved.get("vocabulary"), list):
            sizes.setdefault("vocab_size", len(self.saved["vocabulary"]) + 1)  # and the unknown symbol
        config = dict(self.saved.get("config") or {})
        if "train" in self.saved:
            config["train"] = self.saved["train"]
        return {"name": self.name, "kind": self.predictor.kind, "application": self.app.name, "inputs": self.inputs,
                "replies": self.replies, "run": str(self.run), "step": self.saved.get("step"),
                "vocabulary_sizes": sizes, "config": config, "validation": self.saved.get("validation")}


def application_of(kind: str, run: str | Path) -> Application:
    """The application whose predictor reads checkpoints of `kind`; a one-line error for a kind none reads."""
    for app in APPLICATIONS.values():
        if app.predictor.kind == kind and app.name in INPUTS:
            return app
    raise ValueError(f"{run}: its checkpoint is of kind {kind!r}, which unrolled serve does not serve")


def read_kind(run: str | Path) -> tuple[str, dict[str, Any]]:
    """The kind and config of the checkpoint a run folder (best, else last) or checkpoint folder holds."""
    folder = resolve_checkpoint(run)
    try:
        saved = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder / CONFIG_FILE}: cannot be read ({' '.join(str(error).split())})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("kind"), str):
        raise ValueError(f"{folder / CONFIG_FILE}: names no kind of model; is it a checkpoint of unrolled?")
    return saved["kind"], saved


def load_runs(runs: list[str], *, device: str = "auto") -> dict[str, Loaded]:
    """Each run loaded on `device`, named by its folder (``runs/demo`` -> ``demo``; ``demo-2`` for a second).

    A run that does not load raises a one-line ValueError naming it.
    """
    loaded: dict[str, Loaded] = {}
    for run in runs:
        kind, saved = read_kind(run)
        app = application_of(kind, run)
        predictor = app.predictor.load(run, device=device)
        path = Path(run)
        base = path.resolve().name if path.name not in ("best", "last") else path.resolve().parent.name
        name, copy = base, 1
        while name in loaded:
            copy += 1
            name = f"{base}-{copy}"
        loaded[name] = Loaded(name, path, app, predictor, saved)
    return loaded


# ---------------------------------------------------------------------- request bodies


class FileData(BaseModel):
    """A file sent inside JSON: its bytes in base64, and its name (its suffix tells the format where needed)."""

    model_config = STRICT
    data: str = Field(description="the file's bytes, base64-encoded")
    name: str | None = Field(default=None, max_length=200, description="the file's name, e.g. clip.wav")


def client_options(options: type) -> list[dataclasses.Field[Any]]:
    """The fields of a predict options dataclass that a client may set."""
    return [item for item in dataclasses.fields(options) if item.init and item.name not in SERVER_OPTIONS]


def option_field(item: dataclasses.Field[Any], kind: Any, limits: ServeOptions) -> tuple[Any, Any]:
    """The pydantic (type, Field) of one option: its default (at most its limit, `OPTION_LIMITS`) and help; seeds
    in `SEED_RANGE`, temperatures from `MIN_TEMPERATURE`, length penalties within `LENGTH_PENALTY_BOUND`."""
    default = item.default if item.default is not dataclasses.MISSING else item.default_factory()  # type: ignore[operator]
    if item.name in OPTION_LIMITS and isinstance(default, int) and not isinstance(default, bool):
        default = min(default, getattr(limits, OPTION_LIMITS[item.name][0]))
    bounds: dict[str, Any] = {}
    if item.name == "seed":
        bounds = {"ge": SEED_RANGE[0], "le": SEED_RANGE[1]}
    elif item.name == "temperature":
        bounds = {"ge": MIN_TEMPERATURE}
    elif item.name == "length_penalty":
        bounds = {"ge": -LENGTH_PENALTY_BOUND, "le": LENGTH_PENALTY_BOUND}
    return kind, Field(default=default, description=item.metadata.get("help"), **bounds)


def request_model(loaded: Loaded, limits: ServeOptions) -> type[BaseModel]:
    """The JSON body of ``POST /v1/models/NAME/predict`` for this run (see the module docstring)."""
    options = loaded.app.predict_options
    hints = typing.get_type_hints(options)
    fields: dict[str, Any] = {item.name: option_field(item, hints[item.name], limits)
                              for item in client_options(options)}
    inputs = loaded.inputs
    if inputs == "prime":
        fields["stream"] = (bool, Field(default=False, description="send the characters as server-sent events "
                                                                  "while they are drawn (one sample only)"))
    elif inputs in ("texts", "sources"):
        fields[inputs] = (list[str], Field(min_length=1, description=f"the {inputs} to answer, one result each"))
    else:
        fields["files"] = (list[FileData], Field(min_length=1, description=f"the {inputs} files, base64-encoded"))
    title = "".join(part.capitalize() for part in loaded.name.replace("_", "-").split("-") if part) or "Model"
    return create_model(f"{title}Predict", __config__=STRICT, **fields)


class ReplyRequest(BaseModel):
    """The body of ``POST /v1/models/NAME/reply``: a message, and how many suggestions."""

    model_config = STRICT
    message: str = Field(min_length=1, description="the message to reply to")
    k: int = Field(default=3, ge=1, description="how many suggested replies (at most --max-samples)")
    diverse: bool = Field(default=True, description="drop near-duplicates (false: plain n-best, for comparison)")


class Suggestion(BaseModel):
    text: str
    score: float = Field(description="the reply's log-probability given the message (sum over its tokens)")


class ReplyResponse(BaseModel):
    message: str
    replies: list[Suggestion]
    candidates: int = Field(description="n-best candidates the replies were chosen from")


class ModelList(BaseModel):
    models: list[dict[str, Any]]


class Health(BaseModel):
    status: Literal["ok"]
    models: int

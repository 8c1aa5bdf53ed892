"""Checkpoints: safetensors weights and JSON in one folder, written atomically, loaded without running code.

A checkpoint is a folder:

    model.safetensors     the model's state dict
    training.safetensors  optional: the training state's tensors (optimizer and scheduler state,
                          RNG states as uint8 tensors); the rest of that state (numbers, flags,
                          its nesting) as JSON in the file's metadata
    config.json           a JSON object: model config, vocabulary, data split, step, ... and
                          ``"kind"``, the model type (e.g. ``"char-lm"``)

Nothing is pickled: tensors go through safetensors and everything else through
``json``, so loading a checkpoint never runs code from its files.

Saving is atomic. Everything is written into a temporary sibling folder
(``.NAME.tmp-*``), each file and the folder are fsynced, config.json last;
then an existing checkpoint is renamed aside (``.NAME.old-*``), the new one
renamed into place and the old one deleted (`unrolled.atomic.replace_folder`). A kill at any moment leaves the
old or the new checkpoint whole: under NAME, or, if the kill fell between the
two renames, under a leftover name that `load_checkpoint` recovers from.
One writer per checkpoint folder at a time.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import Tensor

from unrolled.atomic import ASIDE_TAG, TEMP_TAG, replace_folder  # .NAME.old-<hex>, .NAME.tmp-<hex>
from unrolled.atomic import fsync_path as _fsync
from unrolled.atomic import sibling as _sibling

MODEL_FILE = "model.safetensors"
TRAINING_FILE = "training.safetensors"
CONFIG_FILE = "config.json"
STATE_KEY = "unrolled.training_state"  # training.safetensors metadata entry holding the JSON part
ERROR_DETAIL_CHARS = 160

# Tags in the JSON part of a flattened state; a tagged node is a one-entry object.
TENSOR_TAG, TUPLE_TAG, PAIRS_TAG, FLOAT_TAG = "__tensor__", "__tuple__", "__pairs__", "__float__"

Tree = Any  # a JSON value
RngState = tuple[dict[str, Tensor], dict[str, Any]]


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded or saved; the message is one line naming the file."""


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns.

    `recovered_from` is the leftover folder of an interrupted save that was loaded
    because the checkpoint folder itself was missing; None normally.
    """

    model_state: dict[str, Tensor]
    config: dict[str, Any]
    training_state: Any = None
    recovered_from: Path | None = None


# ---------------------------------------------------------------- flattening


def flatten_state(state: Any) -> tuple[dict[str, Tensor], Tree]:
    """Split a nested state (e.g. an optimizer's `state_dict()`) into tensors and a JSON tree.

    Tensors are stored under path-like names (``optimizer/state/0/exp_avg``) and
    replaced in the tree by ``{"__tensor__": name}``. Dicts with int (or ``__``-prefixed)
    keys become ``{"__pairs__": [[key, value], ...]}`` so int keys stay ints; tuples become
    ``{"__tuple__": [...]}``; non-finite floats ``{"__float__": "inf"}``. Other leaves must be
    str, int, float, bool or None. `unflatten_state` inverts it.
    """
    tensors: dict[str, Tensor] = {}
    return tensors, _encode(state, [], tensors)


def unflatten_state(tensors: dict[str, Tensor], tree: Tree) -> Any:
    """Rebuild the state `flatten_state` split; raises KeyError, TypeError or ValueError on a malformed tree."""
    if isinstance(tree, list):
        return [unflatten_state(tensors, node) for node in tree]
    if not isinstance(tree, dict):
        return tree
    if len(tree) == 1:
        ((tag, value),) = tree.items()
        if tag == TENSOR_TAG:
            return tensors[value]
        if tag == TUPLE_TAG:
            return tuple(unflatten_state(tensors, node) for node in value)
        if tag == PAIRS_TAG:
            return {key: unflatten_state(tensors, node) for key, node in value}
        if tag == FLOAT_TAG:
            return float(value)
    return {key: unflatten_state(tensors, node) for key, node in tree.items()}


def _encode(obj: Any, path: list[str], tensors: dict[str, Tensor]) -> Tree:
    if isinstance(obj, Tensor):
        name = "/".join(path) or "tensor"
        while name in tensors:  # str key "0" and int key 0 at the same place
            name += "~"
        tensors[name] = obj
        return {TENSOR_TAG: name}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {FLOAT_TAG: repr(obj)}
    if isinstance(obj, (list, tuple)):
        items = [_encode(item, [*path, str(i)], tensors) for i, item in enumerate(obj)]
        return items if isinstance(obj, list) else {TUPLE_TAG: items}
    if isinstance(obj, dict):
        if all(isinstance(key, str) and not key.startswith("__") for key in obj):
            return {key: _encode(value, [*path, key], tensors) for key, value in obj.items()}
        if all(isinstance(key, (str, int)) and not isinstance(key, bool) for key in obj):
            return {PAIRS_TAG: [[key, _encode(value, [*path, str(key)], tensors)] for key, value in obj.items()]}
    where = "/".join(path) or "the state"
    raise TypeError(f"{where}: a {type(obj).__name__} cannot go into a checkpoint (tensors, numbers, str, "
                    "bool, None, lists, tuples and dicts with str or int keys can)")


# ---------------------------------------------------------------- random number generators


def capture_rng_state() -> RngState:
    """The states of torch's (CPU, and CUDA when in use), NumPy's global and Python's `random` generators.

    Returns (tensors, info): tensors are uint8 (``torch``, ``numpy``, ``cuda/0`` ...),
    info is JSON; both fit in a checkpoint's training state. `restore_rng_state` puts them back.
    """
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    tensors = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.asarray(keys, dtype="<u4").view(np.uint8).copy()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for device, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda/{device}"] = state
    version, internal, gauss_next = random.getstate()
    info = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {"name": name, "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
    }
    return tensors, info


def restore_rng_state(tensors: dict[str, Tensor], info: dict[str, Any]) -> None:
    """Put back generator states taken by `capture_rng_state` (CUDA ones only where CUDA is available)."""
    torch.set_rng_state(tensors["torch"].detach().to("cpu", torch.uint8).contiguous())
    keys = tensors["numpy"].detach().cpu().contiguous().numpy().view("<u4").astype(np.uint32)
    numpy_info = info["numpy"]
    np.random.set_state((numpy_info["name"], keys, numpy_info["pos"], numpy_info["has_gauss"],
                         numpy_info["cached_gaussian"]))
    cuda = [tensors[f"cuda/{d}"] for d in range(len(tensors)) if f"cuda/{d}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    python = info["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))


# ---------------------------------------------------------------- saving


def save_checkpoint(folder: str | os.PathLike[str], *, model_state: dict[str, Tensor], config: dict[str, Any],
                    training_state: Any = None) -> Path:
    """Write a checkpoint folder atomically (see the module docstring) and return its path.

    `model_state` is a state dict (tensors are copied to CPU, made contiguous, and
    tensors sharing storage, such as tied weights, stored as separate copies);
    `config` a JSON-serialisable dict; `training_state` anything `flatten_state` takes, or None.
    """
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"{target} exists and is not a folder: choose another checkpoint path")
    if not isinstance(config, dict):
        raise CheckpointError(f"the config for {target} is a {type(config).__name__}, not a dict")
    try:
        config_text = json.dumps(config, indent=2, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"the config for {target} is not JSON-serialisable ({error})") from error
    training = None if training_state is None else flatten_state(training_state)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _sibling(target, TEMP_TAG)
    temp.mkdir()
    try:
        _write_tensors(temp / MODEL_FILE, model_state, {"format": "pt"})
        if training is not None:
            tensors, tree = training
            metadata = {"format": "pt", STATE_KEY: json.dumps(tree, allow_nan=False)}
            _write_tensors(temp / TRAINING_FILE, tensors, metadata)
        _write_text(temp / CONFIG_FILE, config_text)  # last: a temp folder with config.json is whole
        _fsync(temp)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    replace_folder(temp, target)  # the old checkpoint aside, the new one in, the old one deleted
    for leftover in _leftovers(target):
        shutil.rmtree(leftover, ignore_errors=True)
    return target


def _storable(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """CPU, contiguous tensors, no two sharing storage (safetensors refuses shared storage)."""
    storable: dict[str, Tensor] = {}
    storages: set[int] = set()
    for name, tensor in tensors.items():
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name}: a {type(tensor).__name__} in a state dict; only tensors can be saved there")
        tensor = tensor.detach().to("cpu").contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in storages:
            tensor = tensor.clone()
        elif pointer:
            storages.add(pointer)
        storable[name] = tensor
    return storable


def _write_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    safetensors.torch.save_file(_storable(tensors), str(path), metadata=metadata)
    _fsync(path)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write(text + "\n")
        file.flush()
        os.fsync(file.fileno())


def _leftovers(target: Path) -> list[Path]:
    """Temp and aside folders of interrupted saves to `target`, newest first."""
    if not target.parent.is_dir():
        return []
    prefixes = tuple(f".{target.name}.{tag}-" for tag in (TEMP_TAG, ASIDE_TAG))
    found = [path for path in target.parent.iterdir() if path.name.startswith(prefixes) and path.is_dir()]
    return sorted(found, key=lambda path: path.stat().st_mtime_ns, reverse=True)


# ---------------------------------------------------------------- loading


def load_checkpoint(folder: str | os.PathLike[str], *, kind: str | None = None) -> Checkpoint:
    """Load a checkpoint folder; with `kind`, insist that its config's ``"kind"`` equals it.

    Where the folder is missing but an interrupted save left a whole temp or aside
    folder, that one (the newest whole one) is loaded and named in `recovered_from`.
    Raises CheckpointError, one line naming the file, for anything missing or corrupt.
    """
    target = Path(folder)
    if target.is_dir():
        checkpoint = _load_folder(target)
        source = target
    else:
        checkpoint = _recover(target)
        source = checkpoint.recovered_from or target
    found = checkpoint.config.get("kind")
    if kind is not None and found != kind:
        raise CheckpointError(f"{source / CONFIG_FILE} is a {found!r} checkpoint, not {kind!r}: "
                              f"load it as a {found!r} model, or pass a {kind!r} checkpoint")
    return checkpoint


def _recover(target: Path) -> Checkpoint:
    if target.exists():
        raise CheckpointError(f"{target} is not a folder: a checkpoint is a folder holding {CONFIG_FILE} "
                              f"and {MODEL_FILE}; check the path")
    leftovers = _leftovers(target)
    for leftover in leftovers:
        try:
            checkpoint = _load_folder(leftover)
        except CheckpointError:
            continue
        checkpoint.recovered_from = leftover
        return checkpoint
    also = f" and the {len(leftovers)} leftover(s) of an interrupted save are not whole" if leftovers else ""
    raise CheckpointError(f"{target} does not exist{also}: there is no checkpoint to load; check the path")


def _load_folder(folder: Path) -> Checkpoint:
    config = _read_config(folder / CONFIG_FILE)
    model_state, _ = _read_tensors(folder / MODEL_FILE)
    training_path = folder / TRAINING_FILE
    training_state = _read_training(training_path) if training_path.exists() else None
    return Checkpoint(model_state=model_state, config=config, training_state=training_state)


def _read_config(path: Path) -> dict[str, Any]:
    _require_file(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({_brief(error)}): the checkpoint cannot be loaded; "
                              "use another one") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} holds a JSON {type(config).__name__}, not an object: "
                              "the checkpoint cannot be loaded; use another one")
    return config


def _read_tensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    _require_file(path)
    try:
        with safetensors.safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118 (safe_open is no dict)
    except Exception as error:  # safetensors raises its own error types, OSError and others
        raise CheckpointError(f"{path} is truncated or corrupt ({_brief(error)}): the checkpoint cannot be loaded; "
                              "use another one") from error
    return tensors, metadata


def _read_training(path: Path) -> Any:
    tensors, metadata = _read_tensors(path)
    try:
        return unflatten_state(tensors, json.loads(metadata[STATE_KEY]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} holds no readable training state ({_brief(error)}): "
                              "the checkpoint cannot be resumed; use another one") from error


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete; use another one")


def _brief(error: BaseException) -> str:
    """An exception as a short single line, for error messages."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    text = lines[0]
    return text if len(text) <= ERROR_DETAIL_CHARS else text[: ERROR_DETAIL_CHARS - 3] + "..."


def resolve_checkpoint(path: str | os.PathLike[str], *, command: str = "unrolled ... train") -> Path:
    """The checkpoint folder to load for a run folder (best, else last) or a checkpoint folder itself.

    `command` names the command that makes such runs, for the error messages.
    """
    folder = Path(path)
    if (folder / CONFIG_FILE).is_file():
        return folder
    if not folder.exists():
        raise ValueError(f"{folder}: no such run or checkpoint folder")
    if not folder.is_dir():
        raise ValueError(f"{folder}: is a file, expected a run folder (from `{command} --out`)")
    for name in ("best", "last"):
        if (folder / name).exists() or any(folder.glob(f".{name}.*")):
            return folder / name
    raise ValueError(f"{folder}: holds no checkpoint (no best/ or last/ folder); train one with `{command}`")


def saved_run_config(out: str | os.PathLike[str], *, kind: str) -> dict[str, Any] | None:
    """The config of run `out`'s last checkpoint (a resume's model, vocabulary and split), None if it has none.

    With no checkpoint, the trainer itself says what is wrong with resuming nothing.
    """
    last = Path(out) / "last"
    if not last.exists() and not any(Path(out).glob(".last.*")):
        return None
    return load_checkpoint(last, kind=kind).config


def load_model_state(model: Any, state: dict[str, Tensor], path: str | os.PathLike[str]) -> None:
    """``model.load_state_dict(state)``; a one-line CheckpointError naming `path` when the weights do not fit."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: the weights do not fit the model config ({str(error).splitlines()[0]})"
                              ) from None

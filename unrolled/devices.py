"""Where and in what arithmetic a model runs: device names, precision, and moving batches.

`resolve_device` turns a name ("auto", "cpu", "cuda", "cuda:N", "mps") into a
``torch.device`` or a one-line error; `resolve_precision` turns a precision
("fp32", "bf16", "fp16", "auto") into the one a device will use; `to_device`
moves a batch's tensors. The trainer goes through these, and so may any
command that builds a model outside it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch
from torch import Tensor

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
"""The precisions a run may ask for (`resolve_precision`); the one list the config and the options use."""
DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"
_CUDA = re.compile(r"cuda(?::(\d+))?")


def check_device_name(name: object) -> str:
    """`name` if it has the form of a device name (`DEVICE_FORMS`), else a one-line ValueError.

    Only the form: whether the device is here is `resolve_device`'s question.
    """
    text = name.strip().lower() if isinstance(name, str) else None
    if text is None or not (text in ("auto", "cpu", "mps") or _CUDA.fullmatch(text)):
        raise ValueError(f"--device {name!r}: not a device name; use {DEVICE_FORMS}")
    return text


def resolve_device(name: str) -> torch.device:
    """The ``torch.device`` that `name` stands for here; a one-line ValueError when it is not here.

    "auto" is CUDA (the current device) when ``torch.cuda.is_available()``, else
    the CPU. It never picks Apple's MPS: several operations the models use (the
    fused recurrent kernels, some of the losses' and the decoders' ops) are
    missing there and fall back to the CPU, or run slower than on the CPU, so an
    MPS run has to be asked for by name ("mps", accepted where
    ``torch.backends.mps.is_available()``). "cpu", "cuda" and "cuda:N" name
    themselves; a CUDA device that is not here (no CUDA at all, or N past the
    count) is refused with what to use instead.
    """
    text = check_device_name(name)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"--device {name}: no Apple MPS device here (torch.backends.mps.is_available() is "
                             "False); use --device cpu or auto")
        return torch.device("mps")
    match = _CUDA.fullmatch(text)
    assert match is not None
    if not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device here (torch.cuda.is_available() is False); use --device "
                         "cpu or auto")
    if match.group(1) is None:
        return torch.device("cuda")
    index, count = int(match.group(1)), torch.cuda.device_count()
    if index >= count:
        raise ValueError(f"--device {name}: there {'is' if count == 1 else 'are'} {count} CUDA device(s) here "
                         f"(cuda:0 to cuda:{count - 1}); use one of them, or --device cuda")
    return torch.device("cuda", index)


def _as_device(device: torch.device | str) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(device)


def bf16_native(device: torch.device | str) -> bool:
    """Whether `device` computes bfloat16 matrix products natively (CPU: AVX-512 BF16 or AMX via oneDNN).

    Where it does not, bfloat16 is emulated and slower than float32, so
    precision "auto" does not pick it there.
    """
    device = _as_device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """ "fp32", "bf16" or "fp16": the arithmetic a run asking for `precision` uses on `device`.

    "auto": bf16 where the device computes it natively (`bf16_native`), else on
    CUDA fp16 (with a gradient scaler), else fp32. fp16 is float16 autocast with
    ``torch.amp.GradScaler``, for CUDA only: on other devices it is refused with
    a one-line ValueError (the CPU has no fast float16 arithmetic, and bf16 needs
    no scaler).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    device = _as_device(device)
    if precision == "auto":
        if bf16_native(device):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"--precision fp16 needs a CUDA device, not {device.type}: use --precision bf16 or fp32 "
                         "there")
    return precision


def to_device(batch: Any, device: torch.device | str) -> Any:
    """`batch` with every tensor moved to `device`: through tuples (named ones too), lists, dicts, dataclasses.

    Anything else is passed as it is; a container whose contents did not move
    is returned itself (so on the CPU a batch comes back unchanged).
    """
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        items = [to_device(item, device) for item in batch]
        if all(new is old for new, old in zip(items, batch, strict=True)):
            return batch
        if isinstance(batch, list):
            return items
        return type(batch)(*items) if hasattr(batch, "_fields") else type(batch)(items)
    if isinstance(batch, dict):
        moved = {key: to_device(value, device) for key, value in batch.items()}
        return batch if all(moved[key] is value for key, value in batch.items()) else type(batch)(moved)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {}
        for item in dataclasses.fields(batch):
            if item.init:
                value = getattr(batch, item.name)
                new = to_device(value, device)
                if new is not value:
                    changes[item.name] = new
        return dataclasses.replace(batch, **changes) if changes else batch
    return batch

"""Where models run: the device a name asks for (temporary; the trainer package brings the full module)."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """auto: CUDA when present, else the CPU; cpu, cuda, cuda:N, mps; one-line errors."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device here (torch.cuda.is_available() is False); "
                         "use --device cpu or auto")
    return device

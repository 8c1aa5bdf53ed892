"""Device names, precision and moving batches (`unrolled.devices`)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from tests.training_fixtures import Window
from unrolled import devices
from unrolled.devices import resolve_device, resolve_precision
from unrolled.training import TrainConfig, to_device


@dataclass
class Pair:
    left: Tensor
    right: list[Tensor]
    note: str = "kept"


def test_to_device_moves_nested_batches() -> None:
    x, y = torch.ones(2), torch.zeros(3, dtype=torch.float64)
    batch = {"pair": Pair(x, [y]), "window": Window(x, y, None), "plain": (x, 3)}  # type: ignore[arg-type]
    assert to_device(batch, "cpu") is batch  # nothing to move: the same object
    moved = to_device(batch, "meta")
    assert moved["pair"].left.device.type == "meta" and moved["pair"].right[0].device.type == "meta"
    assert moved["pair"].note == "kept" and isinstance(moved["window"], Window)
    assert moved["window"].targets.device.type == "meta" and moved["window"].carry is None
    assert moved["plain"][1] == 3 and moved["plain"][0].device.type == "meta"


def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def two_cudas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_cuda_where_there_is_one_else_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    no_cuda(monkeypatch)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)  # never picked by auto
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    two_cudas(monkeypatch)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("CUDA") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("mps") == torch.device("mps")


@pytest.mark.parametrize(("name", "said"), [
    ("cuda", "--device cuda: no CUDA device here (torch.cuda.is_available() is False); use --device cpu or auto"),
    ("cuda:0", "--device cuda:0: no CUDA device here"),
    ("mps", "--device mps: no Apple MPS device here"),
    ("tpu", "--device 'tpu': not a device name; use auto, cpu, cuda, cuda:N or mps"),
    ("cuda:x", "--device 'cuda:x': not a device name"),
])
def test_a_device_that_is_not_here_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch, name: str,
                                                           said: str) -> None:
    no_cuda(monkeypatch)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError) as error:
        resolve_device(name)
    assert str(error.value).startswith(said) and "\n" not in str(error.value)


def test_a_cuda_index_past_the_count_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    two_cudas(monkeypatch)
    with pytest.raises(ValueError, match=r"^--device cuda:2: there are 2 CUDA device\(s\) here \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")


@pytest.mark.parametrize(("native", "device", "auto"), [(True, "cpu", "bf16"), (False, "cpu", "fp32"),
                                                        (True, "cuda", "bf16"), (False, "cuda", "fp16")])
def test_auto_precision_is_bf16_where_native_else_fp16_on_cuda_else_fp32(
        monkeypatch: pytest.MonkeyPatch, native: bool, device: str, auto: str) -> None:
    monkeypatch.setattr(devices, "bf16_native", lambda device: native)
    assert resolve_precision("auto", torch.device(device)) == auto
    assert resolve_precision("fp32", torch.device(device)) == "fp32"
    assert resolve_precision("bf16", torch.device(device)) == "bf16"


def test_fp16_is_refused_off_cuda_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^--precision fp16 needs a CUDA device, not cpu: use --precision bf16 or "
                                         r"fp32 there$"):
        resolve_precision("fp16", "cpu")
    assert resolve_precision("fp16", torch.device("cuda")) == "fp16"
    assert TrainConfig.__dataclass_fields__["precision"].metadata["choices"] == devices.PRECISIONS

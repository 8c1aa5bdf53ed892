"""The C++ unroll (`unrolled.native`): `unroll`'s outputs, states and gradients for every variant it serves,
finite differences for its hand-written backward, and `unroll` wherever it does not serve."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from unrolled import native
from unrolled.cells import make_cell
from unrolled.native import LSTMScan, native_unroll, supports
from unrolled.recurrent import Recurrent, unroll
from unrolled.variants.train import VARIANTS

SERVED = [name for name, (mode, _) in VARIANTS.items() if mode in ("lstm", "gru")]
STEPS, BATCH, INPUTS, HIDDEN = 7, 4, 3, 5


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    assert native.unavailable() is None, f"the C++ kernels did not build: {native.unavailable()}"


def results(unroller: Any, cell: torch.nn.Module, x: torch.Tensor, state: Any, mask: torch.Tensor | None,
            weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """Outputs, final state and every gradient (input, initial state, parameters) under a random loss."""
    for parameter in cell.parameters():
        parameter.grad = None
    x = x.detach().requires_grad_()
    state = tuple(s.detach().requires_grad_() for s in state) if isinstance(state, tuple) else \
        state.detach().requires_grad_()
    out, final, _ = unroller(cell, x, state, mask=mask)
    finals = final if isinstance(final, tuple) else (final,)
    loss = (out * weights[0]).sum() + sum((f * w).sum() for f, w in zip(finals, weights[1:], strict=False))
    loss.backward()
    states = state if isinstance(state, tuple) else (state,)
    grads = [x.grad, *(s.grad for s in states), *(p.grad for p in cell.parameters())]
    assert all(g is not None for g in grads)
    return [out, *finals, *grads]  # type: ignore[list-item]


@pytest.mark.parametrize("variant", SERVED)
@pytest.mark.parametrize("padded", [False, True])
def test_every_served_variant_matches_unroll_with_gradients(variant: str, padded: bool) -> None:
    torch.manual_seed(1)
    mode, options = VARIANTS[variant]
    cell = make_cell(mode, INPUTS, HIDDEN, dtype=torch.float64, **options)
    with torch.no_grad():  # peepholes and biases away from their initial values, so every term counts
        for parameter in cell.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x = torch.randn(STEPS, BATCH, INPUTS, dtype=torch.float64)
    h0 = torch.randn(BATCH, HIDDEN, dtype=torch.float64)
    state = (h0, torch.randn(BATCH, HIDDEN, dtype=torch.float64)) if mode == "lstm" else h0
    mask = torch.arange(STEPS).unsqueeze(1) < torch.tensor([STEPS, 3, 1, 5]) if padded else None
    weights = [torch.randn(STEPS, BATCH, HIDDEN, dtype=torch.float64),
               *(torch.randn(BATCH, HIDDEN, dtype=torch.float64) for _ in range(2))]
    assert supports(cell, x)
    ours = results(native_unroll, cell, x, state, mask, weights)
    reference = results(unroll, cell, x, state, mask, weights)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("blas", [True, False])
def test_float32_matches_unroll_to_float_tolerance(blas: bool) -> None:
    """With the BLAS torch carries, and with ATen's addmm where a torch has none."""
    torch.manual_seed(2)
    before = native.library().use_blas(blas)
    x = torch.randn(STEPS, BATCH, INPUTS)
    weights = [torch.randn(STEPS, BATCH, HIDDEN), torch.randn(BATCH, HIDDEN), torch.randn(BATCH, HIDDEN)]
    for cell in (make_cell("lstm", INPUTS, HIDDEN, peepholes=True), make_cell("gru", INPUTS, HIDDEN, variant="cho"),
                 make_cell("gru", INPUTS, HIDDEN)):
        state = cell.initial_state(BATCH, like=x)
        for a, b in zip(results(native_unroll, cell, x, state, None, weights),
                        results(unroll, cell, x, state, None, weights), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    native.library().use_blas(before)


@pytest.mark.parametrize("mode, options", [("lstm", {"peepholes": True}), ("gru", {"variant": "cho"}), ("gru", {})])
def test_cells_without_biases_match_unroll(mode: str, options: dict[str, Any]) -> None:
    torch.manual_seed(7)
    cell = make_cell(mode, INPUTS, HIDDEN, bias=False, dtype=torch.float64, **options)
    x = torch.randn(STEPS, BATCH, INPUTS, dtype=torch.float64)
    state = cell.initial_state(BATCH, like=x)
    weights = [torch.randn(STEPS, BATCH, HIDDEN, dtype=torch.float64),
               *(torch.randn(BATCH, HIDDEN, dtype=torch.float64) for _ in range(2))]
    for a, b in zip(results(native_unroll, cell, x, state, None, weights),
                    results(unroll, cell, x, state, None, weights), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("flags", [0b1111111 & ~64, 1 | 2 | 4 | 8 | 16 | 32 | 64, 2 | 4 | 8 | 32, 1 | 2 | 32])
def test_the_lstm_backward_agrees_with_finite_differences(flags: int) -> None:
    torch.manual_seed(3)
    gates = 1 + bool(flags & 1) + bool(flags & 2 and not flags & 64) + bool(flags & 4)  # i, f (not CIFG's), g, o
    rows = gates * HIDDEN
    double = {"dtype": torch.float64, "requires_grad": True}
    xw = torch.randn(STEPS, 2, rows, **double)
    h0, c0 = torch.randn(2, HIDDEN, **double), torch.randn(2, HIDDEN, **double)
    w_hh, peep = torch.randn(rows, HIDDEN, **double), torch.randn(3, HIDDEN, **double)
    keep = torch.tensor([[1.0, 1.0]] * 4 + [[1.0, 0.0]] * 3, dtype=torch.float64)  # the second sequence ends at 4
    assert torch.autograd.gradcheck(lambda *a: LSTMScan.apply(*a, keep, flags), (xw, h0, c0, w_hh, peep))


def test_the_gru_backward_agrees_with_finite_differences() -> None:
    torch.manual_seed(4)
    double = {"dtype": torch.float64, "requires_grad": True}
    xrz, xn = torch.randn(STEPS, 2, 2 * HIDDEN, **double), torch.randn(STEPS, 2, HIDDEN, **double)
    h0 = torch.randn(2, HIDDEN, **double)
    w_rz, w_n = torch.randn(2 * HIDDEN, HIDDEN, **double), torch.randn(HIDDEN, HIDDEN, **double)
    keep = torch.tensor([[1.0, 1.0]] * 5 + [[1.0, 0.0]] * 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda *a: native.GRUChoScan.apply(*a, keep), (xrz, xn, h0, w_rz, w_n))


def test_the_cudnn_gru_backward_agrees_with_finite_differences() -> None:
    torch.manual_seed(6)
    double = {"dtype": torch.float64, "requires_grad": True}
    xw, h0 = torch.randn(STEPS, 2, 3 * HIDDEN, **double), torch.randn(2, HIDDEN, **double)
    w_hh, b_hh = torch.randn(3 * HIDDEN, HIDDEN, **double), torch.randn(3 * HIDDEN, **double)
    keep = torch.tensor([[1.0, 1.0]] * 3 + [[0.0, 1.0]] * 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda *a: native.GRUCudnnScan.apply(*a, keep), (xw, h0, w_hh, b_hh))


def test_a_bidirectional_stack_with_lengths_matches_the_python_loop() -> None:
    torch.manual_seed(5)
    layer = Recurrent("lstm", INPUTS, HIDDEN, num_layers=2, bidirectional=True, coupled=True, dtype=torch.float64)
    x = torch.randn(STEPS, BATCH, INPUTS, dtype=torch.float64)
    lengths = torch.tensor([STEPS, 2, 6, 4])
    reference, (h_ref, c_ref) = layer(x, lengths=lengths)
    layer.unroller = native_unroll
    out, (h, c) = layer(x, lengths=lengths)
    for a, b in ((out, reference), (h, h_ref), (c, c_ref)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(layer(x, lengths=lengths)[0], reference.detach(), rtol=1e-10, atol=1e-12)


def test_traces_and_cells_it_does_not_serve_run_unroll(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_kernels(*_: Any, **__: Any) -> Any:
        raise AssertionError("the C++ kernels ran where unroll should")

    monkeypatch.setattr(LSTMScan, "apply", no_kernels)
    monkeypatch.setattr(native.GRUChoScan, "apply", no_kernels)
    monkeypatch.setattr(native.GRUCudnnScan, "apply", no_kernels)
    x = torch.randn(STEPS, BATCH, INPUTS)
    lstm = make_cell("lstm", INPUTS, HIDDEN, peepholes=True)
    _, _, gates = native_unroll(lstm, x, lstm.initial_state(BATCH, like=x), trace=True)
    assert gates is not None and gates["c"].shape == (STEPS, BATCH, HIDDEN)
    for cell in (make_cell("rnn", INPUTS, HIDDEN), make_cell("rnn", INPUTS, HIDDEN, nonlinearity="relu")):
        assert not supports(cell, x)
        out, _, _ = native_unroll(cell, x, cell.initial_state(BATCH, like=x))
        torch.testing.assert_close(out, unroll(cell, x, cell.initial_state(BATCH, like=x))[0])
    assert not supports(lstm, x.half())


def test_a_machine_that_cannot_build_it_runs_unroll_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "library", lambda: None)
    monkeypatch.setattr(native, "_build_error", ["OSError: no compiler"])
    cell = make_cell("lstm", INPUTS, HIDDEN, coupled=True)
    x = torch.randn(STEPS, BATCH, INPUTS)
    out, _, _ = native_unroll(cell, x, cell.initial_state(BATCH, like=x))
    torch.testing.assert_close(out, unroll(cell, x, cell.initial_state(BATCH, like=x))[0])
    assert native.unavailable() == "OSError: no compiler"

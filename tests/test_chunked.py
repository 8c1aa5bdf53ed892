"""`unroll` compiled in chunks: the same outputs, state and gradients as `unroll`, eager where it should be."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from unrolled import chunked
from unrolled.cells import make_cell
from unrolled.chunked import CHUNK_STEPS, unroll_in_chunks
from unrolled.data.longrange import make_task
from unrolled.recurrent import Recurrent, unroll
from unrolled.variants.train import RunSpec, VariantNet, compiled, run

STEPS = 2 * CHUNK_STEPS + 3  # two compiled chunks and an eager remainder
TORCH_OWN_WARNINGS = ("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",
                      "ignore:The .grad attribute of a Tensor that is not a leaf Tensor:UserWarning")
"""torch's, not ours: inductor imports torch.utils.mkldnn; dynamo reads .grad of its non-leaf inputs (silent
outside tests; with warnings as errors it would stop the compile and the engine would fall back to eager)."""


def results(unroller: Any, cell: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Outputs, final state and every gradient (input, initial state, parameters) of one run."""
    for parameter in cell.parameters():
        parameter.grad = None
    x = x.detach().requires_grad_()
    state = (torch.zeros(4, 8, requires_grad=True), torch.zeros(4, 8, requires_grad=True))
    out, (h, c), _ = unroller(cell, x, state, mask=mask)
    (out.square().sum() + h.sum() + c.square().sum()).backward()
    grads = [x.grad, state[0].grad, state[1].grad, *(p.grad for p in cell.parameters())]
    assert all(g is not None for g in grads)
    return [out, h, c, *grads]  # type: ignore[list-item]


@pytest.mark.filterwarnings(*TORCH_OWN_WARNINGS)
def test_chunks_compute_unrolls_function_and_gradients_with_lengths() -> None:
    torch.manual_seed(0)
    cell = make_cell("lstm", 3, 8, coupled=True, peepholes=True)
    x = torch.randn(STEPS, 4, 3)
    mask = torch.arange(STEPS).unsqueeze(1) < torch.tensor([STEPS, 15, 4, 21])  # (T, B)
    for ours, reference in zip(results(unroll_in_chunks, cell, x, mask), results(unroll, cell, x, mask),
                               strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_evaluation_traces_and_short_sequences_stay_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler() -> Any:
        raise AssertionError("compiled where unroll should run eagerly")

    monkeypatch.setattr(chunked, "compiled_unroll", no_compiler)
    cell = make_cell("gru", 3, 8, variant="cho")
    x, h0 = torch.randn(STEPS, 4, 3), torch.zeros(4, 8)
    with torch.no_grad():
        torch.testing.assert_close(unroll_in_chunks(cell, x, h0)[0], unroll(cell, x, h0)[0])
    _, _, gates = unroll_in_chunks(cell, x, h0, trace=True)
    assert gates is not None and gates["z"].shape == (STEPS, 4, 8)
    out, _, _ = unroll_in_chunks(cell, x[: CHUNK_STEPS - 1], h0)
    assert out.shape == (CHUNK_STEPS - 1, 4, 8)


def test_the_layer_runs_whichever_unroller_it_is_given() -> None:
    layer = Recurrent("lstm", 3, 8, peepholes=True)
    assert layer.unroller is unroll
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return unroll(*args, **kwargs)

    layer.unroller = counting
    layer(torch.randn(5, 2, 3))
    assert calls == [1]


def test_a_failing_compiler_falls_back_to_eager_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Any:
        def call(*_: Any, **__: Any) -> Any:
            raise RuntimeError("backend failed")
        return call

    monkeypatch.setattr(chunked, "compiled_unroll", broken)
    task = make_task("order")
    model = VariantNet(task, "cifg", 8)
    assert compiled(model, "chunks") == (model, "compiled chunks") and model.rnn.unroller is unroll_in_chunks
    assert compiled(VariantNet(task, "lstm", 8), "chunks")[1] == "fused"
    result = run(task, RunSpec("order", "cifg", 20, 0, hidden=8), budget=0.0, compile="chunks")
    assert result.engine == "eager (RuntimeError)" and result.steps == 1

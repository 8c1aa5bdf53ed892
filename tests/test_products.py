"""The deferred recurrent products and the projection compute what F.linear and autograd compute."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unrolled import Recurrent
from unrolled.products import DeferredProducts, dense, project

TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}


@pytest.fixture(autouse=True)
def always_defer(monkeypatch):
    """These tests are about the deferred path, which small layers would otherwise not take."""
    monkeypatch.setattr("unrolled.recurrent.DEFER_MIN_MACS", 0)


def run_chain(product, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, loss_steps: int) -> torch.Tensor:
    """A toy recurrence h_t = tanh(x_t + product(h_{t-1})); the loss reads only the first `loss_steps` states."""
    h = torch.zeros(x.shape[1], weight.shape[1], dtype=x.dtype)
    states = []
    for t, x_t in enumerate(x.unbind(0)):
        if isinstance(product, DeferredProducts):
            product.step = t
        h = torch.tanh(x_t + product("hh", h, weight, bias))
        states.append(h)
    return sum((s * (k + 1)).sum() for k, s in enumerate(states[:loss_steps]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loss_steps", [6, 3])  # 3: the last steps' backward never runs, their records stay 0
def test_deferred_weight_gradient_equals_autograd(dtype, loss_steps):
    torch.manual_seed(0)
    steps, batch, size = 6, 3, 4
    x = torch.randn(steps, batch, size, dtype=dtype, requires_grad=True)
    weight = torch.randn(size, size, dtype=dtype, requires_grad=True)
    bias = torch.randn(size, dtype=dtype, requires_grad=True)

    def plain(name, h, w, b):
        return F.linear(h, w, b)

    expected = torch.autograd.grad(run_chain(plain, x, weight, bias, loss_steps), (x, weight, bias))
    got = torch.autograd.grad(run_chain(DeferredProducts(steps), x, weight, bias, loss_steps), (x, weight, bias))
    for want, have in zip(expected, got, strict=True):
        torch.testing.assert_close(have, want, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


def test_a_retained_graph_backpropagates_twice_the_same():
    torch.manual_seed(1)
    layer = Recurrent("gru", 3, 4, fused=False, variant="cho").double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    loss = layer(x)[0].pow(2).sum()
    loss.backward(retain_graph=True)
    first = [p.grad.clone() for p in layer.parameters()]
    loss.backward()
    for once, param in zip(first, layer.parameters(), strict=True):
        torch.testing.assert_close(param.grad, 2 * once, atol=1e-12, rtol=0)


@pytest.mark.parametrize("options", [{"mode": "gru", "variant": "cho"}, {"mode": "lstm", "peepholes": True},
                                     {"mode": "lstm", "coupled": True}, {"mode": "rnn", "nonlinearity": "relu"}])
def test_gradcheck_through_the_transparent_layer(options):
    torch.manual_seed(2)
    layer = Recurrent(input_size=2, hidden_size=3, num_layers=2, bidirectional=True, fused=False, **options).double()
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 2])
    params = tuple(layer.parameters())

    names = [name for name, _ in layer.named_parameters()]

    def function(x, *weights):
        out, _ = torch.func.functional_call(layer, dict(zip(names, weights, strict=True)), (x,), {"lengths": lengths})
        return out

    assert torch.autograd.gradcheck(function, (x, *[p.detach().clone().requires_grad_() for p in params]))


def test_variants_get_the_gradient_of_a_plain_autograd_loop():
    """The deferred path against the cell stepped with F.linear (its default product), step by step."""
    torch.manual_seed(3)
    layer = Recurrent("lstm", 3, 4, peepholes=True, coupled=True, batch_first=True).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    out, _ = layer(x)
    expected = torch.autograd.grad(out.pow(2).sum(), list(layer.parameters()))
    cell, state, outputs = layer.cells[0], None, []
    for x_t in x.unbind(1):
        h, state = cell(x_t, state)
        outputs.append(h)
    got = torch.autograd.grad(torch.stack(outputs, 1).pow(2).sum(), list(layer.parameters()))
    for want, have in zip(expected, got, strict=True):
        torch.testing.assert_close(have, want, atol=1e-12, rtol=0)


def test_project_equals_f_linear_with_gradients():
    torch.manual_seed(4)
    x = torch.randn(7, 5, 6).transpose(0, 1).requires_grad_()  # not contiguous, as batch_first inputs are
    weight = torch.randn(8, 6, requires_grad=True)
    bias = torch.randn(8, requires_grad=True)
    upstream = torch.randn(5, 7, 8)
    got = project(x, weight, bias)
    want = F.linear(x, weight, bias)
    torch.testing.assert_close(got, want)
    for g, w in zip(torch.autograd.grad((got * upstream).sum(), (x, weight, bias)),
                    torch.autograd.grad((want * upstream).sum(), (x, weight, bias)), strict=True):
        torch.testing.assert_close(g, w)
    with torch.no_grad():
        torch.testing.assert_close(project(x, weight, bias), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dense_equals_f_linear(dtype):
    x, weight = torch.randn(9, 7, dtype=dtype), torch.randn(5, 7, dtype=dtype)
    torch.testing.assert_close(dense(x, weight), F.linear(x, weight))
    torch.testing.assert_close(dense(x.t().contiguous().t(), weight), F.linear(x, weight))

"""The recurrent regularisers: locked dropout, weight drop, AR/TAR, and averaged weights in the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.training_fixtures import APP, TinyLM, assert_same_parameters, losses, settings, train
from unrolled.checkpoint import load_checkpoint
from unrolled.dropout import drop_connect, locked_dropout
from unrolled.models.charlm import CharLM, CharLMConfig
from unrolled.recurrent import Recurrent
from unrolled.training.averaging import WeightAverage


def test_locked_dropout_keeps_one_mask_over_time_and_scales_the_kept_units() -> None:
    torch.manual_seed(0)
    x = torch.ones(3, 50, 40)  # (B, T, F)
    y = locked_dropout(x, 0.25, True, time_dim=1)
    assert torch.equal(y, y[:, :1].expand_as(y))  # every step the same mask
    assert torch.equal(y.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert (y[:, 0] == 0).float().mean().item() == pytest.approx(0.25, abs=0.08)
    assert locked_dropout(x, 0.25, False, time_dim=1) is x
    assert locked_dropout(x, 0.0, True, time_dim=1) is x


def test_drop_connect_zeroes_entries_with_rate_p_and_scales_the_rest_with_their_gradient() -> None:
    torch.manual_seed(0)
    w = torch.randn(200, 50, requires_grad=True)
    dropped = drop_connect(w, 0.4, True)
    kept = dropped != 0
    assert (~kept).float().mean().item() == pytest.approx(0.4, abs=0.02)
    assert torch.allclose(dropped[kept], w.detach()[kept] / 0.6)
    dropped.sum().backward()
    assert w.grad is not None
    assert torch.allclose(w.grad, kept.float() / 0.6)
    assert drop_connect(w, 0.4, False) is w


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_weight_drop_equals_the_transparent_path_run_on_the_dropped_weights(mode: str) -> None:
    """The fused kernel given DropConnect-ed W_hh = `unroll` stepping through cells that hold those weights."""
    torch.manual_seed(1)
    layer = Recurrent(mode, 5, 7, 2, bidirectional=True, weight_drop=0.5).train()
    x = torch.randn(6, 3, 5)
    lengths = torch.tensor([6, 4, 2])
    torch.manual_seed(7)
    expected_weights = [drop_connect(cell.weight_hh, 0.5, True).detach() for cell in layer.cells]
    torch.manual_seed(7)
    out, state = layer(x, lengths=lengths)

    reference = Recurrent(mode, 5, 7, 2, bidirectional=True, fused=False)
    reference.load_state_dict(layer.state_dict())
    with torch.no_grad():
        for cell, weight in zip(reference.cells, expected_weights, strict=True):
            cell.weight_hh.copy_(weight)
    assert any(bool((w == 0).any()) for w in expected_weights)
    ref_out, ref_state = reference.eval()(x, lengths=lengths)
    assert torch.allclose(out, ref_out, atol=1e-6)
    for ours, theirs in zip(state if isinstance(state, tuple) else (state,),
                            ref_state if isinstance(ref_state, tuple) else (ref_state,), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-6)
    layer.eval()  # evaluation drops nothing: the fused layer equals the transparent one on the saved weights
    reference.load_state_dict(layer.state_dict())
    assert torch.allclose(layer(x, lengths=lengths)[0], reference(x, lengths=lengths)[0], atol=1e-6)


def test_locked_dropout_between_layers_equals_two_layers_with_one_mask_in_between() -> None:
    torch.manual_seed(2)
    layer = Recurrent("lstm", 4, 6, 2, dropout=0.5, variational=True).train()
    x = torch.randn(9, 3, 4)
    torch.manual_seed(11)
    out, (h, c) = layer(x)

    first, second = nn.LSTM(4, 6), nn.LSTM(6, 6)
    state = layer.state_dict()
    first.load_state_dict({f"{k[:-3]}_l0": v for k, v in state.items() if k.endswith("_l0")})
    second.load_state_dict({f"{k[:-3]}_l0": v for k, v in state.items() if k.endswith("_l1")})
    torch.manual_seed(11)
    mask = torch.empty(1, 3, 6).bernoulli_(0.5) / 0.5
    middle, (h0, c0) = first(x)
    expected, (h1, c1) = second(middle * mask)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(h, torch.cat([h0, h1]), atol=1e-6) and torch.allclose(c, torch.cat([c0, c1]), atol=1e-6)


def test_weight_drop_on_a_layer_without_a_fused_kernel_is_one_line() -> None:
    layer = Recurrent("lstm", 3, 4, peepholes=True, weight_drop=0.3).train()
    with pytest.raises(ValueError, match="weight drop runs on torch's fused kernels") as error:
        layer(torch.randn(2, 1, 3))
    assert "\n" not in str(error.value)
    layer.eval()(torch.randn(2, 1, 3))  # evaluation drops nothing, so any path serves


def test_activation_penalties_add_what_the_equations_say() -> None:
    torch.manual_seed(3)
    plain = CharLM(CharLMConfig(vocab_size=9, hidden=6, embedding=4, layers=1, dropout=0.0))
    penalised = CharLM(CharLMConfig(vocab_size=9, hidden=6, embedding=4, layers=1, dropout=0.0,
                                    activation_reg=2.0, temporal_reg=3.0))
    penalised.load_state_dict(plain.state_dict())
    inputs, targets = torch.randint(0, 9, (2, 5)), torch.randint(0, 9, (2, 5))
    loss, metrics = penalised.loss((inputs, targets))
    base, _ = plain.loss((inputs, targets))
    out, _ = plain.rnn(plain.embed(inputs))
    expected = base + 2.0 * out.pow(2).mean() + 3.0 * (out[:, 1:] - out[:, :-1]).pow(2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert metrics["nats"] == pytest.approx(base.item(), rel=1e-6)
    assert penalised.eval().loss((inputs, targets))[0].item() == pytest.approx(base.item(), rel=1e-6)


def test_a_charlm_saved_without_the_regularisers_loads_with_them_off() -> None:
    old = {"vocab_size": 9, "cell": "lstm", "layers": 1, "hidden": 6, "embedding": 4, "dropout": 0.1,
           "tie_weights": False, "cell_options": {}}
    config = CharLMConfig.from_dict(old)
    assert (config.weight_drop, config.variational, config.activation_reg) == (0.0, False, 0.0)


def test_the_average_follows_its_equation() -> None:
    weight = nn.Parameter(torch.tensor([0.0]))
    average = WeightAverage([weight], decay=0.5)
    expected = 0.0
    for n, value in enumerate([4.0, -2.0, 8.0, 1.0], start=1):
        with torch.no_grad():
            weight.fill_(value)
        average.update()
        d = min(0.5, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * value
        assert average.shadow[0].item() == pytest.approx(expected)
    with average.applied():
        assert weight.item() == pytest.approx(expected)
    assert weight.item() == 1.0


def _record_updates(monkeypatch: pytest.MonkeyPatch) -> list[list[torch.Tensor]]:
    seen: list[list[torch.Tensor]] = []

    def after_update(self: TinyLM) -> None:
        seen.append([p.detach().clone() for p in self.parameters()])

    monkeypatch.setattr(TinyLM, "after_update", after_update, raising=False)
    return seen


def test_an_averaging_run_saves_the_average_and_resumes_bit_for_bit(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _record_updates(monkeypatch)
    straight, model = train(tmp_path / "straight", settings(average=0.8))
    assert straight.steps == 12 and len(seen) == 12
    # The checkpoint's model is the average of the weights after each update, by the equation.
    torch.manual_seed(0)
    expected: list[Any] = [p.detach().clone() for p in TinyLM().parameters()]  # theta_0: make(seed=0)'s initialisation
    for n, weights in enumerate(seen, start=1):
        d = min(0.8, (1 + n) / (10 + n))
        expected = [d * a + (1 - d) * w for a, w in zip(expected, weights, strict=True)]
    saved = load_checkpoint(tmp_path / "straight" / "last", kind=APP["kind"])
    names = [name for name, _ in model.named_parameters()]
    for name, value in zip(names, expected, strict=True):
        assert torch.allclose(saved.model_state[name], value, atol=1e-6), name
    for name, raw in model.named_parameters():  # training went on with the raw weights
        assert not torch.allclose(saved.model_state[name], raw.detach()), name

    train(tmp_path / "split", settings(average=0.8, max_steps=6, decay_steps=12))
    _, resumed = train(tmp_path / "split", settings(average=0.8), resume=True, seed=5)
    assert losses(tmp_path / "split") == losses(tmp_path / "straight")
    assert_same_parameters(resumed, model)
    again = load_checkpoint(tmp_path / "split" / "last", kind=APP["kind"])
    for name in names:
        assert torch.equal(again.model_state[name], saved.model_state[name]), name


def test_a_run_resumed_without_averaging_goes_on_from_its_raw_weights(tmp_path: Path) -> None:
    train(tmp_path / "a", settings(average=0.8, max_steps=6, decay_steps=12))
    train(tmp_path / "b", settings(average=0.8, max_steps=6, decay_steps=12))
    _, without = train(tmp_path / "a", settings(max_steps=6, decay_steps=12, average=None), resume=True)
    _, reference = train(tmp_path / "b", settings(max_steps=6, decay_steps=12, average=0.8), resume=True)
    assert_same_parameters(without, reference)  # both hold the raw weights of step 6, not the average


def test_average_must_be_a_decay_below_one() -> None:
    with pytest.raises(ValueError, match="average must be a number in"):
        settings(average=1.0)


def test_penalties_and_weight_drop_train_a_charlm_without_error() -> None:
    torch.manual_seed(4)
    model = CharLM(CharLMConfig(vocab_size=9, hidden=8, embedding=4, layers=2, dropout=0.2, input_dropout=0.1,
                                variational=True, weight_drop=0.3, activation_reg=1.0, temporal_reg=1.0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = torch.randint(0, 9, (3, 6)), torch.randint(0, 9, (3, 6))
    first = None
    for _ in range(30):
        loss, _ = model.loss((inputs, targets))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    model.eval()
    assert F.cross_entropy(model(inputs)[0].reshape(-1, 9), targets.reshape(-1)).item() < first

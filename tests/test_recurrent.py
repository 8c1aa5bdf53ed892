"""The Recurrent layer: the transparent loop, the fused kernel and torch.nn agree, to the gradient."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from unrolled import Recurrent, reverse_padded

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
TORCH_LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
I, H = 5, 6  # noqa: E741 (input and hidden sizes, as in the docstrings)


def parts(state: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def torch_layer(mode: str, *, layers: int, bidirectional: bool, batch_first: bool, dtype: torch.dtype,
                nonlinearity: str = "tanh") -> nn.Module:
    options = {"nonlinearity": nonlinearity} if mode == "rnn" else {}
    layer = TORCH_LAYERS[mode](I, H, layers, batch_first=batch_first, bidirectional=bidirectional, **options)
    return layer.to(dtype)


def run_torch(layer: nn.Module, x: Tensor, state: object, lengths: Tensor | None, batch_first: bool):
    """torch.nn's answer: packed sequences when lengths are given, padded back with zeros."""
    if lengths is None:
        return layer(x, state)
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out, final = layer(packed, state)
    total = x.shape[1] if batch_first else x.shape[0]
    return pad_packed_sequence(out, batch_first=batch_first, total_length=total)[0], final


def grads(tensors: list[Tensor]) -> list[Tensor]:
    return [t.grad.clone() for t in tensors]  # type: ignore[union-attr]


def train_step(layer: nn.Module, x: Tensor, state: tuple[Tensor, ...], run) -> tuple[Tensor, tuple, list[Tensor]]:
    """Forward, a loss that touches every output and final state, backward; returns outputs and all grads."""
    for tensor in [x, *state, *layer.parameters()]:
        tensor.grad = None
    out, final = run(layer, x, state if len(state) == 2 else state[0])
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * weights).sum() + sum((f**2).sum() for f in parts(final))
    loss.backward()
    return out.detach(), tuple(f.detach() for f in parts(final)), grads([x, *state, *layer.parameters()])


CASES = [
    pytest.param(mode, layers, bidirectional, batch_first, padded, dtype, id=f"{mode}-L{layers}-"
                 f"{'bi' if bidirectional else 'uni'}-{'bf' if batch_first else 'tf'}-"
                 f"{'padded' if padded else 'full'}-{str(dtype)[6:]}")
    for mode, layers, bidirectional, batch_first, padded, dtype in itertools.product(
        ("lstm", "gru", "rnn"), (1, 2, 3), (False, True), (True,), (False, True), (torch.float64, torch.float32))
    if not (layers == 3 and dtype == torch.float32)
]


@pytest.mark.parametrize("defer", [True, False], ids=["deferred", "plain"])
@pytest.mark.parametrize(("mode", "layers", "bidirectional", "batch_first", "padded", "dtype"), CASES)
def test_transparent_fused_and_torch_agree_to_the_gradient(
    mode, layers, bidirectional, batch_first, padded, dtype, defer, monkeypatch
):
    monkeypatch.setattr("unrolled.recurrent.DEFER_MIN_MACS", 0 if defer else 10**18)
    torch.manual_seed(layers * 10 + bidirectional)
    batch, steps = 4, 7
    reference = torch_layer(mode, layers=layers, bidirectional=bidirectional, batch_first=batch_first, dtype=dtype)
    ours = Recurrent(mode, I, H, layers, bidirectional=bidirectional, batch_first=batch_first).to(dtype)
    ours.load_state_dict(reference.state_dict())
    shape = (batch, steps, I) if batch_first else (steps, batch, I)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    count = layers * (2 if bidirectional else 1)
    state = tuple(torch.randn(count, batch, H, dtype=dtype, requires_grad=True)
                  for _ in range(2 if mode == "lstm" else 1))
    lengths = torch.tensor([7, 3, 1, 5]) if padded else None

    expected = train_step(reference, x, state, lambda m, x, s: run_torch(m, x, s, lengths, batch_first))
    for fused in (True, False):
        ours.fused = fused
        got = train_step(ours, x, state, lambda m, x, s: m(x, s, lengths=lengths))
        for want, have in zip(
            [expected[0], *expected[1], *expected[2]], [got[0], *got[1], *got[2]], strict=True
        ):
            torch.testing.assert_close(have, want, atol=TOLERANCE[dtype], rtol=TOLERANCE[dtype])


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_nonlinearity_matches_torch(nonlinearity):
    torch.manual_seed(1)
    reference = torch_layer("rnn", layers=2, bidirectional=True, batch_first=False, dtype=torch.float64,
                            nonlinearity=nonlinearity)
    ours = Recurrent("rnn", I, H, 2, bidirectional=True, nonlinearity=nonlinearity).double()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(6, 3, I, dtype=torch.float64)
    want, want_h = reference(x)
    for fused in (True, False):
        ours.fused = fused
        out, h = ours(x)
        torch.testing.assert_close(out, want, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(h, want_h, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_state_dict_moves_both_ways_with_torch_names(mode, bidirectional):
    reference = torch_layer(mode, layers=2, bidirectional=bidirectional, batch_first=True, dtype=torch.float32)
    ours = Recurrent(mode, I, H, 2, bidirectional=bidirectional, batch_first=True)
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict())
    for name, tensor in reference.state_dict().items():
        assert torch.equal(getattr(ours, name), tensor)
    back = torch_layer(mode, layers=2, bidirectional=bidirectional, batch_first=True, dtype=torch.float32)
    back.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, I)
    torch.testing.assert_close(back(x)[0], ours(x)[0])


def test_loading_a_deeper_torch_layer_names_the_unexpected_keys():
    ours = Recurrent("lstm", I, H, 1)
    with pytest.raises(RuntimeError, match="weight_ih_l1"):
        ours.load_state_dict(nn.LSTM(I, H, 2).state_dict())


def test_layer_inside_a_model_keeps_prefixed_torch_names():
    model = nn.Sequential(nn.Linear(3, I), Recurrent("gru", I, H, bidirectional=True))
    keys = [k for k in model.state_dict() if k.startswith("1.")]
    assert keys[:2] == ["1.weight_ih_l0", "1.weight_hh_l0"] and "1.bias_hh_l0_reverse" in keys
    twin = nn.Sequential(nn.Linear(3, I), Recurrent("gru", I, H, bidirectional=True))
    twin.load_state_dict(model.state_dict())
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(twin(x)[0], model(x)[0])


@pytest.mark.parametrize(
    ("mode", "options", "fuses"),
    [("lstm", {}, True), ("gru", {}, True), ("rnn", {}, True), ("rnn", {"nonlinearity": "relu"}, True),
     ("gru", {"variant": "cho"}, False), ("lstm", {"peepholes": True}, False), ("lstm", {"coupled": True}, False),
     ("lstm", {"output_activation": False}, False), ("lstm", {"forget_bias": 0.0}, True)],
)
def test_fused_path_only_where_torch_computes_the_same_function(mode, options, fuses):
    assert (Recurrent(mode, I, H, **options).fused_mode is not None) == fuses
    assert Recurrent(mode, I, H, fused=False, **options).fused_mode is None


def stack_by_hand(layer: Recurrent, sequence: Tensor) -> Tensor:
    """An independent unroll of one unpadded sequence (T, I): call each cell step by step, in Python."""
    inputs = list(sequence.unbind(0))
    for index in range(layer.num_layers):
        outputs = []
        for reverse in range(layer.num_directions):
            cell = layer.cells[index * layer.num_directions + reverse]
            order = inputs[::-1] if reverse else inputs
            state, hs = None, []
            for x_t in order:
                h, state = cell(x_t.unsqueeze(0), state)
                hs.append(h[0])
            outputs.append(hs[::-1] if reverse else hs)
        inputs = [torch.cat(step) for step in zip(*outputs, strict=True)]
    return torch.stack(inputs)


@pytest.mark.parametrize("options", [{"mode": "gru", "variant": "cho"}, {"mode": "lstm", "peepholes": True},
                                     {"mode": "lstm", "coupled": True, "output_activation": False}])
def test_any_cell_stacks_and_reverses_like_a_hand_loop_with_padding_masked(options):
    torch.manual_seed(2)
    layer = Recurrent(input_size=I, hidden_size=H, num_layers=2, bidirectional=True, batch_first=True,
                      **options).double()
    lengths = torch.tensor([5, 2, 4])
    x = torch.randn(3, 5, I, dtype=torch.float64)
    out, _ = layer(x, lengths=lengths)
    for b, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[b, :length], stack_by_hand(layer, x[b, :length]), atol=1e-12, rtol=0)
        assert torch.all(out[b, length:] == 0)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("fused", [True, False])
def test_padding_changes_nothing(mode, fused):
    torch.manual_seed(3)
    layer = Recurrent(mode, I, H, 2, bidirectional=True, batch_first=True, fused=fused).double()
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(3, 6, I, dtype=torch.float64)
    noisy = x.clone()
    for b, length in enumerate(lengths.tolist()):
        noisy[b, length:] = 1e3 * torch.randn(6 - length, I, dtype=torch.float64)
    out, state = layer(x, lengths=lengths)
    out2, state2 = layer(noisy, lengths=lengths)
    torch.testing.assert_close(out2, out, atol=0, rtol=0)
    for a, b in zip(parts(state), parts(state2), strict=True):
        torch.testing.assert_close(b, a, atol=0, rtol=0)
    for b, length in enumerate(lengths.tolist()):  # each sequence alone, unpadded
        alone, alone_state = layer(x[b : b + 1, :length])
        torch.testing.assert_close(out[b : b + 1, :length], alone, atol=1e-12, rtol=0)
        for a, s in zip(parts(state), parts(alone_state), strict=True):
            torch.testing.assert_close(a[:, b : b + 1], s, atol=1e-12, rtol=0)


def test_trace_is_consistent_with_outputs_and_state():
    torch.manual_seed(4)
    layer = Recurrent("lstm", I, H, 2, bidirectional=True, batch_first=True).double()
    lengths = torch.tensor([5, 3])
    x = torch.randn(2, 5, I, dtype=torch.float64)
    out, (_, c_n), trace = layer(x, lengths=lengths, trace=True)
    torch.testing.assert_close(out, layer(x, lengths=lengths)[0], atol=1e-12, rtol=0)  # fused == traced
    assert set(trace) == {"l0", "l0_reverse", "l1", "l1_reverse"}
    assert set(trace["l1"]) == {"i", "f", "g", "o", "c", "h"}
    torch.testing.assert_close(torch.cat([trace["l1"]["h"], trace["l1_reverse"]["h"]], -1), out)
    for b, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(trace["l1"]["c"][b, length - 1], c_n[2, b])  # forward ends at the true end
        torch.testing.assert_close(trace["l1_reverse"]["c"][b, 0], c_n[3, b])  # backward ends at step 0
        assert torch.all(trace["l0"]["f"][b, length:] == 0)
    for name in ("i", "f", "o"):
        assert torch.all((trace["l0"][name] >= 0) & (trace["l0"][name] <= 1))


def test_gru_trace_names_and_update_rule():
    layer = Recurrent("gru", I, H, batch_first=True).double()
    x = torch.randn(2, 4, I, dtype=torch.float64)
    _, _, trace = layer(x, trace=True)
    gates = trace["l0"]
    assert set(gates) == {"r", "z", "n", "h"}
    h_prev = torch.cat([torch.zeros_like(gates["h"][:, :1]), gates["h"][:, :-1]], 1)
    torch.testing.assert_close(gates["h"], (1 - gates["z"]) * gates["n"] + gates["z"] * h_prev)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(0, 3))
def test_reverse_padded_is_an_involution_that_reverses_each_sequence(lengths, extra):
    steps = max(lengths) + extra
    x = torch.arange(steps * len(lengths), dtype=torch.float64).view(steps, len(lengths), 1)
    lengths_t = torch.tensor(lengths)
    once = reverse_padded(x, lengths_t)
    assert torch.equal(reverse_padded(once, lengths_t), x)
    for b, length in enumerate(lengths):
        assert torch.equal(once[:length, b], x[:length, b].flip(0))
        assert torch.equal(once[length:, b], x[length:, b])


def test_dropout_acts_between_layers_only_while_training():
    torch.manual_seed(5)
    layer = Recurrent("lstm", I, H, 2, dropout=0.5, fused=False)
    x = torch.randn(4, 3, I)
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0])
    layer.train()
    assert not torch.allclose(layer(x)[0], layer(x)[0])
    single = Recurrent("lstm", I, H, 1, dropout=0.5).train()
    torch.testing.assert_close(single(x)[0], single(x)[0])


@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_input_equals_a_batch_of_one(batch_first):
    layer = Recurrent("gru", I, H, 2, batch_first=batch_first)
    x = torch.randn(5, I)
    out, h = layer(x)
    batched, h1 = layer(x.unsqueeze(0 if batch_first else 1))
    torch.testing.assert_close(out, batched.squeeze(0 if batch_first else 1))
    torch.testing.assert_close(h, h1.squeeze(1))
    assert out.shape == (5, H) and h.shape == (2, H)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_bfloat16_runs_on_both_paths_close_to_float32(mode):
    torch.manual_seed(6)
    layer = Recurrent(mode, I, H, 2, batch_first=True)
    x = torch.randn(3, 6, I)
    want = layer(x)[0]
    low = Recurrent(mode, I, H, 2, batch_first=True).to(torch.bfloat16)
    low.load_state_dict(layer.state_dict())
    for fused in (True, False):
        low.fused = fused
        out = low(x.to(torch.bfloat16))[0]
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), want, atol=0.03, rtol=0)  # bfloat16 keeps 8 bits of mantissa


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m(torch.randn(2, 3, I + 1)), r"\(B, T, 5\)"),
        (lambda m: m(torch.randn(2, 3, 4, I)), r"\(B, T, 5\)"),
        (lambda m: m(torch.randn(2, 3, I).double()), "float64"),
        (lambda m: m(torch.randn(2, 3, I), (torch.zeros(2, 2, H), torch.zeros(2, 2, H))), r"\(2, 2, 6\)|\(1, 2, 6\)"),
        (lambda m: m(torch.randn(2, 3, I), torch.zeros(1, 2, H)), r"\(h, c\)"),
        (lambda m: m(torch.randn(2, 3, I), lengths=[3]), r"\(2,\)"),
        (lambda m: m(torch.randn(2, 3, I), lengths=[3, 4]), "1..3"),
        (lambda m: m(torch.randn(2, 3, I), lengths=[0, 2]), "1..3"),
        (lambda m: m(torch.randn(2, 3, I), lengths=torch.tensor([1.0, 2.0])), "integers"),
    ],
)
def test_bad_input_raises_value_error_naming_the_expected_shape(call, message):
    layer = Recurrent("lstm", I, H, batch_first=True)
    with pytest.raises(ValueError, match=message):
        call(layer)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"mode": "transformer"}, "mode must be one of"), ({"mode": "gru", "variant": "x"}, "variant"),
     ({"mode": "lstm", "num_layers": 0}, "num_layers"), ({"mode": "lstm", "dropout": 1.0}, "dropout"),
     ({"mode": "rnn", "peepholes": True}, "bad option")],
)
def test_bad_configuration_raises_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Recurrent(input_size=I, hidden_size=H, **kwargs)


@pytest.mark.parametrize("mode", ["lstm", "gru", "rnn"])
def test_without_bias_both_paths_match_torch(mode):
    torch.manual_seed(7)
    reference = TORCH_LAYERS[mode](I, H, 2, bias=False, bidirectional=True).double()
    ours = Recurrent(mode, I, H, 2, bias=False, bidirectional=True).double()
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(5, 2, I, dtype=torch.float64)
    want = reference(x)[0]
    for fused in (True, False):
        ours.fused = fused
        torch.testing.assert_close(ours(x)[0], want, atol=1e-10, rtol=1e-10)

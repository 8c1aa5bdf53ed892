"""The cells against the lecture's equations (a NumPy oracle), against torch.nn, and under gradcheck."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from unrolled.cells import GRUCell, LSTMCell, RNNCell, make_cell

try:
    import reference as ref
except ImportError:  # tests/ imported as a package
    from tests import reference as ref

B, IN, H, T = 3, 4, 5, 5  # batch, input features, hidden units, steps
ORACLE_ATOL = 1e-10

LSTM_OPTION_GRID: list[dict[str, Any]] = [
    {},
    {"forget_bias": 0.0},
    {"forget_bias": 2.5},
    {"forget_bias": None},
    {"peepholes": True},
    {"coupled": True},
    {"input_gate": False},
    {"forget_gate": False},
    {"output_gate": False},
    {"input_activation": False},
    {"output_activation": False},
    {"peepholes": True, "coupled": True},
    {"peepholes": True, "input_gate": False, "output_gate": False},
    {"peepholes": True, "forget_gate": False, "output_activation": False},
    {"coupled": True, "input_activation": False, "output_activation": False},
    {"input_gate": False, "forget_gate": False, "output_gate": False},
]
LSTM_ONLY_INIT = ("forget_bias",)  # options that change the initial parameters, not the function


def option_id(options: dict[str, Any]) -> str:
    return ",".join(f"{key}={value}" for key, value in options.items()) or "plain"


def lstm_oracle_options(options: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if key not in LSTM_ONLY_INIT}


def randomize(module: nn.Module, seed: int, scale: float = 1.0, biases: bool = True) -> None:
    """Redraw every parameter ~ U(-scale, scale), so that gates spread over (0, 1) instead of sitting at 0.5."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if not biases and name.startswith("bias"):
                continue
            values = torch.rand(parameter.shape, generator=generator, dtype=torch.float64) * 2 - 1
            parameter.copy_(values * scale)


def random_inputs(seed: int, dtype: torch.dtype = torch.float64, steps: int = T) -> tuple[torch.Tensor, ...]:
    """xs (T, B, IN), h0 (B, H) and c0 (B, H), each ~ N(0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    xs = torch.randn(steps, B, IN, generator=generator, dtype=torch.float64).to(dtype)
    h0 = torch.randn(B, H, generator=generator, dtype=torch.float64).to(dtype)
    c0 = torch.randn(B, H, generator=generator, dtype=torch.float64).to(dtype)
    return xs, h0, c0


def assert_matches(actual: torch.Tensor, expected: np.ndarray, what: str, atol: float = ORACLE_ATOL) -> None:
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=0, atol=atol, err_msg=what)


def assert_spread(gate: torch.Tensor, what: str) -> None:
    """A sigmoid gate that takes low and high values, so the test is not blind to what it gates."""
    assert gate.min().item() < 0.3 and gate.max().item() > 0.7, f"{what} is saturated near one value"


# ---------------------------------------------------------------------------------------------
# The NumPy oracle itself.
# ---------------------------------------------------------------------------------------------


def test_oracle_rnn_is_the_lectures_class() -> None:
    rng = np.random.default_rng(0)
    W, bias = rng.standard_normal((3, 3 + 4)), rng.standard_normal(3)
    rnn = ref.RNN(W, bias)
    h = np.zeros(3)
    for _ in range(5):
        x_t = rng.standard_normal(4)
        h = np.tanh(W[:, :3] @ h + W[:, 3:] @ x_t + bias)
        np.testing.assert_allclose(rnn.step(x_t), h, rtol=0, atol=1e-14)


def test_oracle_batch_is_row_by_row() -> None:
    rng = np.random.default_rng(1)
    params = {
        "W_z": rng.standard_normal((H, H + IN)),
        "b_z": rng.standard_normal(H),
        "W_r": rng.standard_normal((H, H + IN)),
        "b_r": rng.standard_normal(H),
        "W": rng.standard_normal((H, H + IN)),
        "b": rng.standard_normal(H),
    }
    h0, xs = rng.standard_normal((B, H)), rng.standard_normal((T, B, IN))
    batched = ref.GRU(params, h0)
    rows = [ref.GRU(params, h0[b]) for b in range(B)]
    for x_t in xs:
        gates = batched.step(x_t)
        for b, row in enumerate(rows):
            np.testing.assert_array_equal(gates["h"][b], row.step(x_t[b])["h"])


def test_oracle_rejects_inconsistent_lstm() -> None:
    with pytest.raises(ValueError, match="coupled"):
        ref.LSTM({}, coupled=True, forget_gate=False)
    with pytest.raises(ValueError, match="parameters"):
        ref.LSTM({"W_C": np.zeros((H, H + IN)), "b_C": np.zeros(H)})


# ---------------------------------------------------------------------------------------------
# Every cell and option against the oracle, step by step, including the traced gates.
# ---------------------------------------------------------------------------------------------


def run_both(cell: nn.Module, xs: torch.Tensor, state: Any, check: Callable[[int, torch.Tensor, Any, dict], None]):
    """Run `cell(x_t, state)` and `cell.trace(x_t, state)` side by side; they must agree exactly."""
    plain_state, traced_state = state, state
    for t, x_t in enumerate(xs):
        h, plain_state = cell(x_t, plain_state)
        h_traced, traced_state, gates = cell.trace(x_t, traced_state)
        torch.testing.assert_close(h, h_traced, rtol=0, atol=0)
        assert set(gates) == set(cell.trace_names)
        for name, gate in gates.items():
            assert gate.shape == (B, H), name
        check(t, h, plain_state, gates)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_matches_oracle(nonlinearity: str, bias: bool) -> None:
    cell = RNNCell(IN, H, bias, nonlinearity=nonlinearity, dtype=torch.float64)
    randomize(cell, seed=10)
    xs, h0, _ = random_inputs(seed=11)
    oracle = ref.rnn_from_cell(cell, nonlinearity, h0.numpy())

    def check(t: int, h: torch.Tensor, state: Any, gates: dict) -> None:
        expected = oracle.step(xs[t].numpy())
        assert_matches(h, expected, f"h at step {t}")
        assert_matches(state, expected, f"state at step {t}")
        assert_matches(gates["h"], expected, f"traced h at step {t}")

    run_both(cell, xs, h0, check)
    if nonlinearity == "relu":
        assert (oracle.h == 0).any() and (oracle.h > 0).any()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("options", LSTM_OPTION_GRID, ids=option_id)
def test_lstm_matches_oracle(options: dict[str, Any], bias: bool) -> None:
    cell = LSTMCell(IN, H, bias, dtype=torch.float64, **options)
    # Keep the initial biases where forget_bias is the point, so the oracle sees that forget bias.
    randomize(cell, seed=20, scale=1.0, biases="forget_bias" not in options)
    xs, h0, c0 = random_inputs(seed=21)
    oracle = ref.lstm_from_cell(cell, h0.numpy(), c0.numpy(), **lstm_oracle_options(options))

    def check(t: int, h: torch.Tensor, state: Any, gates: dict) -> None:
        expected = oracle.step(xs[t].numpy())
        assert_matches(h, expected["h"], f"h at step {t}")
        assert isinstance(state, tuple) and len(state) == 2
        assert_matches(state[0], expected["h"], f"state h at step {t}")
        assert_matches(state[1], expected["c"], f"state c at step {t}")
        for name in ("i", "f", "g", "o", "c", "h"):
            assert_matches(gates[name], expected[name], f"traced {name} at step {t}")
        for name, kept in (("i", "input_gate"), ("f", "forget_gate"), ("o", "output_gate")):
            if options.get(kept, True) and t == 0:
                assert_spread(gates[name], name)

    run_both(cell, xs, (h0, c0), check)


GRU_ORACLES = {
    # variant: (the independent NumPy oracle built from the cell, the oracle's z in unrolled's terms, seed)
    "cudnn": (ref.gru_cudnn_from_cell, lambda z: z, 30),
    # Cho's GRU is the lecture's, with the lecture's z = 1 - unrolled's z (W_z and b_z negated)
    "cho": (ref.gru_from_cell, lambda z: 1.0 - z, 40),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("variant", sorted(GRU_ORACLES))
def test_gru_matches_its_oracle(variant: str, bias: bool) -> None:
    """Each GRU variant against its NumPy oracle (cho: the lecture's equations): the output, the state and every
    traced gate (n is the lecture's h~), at every step."""
    oracle_of, as_ours, seed = GRU_ORACLES[variant]
    cell = GRUCell(IN, H, bias, variant=variant, dtype=torch.float64)
    randomize(cell, seed=seed)
    xs, h0, _ = random_inputs(seed=seed + 1)
    oracle = oracle_of(cell, h0.numpy())

    def check(t: int, h: torch.Tensor, state: Any, gates: dict) -> None:
        expected = oracle.step(xs[t].numpy())
        assert_matches(h, expected["h"], f"h at step {t}")
        assert_matches(state, expected["h"], f"state at step {t}")
        assert_matches(gates["z"], as_ours(expected["z"]), f"traced z at step {t}")
        for name in ("r", "n", "h"):
            assert_matches(gates[name], expected[name], f"traced {name} at step {t}")
        if t == 0:
            assert_spread(gates["r"], "r")
            assert_spread(gates["z"], "z")

    run_both(cell, xs, h0, check)


def test_gru_variants_differ_unless_reset_is_open() -> None:
    cudnn = GRUCell(IN, H, variant="cudnn", dtype=torch.float64)
    randomize(cudnn, seed=50)
    cho = GRUCell(IN, H, variant="cho", dtype=torch.float64)
    cho.load_state_dict(cudnn.state_dict())
    xs, h0, _ = random_inputs(seed=51)
    assert (cudnn(xs[0], h0)[0] - cho(xs[0], h0)[0]).abs().max() > 1e-3
    with torch.no_grad():  # r = σ(50) = 1 exactly in float64: the two forms are one function
        for cell in (cudnn, cho):
            cell.weight_ih[:H].zero_()
            cell.weight_hh[:H].zero_()
            cell.bias_ih[:H].fill_(50.0)
    torch.testing.assert_close(cudnn(xs[0], h0)[0], cho(xs[0], h0)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "cell",
    [
        RNNCell(IN, H, dtype=torch.float64),
        RNNCell(IN, H, nonlinearity="relu", dtype=torch.float64),
        LSTMCell(IN, H, dtype=torch.float64),
        LSTMCell(IN, H, peepholes=True, coupled=True, dtype=torch.float64),
        GRUCell(IN, H, dtype=torch.float64),
        GRUCell(IN, H, variant="cho", dtype=torch.float64),
    ],
    ids=["rnn-tanh", "rnn-relu", "lstm", "lstm-cifg-peep", "gru-cudnn", "gru-cho"],
)
def test_missing_state_is_zero(cell: nn.Module) -> None:
    randomize(cell, seed=60)
    xs, _, _ = random_inputs(seed=61)
    zero = torch.zeros(B, H, dtype=torch.float64)
    state = (zero, zero) if isinstance(cell, LSTMCell) else zero
    h_none, state_none = cell(xs[0])
    h_zero, state_zero = cell(xs[0], state)
    torch.testing.assert_close(h_none, h_zero, rtol=0, atol=0)
    torch.testing.assert_close(state_none, state_zero, rtol=0, atol=0)
    torch.testing.assert_close(cell.trace(xs[0])[2], cell.trace(xs[0], state)[2], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# The plain cells are torch's: same state dict, same function.
# ---------------------------------------------------------------------------------------------

TORCH_PAIRS: dict[str, tuple[Callable[..., nn.Module], Callable[..., nn.Module]]] = {
    "rnn-tanh": (lambda *a, **k: RNNCell(*a, **k), lambda *a, **k: nn.RNNCell(*a, **k)),
    "rnn-relu": (
        lambda *a, **k: RNNCell(*a, nonlinearity="relu", **k),
        lambda *a, **k: nn.RNNCell(*a, nonlinearity="relu", **k),
    ),
    "lstm": (lambda *a, **k: LSTMCell(*a, **k), lambda *a, **k: nn.LSTMCell(*a, **k)),
    "gru": (lambda *a, **k: GRUCell(*a, **k), lambda *a, **k: nn.GRUCell(*a, **k)),
}


@pytest.mark.parametrize("direction", ["unrolled->torch", "torch->unrolled"])
@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(TORCH_PAIRS))
def test_plain_cells_equal_torch(kind: str, bias: bool, dtype: torch.dtype, atol: float, direction: str) -> None:
    make_ours, make_theirs = TORCH_PAIRS[kind]
    ours, theirs = make_ours(IN, H, bias, dtype=dtype), make_theirs(IN, H, bias, dtype=dtype)
    if direction == "unrolled->torch":
        randomize(ours, seed=70)
        theirs.load_state_dict(ours.state_dict())  # strict: same names and shapes
    else:
        randomize(theirs, seed=70)
        ours.load_state_dict(theirs.state_dict())
    for name, parameter in ours.state_dict().items():
        torch.testing.assert_close(parameter, theirs.state_dict()[name], rtol=0, atol=0)
    xs, h0, c0 = random_inputs(seed=71, dtype=dtype)
    our_state: Any = (h0, c0) if kind == "lstm" else h0
    their_state: Any = our_state
    for x_t in xs:
        h, our_state = ours(x_t, our_state)
        their_state = theirs(x_t, their_state)
        expected_h = their_state[0] if kind == "lstm" else their_state
        torch.testing.assert_close(h, expected_h, rtol=0, atol=atol)
        if kind == "lstm":
            torch.testing.assert_close(our_state[1], their_state[1], rtol=0, atol=atol)
        assert h.dtype == dtype


# ---------------------------------------------------------------------------------------------
# Initialisation and parameter layout.
# ---------------------------------------------------------------------------------------------


def forget_blocks(cell: LSTMCell) -> tuple[torch.Tensor, torch.Tensor]:
    k = cell.gates.index("f")
    return cell.bias_ih[k * H : (k + 1) * H], cell.bias_hh[k * H : (k + 1) * H]


@pytest.mark.parametrize("extra", [{}, {"input_gate": False}, {"peepholes": True, "output_gate": False}], ids=option_id)
@pytest.mark.parametrize("forget_bias", [1.0, 0.0, 2.5, -1.0])
def test_forget_bias_is_exact(forget_bias: float, extra: dict[str, Any]) -> None:
    torch.manual_seed(80)
    cell = LSTMCell(IN, H, forget_bias=forget_bias, dtype=torch.float64, **extra)
    forget_ih, forget_hh = forget_blocks(cell)
    assert (forget_ih == forget_bias).all()
    assert (forget_hh == 0).all()
    bound = 1 / H**0.5
    for k, name in enumerate(cell.gates):  # the other blocks keep torch's U(-1/sqrt(H), 1/sqrt(H))
        if name != "f":
            for bias in (cell.bias_ih, cell.bias_hh):
                block = bias[k * H : (k + 1) * H]
                assert block.abs().max() <= bound and block.unique().numel() == H
    # Functionally: with zero weights, f = σ(forget_bias) everywhere.
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hh.zero_()
        if cell.weight_cf is not None:
            cell.weight_cf.zero_()
    xs, h0, c0 = random_inputs(seed=81)
    f = cell.trace(xs[0], (h0, c0))[2]["f"]
    torch.testing.assert_close(f, torch.full_like(f, 1 / (1 + np.exp(-forget_bias))), rtol=0, atol=1e-15)
    # reset_parameters() sets it again.
    with torch.no_grad():
        cell.bias_ih.zero_()
    cell.reset_parameters()
    assert (forget_blocks(cell)[0] == forget_bias).all() and (forget_blocks(cell)[1] == 0).all()


def test_forget_bias_default_is_one() -> None:
    forget_ih, forget_hh = forget_blocks(LSTMCell(IN, H))
    assert (forget_ih == 1.0).all() and (forget_hh == 0).all()


def test_forget_bias_none_keeps_torch_init() -> None:
    torch.manual_seed(82)
    cell = LSTMCell(IN, H, forget_bias=None, dtype=torch.float64)
    bound = 1 / H**0.5
    for block in forget_blocks(cell):
        assert block.abs().max() <= bound
        assert block.unique().numel() == H  # drawn, not filled
    for parameter in cell.parameters():
        assert parameter.abs().max() <= bound


@pytest.mark.parametrize("options", [{"coupled": True}, {"forget_gate": False}, {}], ids=option_id)
def test_forget_bias_without_bias_or_forget_gate(options: dict[str, Any]) -> None:
    cell = LSTMCell(IN, H, bias=False, forget_bias=3.0, **options)
    assert cell.bias_ih is None and cell.bias_hh is None
    if "f" not in cell.gates:  # no forget block to fill: the biases are all torch's uniform ones
        with_bias = LSTMCell(IN, H, forget_bias=3.0, **options)
        assert with_bias.bias_ih.abs().max() <= 1 / H**0.5


LAYOUTS = [
    ({}, "ifgo"),
    ({"input_gate": False}, "fgo"),
    ({"forget_gate": False}, "igo"),
    ({"output_gate": False}, "ifg"),
    ({"coupled": True}, "igo"),
    ({"input_gate": False, "output_gate": False}, "fg"),
    ({"input_gate": False, "forget_gate": False, "output_gate": False}, "g"),
    ({"input_activation": False, "output_activation": False}, "ifgo"),
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("peepholes", [False, True])
@pytest.mark.parametrize("options,gates", LAYOUTS, ids=[option_id(o) for o, _ in LAYOUTS])
def test_lstm_layout(options: dict[str, Any], gates: str, peepholes: bool, bias: bool) -> None:
    cell = LSTMCell(IN, H, bias, peepholes=peepholes, **options)
    assert cell.gates == tuple(gates)
    rows = len(gates) * H
    expected = {"weight_ih": (rows, IN), "weight_hh": (rows, H)}
    if bias:
        expected |= {"bias_ih": (rows,), "bias_hh": (rows,)}
    if peepholes:
        for name, gate in (("weight_ci", "i"), ("weight_cf", "f"), ("weight_co", "o")):
            if gate in gates:
                expected[name] = (H,)
    assert {name: tuple(p.shape) for name, p in cell.named_parameters()} == expected
    for name in ("weight_ci", "weight_cf", "weight_co"):
        if name not in expected:
            assert getattr(cell, name) is None


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "cell_class,options,blocks",
    [(RNNCell, {}, 1), (RNNCell, {"nonlinearity": "relu"}, 1), (GRUCell, {}, 3), (GRUCell, {"variant": "cho"}, 3)],
    ids=["rnn-tanh", "rnn-relu", "gru-cudnn", "gru-cho"],
)
def test_rnn_gru_layout(cell_class: type, options: dict[str, Any], blocks: int, bias: bool) -> None:
    cell = cell_class(IN, H, bias, **options)
    expected = {"weight_ih": (blocks * H, IN), "weight_hh": (blocks * H, H)}
    if bias:
        expected |= {"bias_ih": (blocks * H,), "bias_hh": (blocks * H,)}
    assert {name: tuple(p.shape) for name, p in cell.named_parameters()} == expected
    bound = 1 / H**0.5
    assert all(p.abs().max() <= bound for p in cell.parameters())


# ---------------------------------------------------------------------------------------------
# Gradients: every cell and option, with respect to input, state and parameters.
# ---------------------------------------------------------------------------------------------

GRAD_B, GRAD_I, GRAD_H = 2, 3, 4

GRAD_CELLS: list[tuple[str, Callable[[bool], nn.Module]]] = [
    ("rnn-tanh", lambda bias: RNNCell(GRAD_I, GRAD_H, bias, dtype=torch.float64)),
    ("rnn-relu", lambda bias: RNNCell(GRAD_I, GRAD_H, bias, nonlinearity="relu", dtype=torch.float64)),
    ("gru-cudnn", lambda bias: GRUCell(GRAD_I, GRAD_H, bias, variant="cudnn", dtype=torch.float64)),
    ("gru-cho", lambda bias: GRUCell(GRAD_I, GRAD_H, bias, variant="cho", dtype=torch.float64)),
] + [
    (
        f"lstm-{option_id(options)}",
        lambda bias, options=options: LSTMCell(GRAD_I, GRAD_H, bias, dtype=torch.float64, **options),
    )
    for options in LSTM_OPTION_GRID
    if "forget_bias" not in options
]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("make", [make for _, make in GRAD_CELLS], ids=[name for name, _ in GRAD_CELLS])
def test_gradcheck(make: Callable[[bool], nn.Module], bias: bool) -> None:
    cell = make(bias)
    randomize(cell, seed=90)
    names = [name for name, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in cell.named_parameters()]
    generator = torch.Generator().manual_seed(91)
    xs = torch.randn(2, GRAD_B, GRAD_I, generator=generator, dtype=torch.float64, requires_grad=True)
    lstm = isinstance(cell, LSTMCell)
    state = [
        torch.randn(GRAD_B, GRAD_H, generator=generator, dtype=torch.float64, requires_grad=True)
        for _ in range(2 if lstm else 1)
    ]

    def two_steps(xs: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Two steps, so the gradient also flows through the recurrence; returns h and the state."""
        carried: Any = tuple(rest[:2]) if lstm else rest[0]
        weights = dict(zip(names, rest[len(state) :], strict=True))
        for x_t in xs:
            h, carried = functional_call(cell, weights, (x_t, carried))
        return (h, *carried) if lstm else (h,)

    assert torch.autograd.gradcheck(two_steps, (xs, *state, *params), eps=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Errors.
# ---------------------------------------------------------------------------------------------

ERROR_CELLS = [
    ("rnn", lambda: RNNCell(IN, H)),
    ("lstm", lambda: LSTMCell(IN, H)),
    ("lstm-nig-peep", lambda: LSTMCell(IN, H, input_gate=False, peepholes=True)),
    ("gru-cudnn", lambda: GRUCell(IN, H)),
    ("gru-cho", lambda: GRUCell(IN, H, variant="cho")),
]
ERROR_IDS = [name for name, _ in ERROR_CELLS]
ERROR_MAKERS = [make for _, make in ERROR_CELLS]


def good_state(cell: nn.Module, batch: int = B) -> Any:
    h = torch.zeros(batch, H)
    return (h, h.clone()) if isinstance(cell, LSTMCell) else h


@pytest.mark.parametrize("make", ERROR_MAKERS, ids=ERROR_IDS)
def test_wrong_input_width(make: Callable[[], nn.Module]) -> None:
    cell = make()
    x = torch.zeros(B, IN + 1)
    for call in (lambda: cell(x), lambda: cell(x, good_state(cell)), lambda: cell.trace(x, good_state(cell))):
        with pytest.raises(ValueError, match=rf"{IN}\)") as error:
            call()
        assert f"({B}, {IN + 1})" in str(error.value)  # and says what it got


@pytest.mark.parametrize("make", ERROR_MAKERS, ids=ERROR_IDS)
@pytest.mark.parametrize("shape", [(IN,), (2, B, IN)], ids=["1d", "3d"])
def test_input_must_be_a_batch(make: Callable[[], nn.Module], shape: tuple[int, ...]) -> None:
    cell = make()
    with pytest.raises(ValueError, match=re.escape(f"(B, {IN})")):
        cell(torch.zeros(shape))


@pytest.mark.parametrize("make", ERROR_MAKERS, ids=ERROR_IDS)
def test_trace_input_must_be_a_batch(make: Callable[[], nn.Module]) -> None:
    cell = make()
    with pytest.raises(ValueError, match=re.escape(f"(B, {IN})")):
        cell.trace(torch.zeros(IN))


@pytest.mark.parametrize("trace", [False, True], ids=["forward", "trace"])
@pytest.mark.parametrize("make", ERROR_MAKERS, ids=ERROR_IDS)
@pytest.mark.parametrize("bad", [(B, H + 1), (B + 1, H), (H,)], ids=["width", "batch", "1d"])
def test_wrong_state_shape(make: Callable[[], nn.Module], bad: tuple[int, ...], trace: bool) -> None:
    cell = make()
    x = torch.zeros(B, IN)
    wrong = torch.zeros(bad)
    states: list[Any]
    if isinstance(cell, LSTMCell):
        right = torch.zeros(B, H)
        states = [(wrong, right), (right, wrong)]
    else:
        states = [wrong]
    for state in states:
        with pytest.raises(ValueError, match=re.escape(f"({B}, {H})")) as error:
            (cell.trace if trace else cell)(x, state)
        assert str(tuple(bad)) in str(error.value)


@pytest.mark.parametrize("trace", [False, True], ids=["forward", "trace"])
@pytest.mark.parametrize("make", ERROR_MAKERS, ids=ERROR_IDS)
def test_wrong_state_structure(make: Callable[[], nn.Module], trace: bool) -> None:
    cell = make()
    x, h = torch.zeros(B, IN), torch.zeros(B, H)
    call = cell.trace if trace else cell
    if isinstance(cell, LSTMCell):
        for state in (h, (h,), (h, h, h)):
            with pytest.raises(ValueError, match=re.escape("(h, c)")) as error:
                call(x, state)
            assert f"({B}, {H})" in str(error.value)
    else:
        for state in ((h, h), (h,) * 3):
            with pytest.raises(ValueError, match=re.escape(f"({B}, {H})")):
                call(x, state)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: RNNCell(IN, H, nonlinearity="sigmoid"), "sigmoid"),
        (lambda: GRUCell(IN, H, variant="x"), "'x'"),
        (lambda: LSTMCell(IN, H, coupled=True, forget_gate=False), "coupled"),
        (lambda: LSTMCell(IN, H, coupled=True, input_gate=False), "coupled"),
        (lambda: RNNCell(0, H), "positive"),
        (lambda: LSTMCell(IN, 0), "positive"),
        (lambda: make_cell("transformer", IN, H), "transformer"),
        (lambda: make_cell("lstm", IN, H, variant="cho"), "lstm"),
        (lambda: make_cell("gru", IN, H, peepholes=True), "gru"),
    ],
    ids=[
        "rnn-sigmoid",
        "gru-variant",
        "cifg-nfg",
        "cifg-nig",
        "rnn-zero-input",
        "lstm-zero-hidden",
        "make-mode",
        "make-lstm-option",
        "make-gru-option",
    ],
)
def test_bad_options(build: Callable[[], nn.Module], match: str) -> None:
    with pytest.raises(ValueError, match=re.escape(match)):
        build()


def test_make_cell_builds_each_mode() -> None:
    assert isinstance(make_cell("rnn", IN, H, nonlinearity="relu"), RNNCell)
    lstm = make_cell("lstm", IN, H, peepholes=True, forget_bias=None)
    assert isinstance(lstm, LSTMCell) and lstm.weight_ci is not None
    gru = make_cell("gru", IN, H, False, variant="cho")
    assert isinstance(gru, GRUCell) and gru.bias_ih is None

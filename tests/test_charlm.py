"""The character LM: its loss, the carried state, stepping for generation, evaluation (`unrolled.apps.lm`)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unrolled.apps.lm import LanguageModel
from unrolled.data import Vocabulary
from unrolled.data.text import TextStreams
from unrolled.models import CharLM, CharLMConfig
from unrolled.models.charlm import StreamWindow

TEXT = "the quick brown fox jumps over the lazy dog.\nTHE QUICK BROWN FOX!\n" * 8

SHAPES = [
    {"cell": "lstm"},
    {"cell": "gru"},
    {"cell": "rnn"},
    {"cell": "lstm", "cell_options": {"peepholes": True}},
    {"cell": "gru", "cell_options": {"variant": "cho"}},
    {"cell": "lstm", "embedding": 0},
]


VOCABULARY = Vocabulary.from_text(TEXT)


def make(shape: dict | None = None, *, seed: int = 0, **overrides: object) -> CharLM:
    torch.manual_seed(seed)
    values = {"vocab_size": len(VOCABULARY), "layers": 2, "hidden": 16, "embedding": 8, "dropout": 0.0,
              **(shape or {}), **overrides}
    return CharLM(CharLMConfig(**values)).double()


def trained(model: CharLM) -> LanguageModel:
    """The predictor around `model`, leaving its mode as it is (the tests check evaluation restores it)."""
    was_training = model.training
    predictor = LanguageModel(model, VOCABULARY)
    model.train(was_training)
    return predictor


def test_loss_is_mean_cross_entropy_of_every_next_character() -> None:
    model = make()
    ids = VOCABULARY.encode(TEXT)
    inputs, targets = ids[:40].view(2, 20), ids[1:41].view(2, 20)
    loss, metrics = model.loss((inputs, targets))
    logits, _ = model(inputs)
    log_p = torch.log_softmax(logits, -1).gather(-1, targets[..., None])
    assert torch.allclose(loss, -log_p.mean())
    assert metrics["tokens"] == 40


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_carried_windows_equal_one_long_pass(shape: dict) -> None:
    """Two consecutive windows with the state carried give the losses of one pass over both."""
    model = make(shape)
    ids = VOCABULARY.encode(TEXT)
    streams = TextStreams(ids, batch_size=3, seq_len=10)
    batches = list(streams.batches(epoch=0, start=0))[:2]
    losses = [model.loss(b)[0] for b in batches]
    inputs = torch.cat([b.inputs for b in batches], 1)  # (3, 20)
    targets = torch.cat([b.targets for b in batches], 1)
    logits, _ = model(inputs)
    per_char = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    per_char = per_char.view(3, 20)
    assert torch.allclose(losses[0], per_char[:, :10].mean())
    assert torch.allclose(losses[1], per_char[:, 10:].mean())
    assert not batches[1].carry.state[0].requires_grad if isinstance(batches[1].carry.state, tuple) else True


def test_an_epoch_starts_from_zero_state_and_shards_split_the_streams() -> None:
    model = make()
    ids = VOCABULARY.encode(TEXT)
    streams = TextStreams(ids, batch_size=4, seq_len=8)
    first = next(streams.batches(0, 0))
    model.loss(first)
    assert first.carry.state is not None
    again = next(streams.batches(1, 0))
    assert again.carry.state is None  # a new epoch forgets the carried state
    halves = [next(streams.shard(r, 2).batches(0, 0)) for r in range(2)]
    assert torch.equal(torch.cat([h.inputs for h in halves]), again.inputs)
    with pytest.raises(ValueError, match="multiple of 3"):
        streams.shard(0, 3)


def test_state_dict_round_trips_the_carry() -> None:
    model = make()
    streams = TextStreams(VOCABULARY.encode(TEXT), batch_size=2, seq_len=8)
    model.loss(next(streams.batches(0, 0)))
    other = TextStreams(VOCABULARY.encode(TEXT), batch_size=2, seq_len=8)
    other.load_state_dict(streams.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(other.carry.state, streams.carry.state, strict=True))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_stepping_one_character_at_a_time_equals_the_full_pass(shape: dict) -> None:
    model = make(shape).eval()
    ids = VOCABULARY.encode(TEXT)[:24].view(2, 12)
    logits, _ = model(ids)
    expected = torch.log_softmax(logits, -1)  # (2, 12, V)
    log_probs, state = model.prime(ids[:, :3])
    assert torch.allclose(log_probs, expected[:, 2].float(), atol=1e-6)
    for t in range(3, 12):
        log_probs, state = model.step(ids[:, t], state)
        assert torch.allclose(log_probs, expected[:, t].float(), atol=1e-6)


def test_stepping_in_float32_uses_the_fast_product_and_agrees() -> None:
    model = make().float().eval()
    ids = VOCABULARY.encode(TEXT)[:30].view(3, 10)
    with torch.inference_mode():
        logits, _ = model(ids)
        log_probs, state = model.prime(ids[:, :1])
        for t in range(1, 10):
            log_probs, state = model.step(ids[:, t], state)
    assert torch.allclose(log_probs, torch.log_softmax(logits[:, -1], -1), atol=1e-5)


def test_reorder_selects_streams() -> None:
    model = make().eval()
    ids = VOCABULARY.encode(TEXT)[:12].view(3, 4)
    _, state = model.prime(ids)
    picked = model.reorder(state, torch.tensor([2, 0]))
    assert torch.equal(picked[1][0], state[1][0][[2, 0]])


def test_evaluate_one_stream_is_the_exact_mean_loss() -> None:
    model = make()
    text = TEXT[:200]
    result = trained(model).evaluate_stream(text)
    ids = VOCABULARY.encode(text)
    logits, _ = model(ids[None, :-1])
    expected = F.cross_entropy(logits[0], ids[1:]).item()
    assert math.isclose(result["loss"], expected, rel_tol=1e-9)
    assert math.isclose(result["bpc"], expected / math.log(2))
    assert math.isclose(result["perplexity"], math.exp(expected))
    assert result["characters"] == 199 and result["unknown"] == 0
    assert model.training  # evaluation leaves the mode as it found it


def test_evaluate_in_chunks_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    model = trained(make())
    whole = model.evaluate_stream(TEXT)
    monkeypatch.setattr("unrolled.apps.lm.EVAL_CHUNK", 7)
    assert math.isclose(model.evaluate_stream(TEXT)["loss"], whole["loss"], rel_tol=1e-12)


def test_evaluate_counts_unseen_characters() -> None:
    model = trained(make())
    assert model.evaluate("the fox ~~ jumps @")["unknown"] == 3


def test_evaluate_windows_resets_state_per_window() -> None:
    model = make()
    result = trained(model).evaluate_windows(TEXT, length=16, count=5, batch=2, seed=3)
    generator = torch.Generator().manual_seed(3)
    ids = VOCABULARY.encode(TEXT)
    starts = torch.randint(len(ids) - 16, (5,), generator=generator)
    losses = []
    for s in starts.tolist():
        logits, _ = model(ids[None, s : s + 16])
        losses.append(F.cross_entropy(logits[0], ids[s + 1 : s + 17], reduction="sum"))
    assert math.isclose(result["loss"], (sum(losses) / 80).item(), rel_tol=1e-9)


def test_config_checks_its_values() -> None:
    with pytest.raises(ValueError, match="unknown cell"):
        CharLMConfig(vocab_size=5, cell="transformer")
    with pytest.raises(ValueError, match="tied weights"):
        CharLMConfig(vocab_size=5, embedding=8, hidden=16, tie_weights=True)
    with pytest.raises(ValueError, match="dropout"):
        CharLMConfig(vocab_size=5, dropout=1.0)


def test_tied_weights_share_one_tensor() -> None:
    model = make(embedding=16, tie_weights=True)
    assert model.head.weight is model.embedding.weight


def test_stream_window_is_what_the_batches_yield() -> None:
    streams = TextStreams(torch.arange(50) % 7, batch_size=2, seq_len=5)
    batch = next(streams.batches(0, 3))
    assert isinstance(batch, StreamWindow)
    assert torch.equal(batch.inputs, streams.windows[3][0])

"""The tagger: padding never changes a tag; the loss, character features and float inputs match direct computations."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unrolled.data.labelled import IGNORE_LABEL, TokenBatch
from unrolled.data.vocab import PAD_ID
from unrolled.models import Tagger, TaggerConfig

V, C, E, H = 12, 4, 6, 5  # vocabulary, tags, embedding and hidden sizes
CHAR_V, WORD = 9, 6  # character vocabulary, longest word in a batch (W)
LENGTHS = [5, 2, 7, 1]
CHARS: dict[str, dict[str, Any]] = {"none": {}, "lstm": {"chars": 3, "char_vocab_size": CHAR_V, "char_embedding": 4},
         "cnn": {"chars": 3, "char_vocab_size": CHAR_V, "char_embedding": 4, "char_encoder": "cnn", "char_width": 3}}


def tagger(**overrides: object) -> Tagger:
    torch.manual_seed(0)
    values: dict = {"vocab_size": V, "tags": C, "embedding": E, "hidden": H, "dropout": 0.0,
                    "embedding_dropout": 0.0, **overrides}
    return Tagger(TaggerConfig(**values)).double().eval()


def batch(lengths: list[int], *, seed: int = 1, labels: bool = True) -> TokenBatch:
    """Random words and spellings (1..W characters each); padded steps hold junk, which must not matter."""
    generator = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    ids = torch.randint(2, V, (B, T), generator=generator)  # (B, T)
    spelled = torch.randint(1, WORD + 1, (B, T), generator=generator)  # (B, T) characters per word
    chars = torch.randint(2, CHAR_V, (B, T, WORD), generator=generator)  # (B, T, W)
    chars = chars.masked_fill(torch.arange(WORD) >= spelled.unsqueeze(-1), PAD_ID)
    tags = torch.randint(0, C, (B, T), generator=generator) if labels else None
    return TokenBatch(ids, torch.tensor(lengths), tags, chars)


def alone(data: TokenBatch, b: int) -> TokenBatch:
    """Sequence b by itself: cut to its length, and its spellings to its own longest word."""
    n = int(data.lengths[b])
    assert data.chars is not None
    chars = data.chars[b : b + 1, :n]  # (1, n, W)
    widest = int((chars != PAD_ID).sum(-1).max())
    return TokenBatch(data.ids[b : b + 1, :n], torch.tensor([n]), None, chars[..., :widest])


# ---------------------------------------------------------------------- padding invariance


@pytest.mark.parametrize(("chars", "cell", "bidirectional"),
                         list(itertools.product(CHARS, ["lstm", "gru", "rnn"], [True, False])))
def test_padding_never_changes_logits(chars: str, cell: str, bidirectional: bool) -> None:
    model = tagger(cell=cell, bidirectional=bidirectional, **CHARS[chars])
    data = batch(LENGTHS)
    logits = model(data.ids, data.lengths, data.chars)  # (B, T, C)
    assert logits.shape == (len(LENGTHS), max(LENGTHS), C)
    for b, n in enumerate(LENGTHS):
        one = alone(data, b)
        assert torch.allclose(logits[b, :n], model(one.ids, one.lengths, one.chars)[0], atol=1e-12), b
        assert bool((logits[b, n:] == 0).all())


def test_padding_invariance_with_stacked_layers_and_float_features() -> None:
    model = tagger(vocab_size=0, input_features=3, layers=2, cell="gru")
    features = torch.randn(3, 6, 3)  # float32 frames; the model reads them in its own dtype
    lengths = torch.tensor([6, 2, 4])
    logits = model(features, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.allclose(logits[b, :n], model(features[b : b + 1, :n], torch.tensor([n]))[0], atol=1e-12)


# ---------------------------------------------------------------------- parts against direct computations


def test_character_bilstm_features_are_the_final_states_of_each_word() -> None:
    model = tagger(**CHARS["lstm"])
    data = batch(LENGTHS)
    assert model.chars is not None and model.chars.rnn is not None and data.chars is not None
    mask = torch.arange(max(LENGTHS)) < data.lengths.unsqueeze(1)
    features = model.chars(data.chars, mask)  # (B, T, 2*chars)
    reference = nn.LSTM(4, 3, bidirectional=True, batch_first=True).double()
    reference.load_state_dict(model.chars.rnn.state_dict())
    for b, t in [(0, 0), (0, 4), (2, 6), (3, 0)]:
        word = data.chars[b, t][data.chars[b, t] != PAD_ID]  # (m,)
        out, _ = reference(model.chars.embedding(word)[None])  # (1, m, 2*chars)
        expected = torch.cat([out[0, -1, :3], out[0, 0, 3:]])
        assert torch.allclose(features[b, t], expected, atol=1e-12), (b, t)
    assert bool((features[~mask] == 0).all())


def test_inputs_concatenate_word_embedding_and_character_features() -> None:
    model = tagger(**CHARS["cnn"])
    data = batch([3])
    assert model.embedding is not None and model.chars is not None
    x = model.inputs(data.ids, torch.ones(1, 3, dtype=torch.bool), data.chars)
    assert x.shape == (1, 3, E + 3)
    assert torch.equal(x[..., :E], model.embedding(data.ids))


def test_loss_is_cross_entropy_over_the_labelled_real_steps() -> None:
    model = tagger(**CHARS["lstm"])
    data = batch(LENGTHS)
    assert data.labels is not None
    data.labels[1, 0] = IGNORE_LABEL  # a real step without a label is skipped too
    loss, metrics = model.loss(data)  # the labels past the lengths are junk tags: masked by the lengths
    logits = model(data.ids, data.lengths, data.chars)
    kept = [(b, t) for b, n in enumerate(LENGTHS) for t in range(n) if (b, t) != (1, 0)]
    picked = torch.stack([logits[b, t] for b, t in kept])  # (N, C)
    targets = torch.tensor([int(data.labels[b, t]) for b, t in kept])
    assert torch.allclose(loss, F.cross_entropy(picked, targets))
    assert metrics["tokens"] == len(kept) == sum(LENGTHS) - 1
    assert metrics["accuracy"] == pytest.approx(float((picked.argmax(-1) == targets).double().mean()))
    with pytest.raises(ValueError, match="a label per step"):
        model.loss(TokenBatch(data.ids, data.lengths, data.labels[:, 0], data.chars))


def test_predict_gives_tags_and_ignore_label_past_each_length() -> None:
    model = tagger(dropout=0.5, embedding_dropout=0.5)
    model.train()
    data = batch(LENGTHS, labels=False)
    tags = model.predict(data)
    assert model.training and tags.shape == data.ids.shape and tags.dtype == torch.int64
    model.eval()
    expected = model(data.ids, data.lengths).argmax(-1)
    for b, n in enumerate(LENGTHS):
        assert torch.equal(tags[b, :n], expected[b, :n])
        assert bool((tags[b, n:] == IGNORE_LABEL).all())


@pytest.mark.parametrize("chars", ["none", "cnn"])
def test_a_few_steps_learn_to_tag_a_token_and_its_successor(chars: str) -> None:
    """Tag 1 on token 5, tag 2 on the token after it, else 0: context the BiLSTM must read."""
    torch.manual_seed(0)
    model = Tagger(TaggerConfig(V, 3, embedding=8, hidden=8, embedding_dropout=0.0, dropout=0.0, **CHARS[chars]))
    data = batch([8] * 32, seed=3)
    ids = data.ids
    tags = (ids == 5).long()
    tags[:, 1:] += 2 * (ids[:, :-1] == 5).long() * (ids[:, 1:] != 5).long()
    data = TokenBatch(ids, data.lengths, tags, data.chars)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first = model.loss(data)[0].item()
    for _ in range(30):
        optimizer.zero_grad()
        loss, _ = model.loss(data)
        loss.backward()
        optimizer.step()
    loss, metrics = model.loss(data)
    assert loss.item() < 0.3 * first
    assert metrics["accuracy"] > 0.9


# ---------------------------------------------------------------------- inputs, embeddings, configs


def test_missing_or_misshapen_inputs_are_named() -> None:
    data = batch([3, 2])
    with pytest.raises(ValueError, match=r"batch\.chars must be"):
        tagger(**CHARS["lstm"])(data.ids, data.lengths)
    with pytest.raises(ValueError, match=r"float features \(B, T, 3\)"):
        tagger(vocab_size=0, input_features=3)(data.ids, data.lengths)


def test_load_embeddings_copies_every_row_and_records_freezing() -> None:
    model = tagger()
    assert model.embedding is not None
    vectors = torch.randn(V, E, dtype=torch.float64)
    model.load_embeddings(vectors, freeze=True)
    assert torch.equal(model.embedding.weight, vectors) and not model.embedding.weight.requires_grad
    rebuilt = Tagger(TaggerConfig(**asdict(model.config))).embedding
    assert rebuilt is not None and not rebuilt.weight.requires_grad
    with pytest.raises(ValueError, match="no word embedding"):
        tagger(vocab_size=0, input_features=3).load_embeddings(vectors)


def test_config_round_trips_through_plain_json() -> None:
    config = TaggerConfig(V, C, cell_options={"peepholes": True}, **CHARS["cnn"])
    assert TaggerConfig(**json.loads(json.dumps(asdict(config)))) == config


@pytest.mark.parametrize(("values", "message"), [
    ({"vocab_size": 1}, "vocab_size"),
    ({"tags": 1}, "tags must be at least 2"),
    ({"cell": "transformer"}, "unknown cell"),
    ({"layers": 0}, "layers must be"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"chars": 3}, "char_vocab_size"),
    ({"chars": 3, "char_vocab_size": 5, "char_encoder": "gru"}, "unknown char_encoder"),
    ({"chars": -1}, "chars must be"),
    ({"input_features": 4}, "vocab_size=0"),
    ({"input_features": -1}, "input_features"),
])
def test_config_errors_are_one_line(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        TaggerConfig(**{"vocab_size": V, "tags": C, **values})
    assert "\n" not in str(error.value)

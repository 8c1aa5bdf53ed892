"""The classifiers: padding never changes a prediction; pooling, Kim's features and the loss match direct sums."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled.data.labelled import TokenBatch
from unrolled.data.vocab import PAD_ID
from unrolled.models import CNNClassifier, CNNClassifierConfig, RNNClassifier, RNNClassifierConfig
from unrolled.models.classifier import SequenceClassifier

V, C, E, H = 12, 3, 6, 5  # vocabulary, classes, embedding and hidden sizes
LENGTHS = [5, 2, 7, 1]
TORCH_LAYERS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def rnn_model(**overrides: object) -> RNNClassifier:
    torch.manual_seed(0)
    values: dict = {"vocab_size": V, "classes": C, "embedding": E, "hidden": H, "dropout": 0.0, **overrides}
    return RNNClassifier(RNNClassifierConfig(**values)).double().eval()


def cnn_model(**overrides: object) -> CNNClassifier:
    torch.manual_seed(0)
    values: dict = {"vocab_size": V, "classes": C, "embedding": E, "feature_maps": 4, "dropout": 0.0, **overrides}
    return CNNClassifier(CNNClassifierConfig(**values)).double().eval()


def padded_batch(lengths: list[int], *, seed: int = 1, junk: bool = True) -> tuple[Tensor, Tensor]:
    """ids (B, T) and lengths (B,); with `junk`, the padding holds random tokens instead of PAD_ID (must not matter)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, V, (len(lengths), max(lengths)), generator=generator)  # (B, T)
    past = torch.arange(max(lengths)) >= torch.tensor(lengths).unsqueeze(1)  # (B, T)
    if not junk:
        ids = ids.masked_fill(past, PAD_ID)
    return ids, torch.tensor(lengths)


def assert_padding_invariant(model: nn.Module, lengths: list[int]) -> None:
    ids, lens = padded_batch(lengths)
    batched = model(ids, lens)  # (B, C)
    for b, n in enumerate(lengths):
        alone = model(ids[b : b + 1, :n], torch.tensor([n]))  # (1, C)
        assert torch.allclose(batched[b], alone[0], atol=1e-12), (b, n)


# ---------------------------------------------------------------------- padding invariance


@pytest.mark.parametrize(("pooling", "cell", "bidirectional"),
                         list(itertools.product(["last", "mean", "max", "attention"], ["lstm", "gru", "rnn"],
                                                [False, True])))
def test_rnn_padding_never_changes_logits(pooling: str, cell: str, bidirectional: bool) -> None:
    assert_padding_invariant(rnn_model(pooling=pooling, cell=cell, bidirectional=bidirectional), LENGTHS)


@pytest.mark.parametrize("overrides", [{"layers": 2}, {"cell_options": {"peepholes": True}},
                                       {"cell": "gru", "cell_options": {"variant": "cho"}, "layers": 2}],
                         ids=["two-layers", "peepholes-transparent", "cho-gru-transparent"])
@pytest.mark.parametrize("pooling", ["last", "attention"])
def test_rnn_padding_invariance_stacked_and_transparent(overrides: dict, pooling: str) -> None:
    assert_padding_invariant(rnn_model(pooling=pooling, **overrides), LENGTHS)


def test_cnn_padding_never_changes_logits_even_below_the_widest_filter() -> None:
    assert_padding_invariant(cnn_model(), [6, 1, 3, 4, 9, 5])


def test_cnn_padding_invariance_with_a_nonzero_padding_row() -> None:
    """Pretrained vectors may give PAD_ID a nonzero row; steps past a length still read zeros."""
    model = cnn_model()
    model.load_embeddings(torch.randn(V, E, dtype=torch.float64))
    ids, lens = padded_batch([2, 7], junk=False)  # PAD_ID past the lengths
    batched = model(ids, lens)
    assert torch.allclose(batched[0], model(ids[:1, :2], torch.tensor([2]))[0], atol=1e-12)


# ---------------------------------------------------------------------- pooling against a direct computation


def reference_outputs(model: RNNClassifier, ids: Tensor) -> Tensor:
    """torch.nn's layer, given the model's weights, over one sentence (1, n) without padding: h (n, D*H)."""
    config = model.config
    layer = TORCH_LAYERS[config.cell](E, H, config.layers, batch_first=True, bidirectional=config.bidirectional)
    layer = layer.double()
    layer.load_state_dict(model.rnn.state_dict())
    h, _ = layer(model.embedding(ids))
    return h[0]


def reference_pool(model: RNNClassifier, h: Tensor) -> Tensor:
    """z (D*H,) of one sentence's outputs h (n, D*H), written out per pooling."""
    pooling = model.config.pooling
    if pooling == "last":
        return torch.cat([h[-1, :H], h[0, H:]])  # forward at the end, backward at the start
    if pooling == "mean":
        return torch.stack([h[t] for t in range(h.shape[0])]).sum(0) / h.shape[0]
    if pooling == "max":
        return torch.stack([torch.tensor(max(h[:, j].tolist()), dtype=h.dtype) for j in range(h.shape[1])])
    attention = model.attention
    assert attention is not None
    W, b, v = attention.project.weight, attention.project.bias, attention.query.weight[0]
    scores = torch.stack([v @ torch.tanh(W @ h[t] + b) for t in range(h.shape[0])])
    weights = scores.exp() / scores.exp().sum()
    return torch.stack([weights[t] * h[t] for t in range(h.shape[0])]).sum(0)


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "attention"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_pooling_matches_a_per_sentence_computation(pooling: str, cell: str) -> None:
    model = rnn_model(pooling=pooling, cell=cell)
    ids, lens = padded_batch(LENGTHS)
    logits = model(ids, lens)
    for b, n in enumerate(LENGTHS):
        z = reference_pool(model, reference_outputs(model, ids[b : b + 1, :n]))
        expected = model.head.weight @ z + model.head.bias
        assert torch.allclose(logits[b], expected, atol=1e-10), (pooling, b)


def test_attention_weights_sum_to_one_over_the_real_steps_only() -> None:
    model = rnn_model(pooling="attention")
    ids, lens = padded_batch(LENGTHS)
    z, weights = model.attend(ids, lens)
    assert z.shape == (len(LENGTHS), 2 * H)
    assert weights is not None and weights.shape == ids.shape
    past = torch.arange(ids.shape[1]) >= lens.unsqueeze(1)
    assert bool((weights[past] == 0).all())
    assert torch.allclose(weights.sum(1), torch.ones(len(LENGTHS), dtype=torch.float64))
    assert rnn_model(pooling="max").attend(ids, lens)[1] is None


# ---------------------------------------------------------------------- Kim's CNN against explicit loops


def reference_kim_features(model: CNNClassifier, ids: Tensor, n: int) -> Tensor:
    """One sentence's features by loops: zero vectors past n up to the widest width, windows i = 0..max(n-k, 0)."""
    x = model.embedding(ids[:n]).tolist()  # n rows of E
    widest = max(model.config.widths)
    x += [[0.0] * E] * max(0, widest - n)
    features = []
    for width, conv in zip(model.config.widths, model.convolution.convs, strict=True):
        assert isinstance(conv, nn.Conv1d) and conv.bias is not None
        K, bias = conv.weight.tolist(), conv.bias.tolist()  # (M, E, k), (M,)
        for m in range(len(K)):
            windows = []
            for i in range(max(n - width, 0) + 1):
                total = bias[m] + sum(K[m][e][j] * x[i + j][e] for j in range(width) for e in range(E))
                windows.append(max(total, 0.0))
            features.append(max(windows))
    return torch.tensor(features, dtype=torch.float64)


def test_cnn_features_match_explicit_convolution_loops() -> None:
    model = cnn_model(widths=[2, 3], feature_maps=3)
    lengths = [4, 1, 2, 6]
    ids, lens = padded_batch(lengths)
    z = model.features(ids, lens)
    assert z.shape == (4, 2 * 3)
    for b, n in enumerate(lengths):
        assert torch.allclose(z[b], reference_kim_features(model, ids[b], n), atol=1e-12), b


def test_max_norm_rescales_only_rows_above_the_limit() -> None:
    model = cnn_model()
    with torch.no_grad():
        model.head.weight.normal_()
        model.head.weight[0] *= 10 / model.head.weight[0].norm()
        model.head.weight[1] *= 1 / model.head.weight[1].norm()
    before = model.head.weight.detach().clone()
    model.apply_max_norm()
    norms = model.head.weight.norm(dim=1)
    assert torch.allclose(norms[0], torch.tensor(3.0, dtype=torch.float64))
    assert torch.allclose(model.head.weight[0], before[0] * 3 / 10)
    assert torch.equal(model.head.weight[1], before[1])
    off = cnn_model(max_norm=0.0)
    with torch.no_grad():
        off.head.weight.mul_(100)
    kept = off.head.weight.detach().clone()
    off.apply_max_norm()
    assert torch.equal(off.head.weight, kept)


# ---------------------------------------------------------------------- loss, prediction, training


@pytest.mark.parametrize("make", [rnn_model, cnn_model], ids=["rnn", "cnn"])
def test_loss_is_cross_entropy_with_tokens_and_accuracy(make: Callable[..., SequenceClassifier]) -> None:
    model = make()
    ids, lens = padded_batch(LENGTHS)
    labels = torch.tensor([0, 2, 1, 1])
    loss, metrics = model.loss(TokenBatch(ids, lens, labels))
    logits = model(ids, lens)
    assert logits.shape == (4, C)
    log_p = torch.log_softmax(logits, -1)
    assert torch.allclose(loss, -log_p[torch.arange(4), labels].mean())
    assert torch.allclose(loss, F.cross_entropy(logits, labels))
    assert metrics["tokens"] == 4
    assert metrics["accuracy"] == pytest.approx(float((logits.argmax(-1) == labels).double().mean()))
    with pytest.raises(ValueError, match="one label per sequence"):
        model.loss(TokenBatch(ids, lens))


@pytest.mark.parametrize("make", [rnn_model, cnn_model], ids=["rnn", "cnn"])
def test_predict_gives_probabilities_without_dropout_keeping_the_mode(make: Callable[..., SequenceClassifier]) -> None:
    model = make(dropout=0.5, embedding_dropout=0.3)
    model.train()
    ids, lens = padded_batch(LENGTHS)
    probabilities = model.predict(TokenBatch(ids, lens))
    assert model.training
    assert probabilities.shape == (4, C) and not probabilities.requires_grad
    assert torch.allclose(probabilities.sum(-1), torch.ones(4, dtype=torch.float64))
    model.eval()
    assert torch.allclose(probabilities, torch.softmax(model(ids, lens), -1))


STEPS = 25


def occurs_task(count: int, seed: int = 0) -> TokenBatch:
    """Sentences of 2..8 tokens; the label says whether token 5 occurs (about half do)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (count,), generator=generator)
    ids = torch.randint(2, V, (count, 8), generator=generator)
    ids = ids.masked_fill(ids == 5, 6)
    plant = torch.rand(count, generator=generator) < 0.5
    where = (torch.rand(count, generator=generator) * lengths).long()
    ids[plant, where[plant]] = 5
    ids = ids.masked_fill(torch.arange(8) >= lengths.unsqueeze(1), PAD_ID)
    return TokenBatch(ids, lengths, plant.long())


@pytest.mark.parametrize("make", [
    lambda: RNNClassifier(RNNClassifierConfig(V, 2, embedding=8, hidden=8, cell="gru")),
    lambda: CNNClassifier(CNNClassifierConfig(V, 2, embedding=8, widths=[3], feature_maps=8)),
], ids=["rnn", "cnn"])
def test_a_few_steps_learn_whether_a_token_occurs(make: Callable[..., SequenceClassifier]) -> None:
    torch.manual_seed(0)
    model = make()
    batch = occurs_task(64)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first = model.loss(batch)[0].item()
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss, _ = model.loss(batch)
        loss.backward()
        optimizer.step()
    model.eval()
    loss, metrics = model.loss(batch)
    assert loss.item() < 0.5 * first
    assert metrics["accuracy"] > 0.9


# ---------------------------------------------------------------------- embeddings and configs


@pytest.mark.parametrize("make", [rnn_model, cnn_model], ids=["rnn", "cnn"])
def test_load_embeddings_copies_every_row_and_records_freezing(make: Callable[..., SequenceClassifier]) -> None:
    model = make()
    assert torch.equal(model.embedding.weight[PAD_ID], torch.zeros(E, dtype=torch.float64))
    vectors = torch.randn(V, E, dtype=torch.float64)
    model.load_embeddings(vectors)
    assert torch.equal(model.embedding.weight, vectors) and model.embedding.weight.requires_grad
    model.load_embeddings(vectors * 2, freeze=True)
    assert torch.equal(model.embedding.weight, vectors * 2)
    assert not model.embedding.weight.requires_grad and model.config.freeze_embedding
    rebuilt = type(model)(type(model.config)(**asdict(model.config)))
    assert not rebuilt.embedding.weight.requires_grad
    with pytest.raises(ValueError, match=r"shape \(V, E\)"):
        model.load_embeddings(torch.zeros(V + 1, E))


@pytest.mark.parametrize("config", [RNNClassifierConfig(V, C, pooling="attention", cell_options={"peepholes": True}),
                                    CNNClassifierConfig(V, C, widths=(2, 7))])  # type: ignore[arg-type]  # a tuple too
def test_configs_round_trip_through_plain_json(config: RNNClassifierConfig | CNNClassifierConfig) -> None:
    values = json.loads(json.dumps(asdict(config)))
    assert type(config)(**values) == config


@pytest.mark.parametrize(("cls", "values", "message"), [
    (RNNClassifierConfig, {"vocab_size": 1}, "vocab_size"),
    (RNNClassifierConfig, {"classes": 1}, "classes must be at least 2"),
    (RNNClassifierConfig, {"cell": "transformer"}, "unknown cell"),
    (RNNClassifierConfig, {"pooling": "sum"}, "unknown pooling"),
    (RNNClassifierConfig, {"hidden": 0}, "hidden must be"),
    (RNNClassifierConfig, {"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    (RNNClassifierConfig, {"embedding_dropout": -0.1}, "embedding_dropout"),
    (CNNClassifierConfig, {"widths": []}, "widths"),
    (CNNClassifierConfig, {"widths": [3, 0]}, "widths"),
    (CNNClassifierConfig, {"feature_maps": 0}, "feature_maps"),
    (CNNClassifierConfig, {"max_norm": -1.0}, "max_norm"),
    (CNNClassifierConfig, {"embedding": 0}, "embedding must be"),
])
def test_config_errors_are_one_line(cls: type, values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        cls(**{"vocab_size": V, "classes": C, **values})
    assert "\n" not in str(error.value)


def test_lengths_outside_the_batch_are_refused() -> None:
    ids, _ = padded_batch([3, 2])
    for model in (rnn_model(), cnn_model()):
        with pytest.raises(ValueError, match=r"lengths must lie in 1\.\.3"):
            model(ids, torch.tensor([4, 2]))

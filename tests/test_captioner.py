"""The captioner's decoder against a reference written with torch's own layers, and its properties."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unrolled import decoding
from unrolled.models.captioner import BOS_ID, EOS_ID, Captioner, CaptionerConfig

VOCAB = 9


def make_model(seed: int = 0, **options: object) -> Captioner:
    torch.manual_seed(seed)
    shape: dict[str, object] = {"channels": 4, "stages": 2, "embedding": 6, "hidden": 5, "dropout": 0.0}
    shape.update(options)
    return Captioner(CaptionerConfig(VOCAB, **shape)).double().eval()  # type: ignore[arg-type]


def images(count: int = 3, seed: int = 1) -> Tensor:
    return torch.rand(count, 3, 12, 16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def captions() -> Tensor:
    """Three captions of 3, 1 and 0 words: <s> ... </s> padded with 0."""
    return torch.tensor([[BOS_ID, 5, 6, 7, EOS_ID], [BOS_ID, 8, EOS_ID, 0, 0], [BOS_ID, EOS_ID, 0, 0, 0]])


def reference_logits(model: Captioner, pictures: Tensor, target_in: Tensor) -> tuple[Tensor, Tensor]:
    """Xu et al.'s step written out with nn.LSTMCell and the additive attention by hand (the CNN is shared)."""
    c = model.config
    features = model.encoder(pictures)  # (B, L, D)
    mean = features.mean(dim=1)
    h, cell_c = torch.tanh(model.init_h(mean)), torch.tanh(model.init_c(mean))
    cell = nn.LSTMCell(model.cell.input_size, c.hidden).double()
    cell.load_state_dict({name: getattr(model.cell, name) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    a = model.attend
    logits, weights = [], []
    for t in range(target_in.shape[1]):
        e = model.embedding.weight[target_in[:, t]]  # (B, E)
        scores = torch.tanh((h @ a.query_layer.weight.T).unsqueeze(1) + features @ a.memory_layer.weight.T
                            + a.memory_layer.bias) @ a.v  # (B, L)
        alpha = scores.softmax(dim=-1)
        beta = torch.sigmoid(h @ model.gate.weight.T + model.gate.bias)  # (B, 1)
        z = beta * torch.einsum("bl,bld->bd", alpha, features)
        h, cell_c = cell(torch.cat([e, z], dim=-1), (h, cell_c))
        deep = e + h @ model.out_h.weight.T + model.out_h.bias + z @ model.out_z.weight.T
        logits.append(deep @ model.output.weight.T + model.output.bias)
        weights.append(alpha)
    return torch.stack(logits, dim=1), torch.stack(weights, dim=1)


def test_soft_attention_equals_the_reference() -> None:
    model = make_model()
    pictures, target = images(), captions()
    logits, weights = model(pictures, target[:, :-1])
    want_logits, want_weights = reference_logits(model, pictures, target[:, :-1])
    torch.testing.assert_close(logits, want_logits, rtol=0, atol=1e-12)
    assert weights is not None
    torch.testing.assert_close(weights, want_weights, rtol=0, atol=1e-12)
    assert weights.shape == (3, 4, 3 * 4)  # a 12 x 16 image halved twice: a 3 x 4 grid


def test_plain_model_reads_the_image_as_its_first_input() -> None:
    model = make_model(attention="none")
    pictures, target = images(), captions()
    logits, weights = model(pictures, target[:, :-1])
    assert weights is None
    cell = nn.LSTMCell(model.cell.input_size, model.config.hidden).double()
    cell.load_state_dict({name: getattr(model.cell, name) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    state = cell(model.image_input(model.encoder(pictures).mean(dim=1)))
    for t in range(target.shape[1] - 1):
        state = cell(model.embedding.weight[target[:, t]], state)
        torch.testing.assert_close(logits[:, t], model.output(state[0]), rtol=0, atol=1e-12)


def test_loss_is_token_cross_entropy_plus_the_doubly_stochastic_term() -> None:
    model = make_model(doubly_stochastic=0.5)
    pictures, target = images(), captions()
    loss, metrics = model.loss(SimpleNamespace(images=pictures, target=target))
    logits, weights = reference_logits(model, pictures, target[:, :-1])
    gold = target[:, 1:]
    real = gold != 0
    nll = F.cross_entropy(logits[real], gold[real])
    # image b attends over its own real steps only: 4, 2 and 1 of them
    coverage = torch.stack([((1 - weights[b, :steps].sum(0)) ** 2).mean() for b, steps in enumerate([4, 2, 1])])
    torch.testing.assert_close(loss, nll + 0.5 * coverage.mean(), rtol=0, atol=1e-12)
    assert metrics["tokens"] == 7 and metrics["nll"] == pytest.approx(float(nll.detach()))


def test_a_frozen_encoder_gets_no_gradient_and_keeps_its_statistics() -> None:
    model = make_model(freeze_encoder=True).train()
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    loss, _ = model.loss(SimpleNamespace(images=images(), target=captions()))
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.cell.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())  # running stats too


@pytest.mark.parametrize("attention", ["soft", "none"])
def test_beam_of_one_is_greedy_and_batching_changes_nothing(attention: str) -> None:
    model = make_model(seed=3, attention=attention)
    with torch.no_grad():
        model.output.weight.mul_(4)  # peaked predictions
        model.output.bias[EOS_ID] += 1.5  # that end
    pictures = images(6, seed=5)
    path = decoding.greedy(model, *model.prime(pictures), length=10, end_token=EOS_ID)
    ones = decoding.beam_search(model, *model.prime(pictures), beam_size=1, max_length=10, end_token=EOS_ID)
    for row, (h,) in zip(path.tolist(), ones, strict=True):
        assert h.tokens == (row[: row.index(EOS_ID)] if EOS_ID in row else row)
    together = decoding.beam_search(model, *model.prime(pictures), beam_size=4, max_length=10, end_token=EOS_ID,
                                    n_best=3)
    assert any(h.finished for hypotheses in together for h in hypotheses)
    for i in range(6):
        alone = decoding.beam_search(model, *model.prime(pictures[i : i + 1]), beam_size=4, max_length=10,
                                     end_token=EOS_ID, n_best=3)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[i]], rel=1e-9)


def test_reorder_shares_the_features_and_steps_as_with_a_copy_per_hypothesis() -> None:
    model = make_model()
    _, state = model.prime(images())
    copied = state
    for index, shared in [([0, 0, 1, 1, 2, 2], 3), ([1, 0, 5, 4], 2), ([3, 0, 1, 2], 4)]:
        rows = torch.tensor(index)
        state, copied = model.reorder(state, rows), decoding.index_state(copied, rows, 0)
        tokens = torch.tensor([4 + i % 5 for i in range(len(index))])
        ours, state = model.step(tokens, state)
        theirs, copied = model.step(tokens, copied)
        assert state.features is not None and state.features.shape[0] == shared
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_config_errors_are_one_line() -> None:
    with pytest.raises(ValueError, match="unknown attention 'hard': choose one of soft, none"):
        CaptionerConfig(VOCAB, attention="hard")
    with pytest.raises(ValueError, match="vocab must hold the 4 special tokens"):
        CaptionerConfig(4)

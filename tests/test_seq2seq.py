"""The encoder-decoder against a reference written with torch's own layers, and its properties."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from unrolled import decoding
from unrolled.data.pairs import make_pair_batch
from unrolled.models.seq2seq import BOS_ID, EOS_ID, Seq2Seq, Seq2SeqConfig

SOURCE_VOCAB, TARGET_VOCAB = 12, 9


def make_model(seed: int = 0, **options: object) -> Seq2Seq:
    torch.manual_seed(seed)
    shape: dict[str, object] = {"embedding": 6, "hidden": 5, "dropout": 0.0}
    shape.update(options)
    return Seq2Seq(Seq2SeqConfig(SOURCE_VOCAB, TARGET_VOCAB, **shape)).double()  # type: ignore[arg-type]


def batch(seed: int = 1) -> SimpleNamespace:
    """Three pairs of source lengths 5, 2 and 1 (padded with 0) and targets of 4 steps."""
    generator = torch.Generator().manual_seed(seed)
    source = torch.randint(2, SOURCE_VOCAB, (3, 5), generator=generator)
    lengths = torch.tensor([5, 2, 1])
    source[1, 2:] = 0
    source[2, 1:] = 0
    target = torch.randint(4, TARGET_VOCAB, (3, 5), generator=generator)
    target[:, 0] = BOS_ID
    target[:, -1] = EOS_ID
    return SimpleNamespace(source=source, source_lengths=lengths, target=target)


def reference_logits(model: Seq2Seq, source: Tensor, lengths: Tensor, target_in: Tensor) -> Tensor:
    """The module docstring's equations with torch's nn.LSTM, nn.LSTMCell and the attention written out."""
    c = model.config
    encoder = nn.LSTM(c.embedding, c.hidden, c.layers, batch_first=True, bidirectional=c.bidirectional).double()
    encoder.load_state_dict(model.encoder.state_dict())
    e = model.source_embedding.weight[source]  # (B, S, E)
    packed, (h_n, c_n) = encoder(pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False))
    memory, _ = pad_packed_sequence(packed, batch_first=True, total_length=source.shape[1])  # (B, S, 2H)
    mask = torch.arange(source.shape[1]) < lengths.unsqueeze(1)
    states = []
    for layer in range(c.layers):
        h_both = torch.cat([h_n[2 * layer], h_n[2 * layer + 1]], dim=-1)
        c_both = torch.cat([c_n[2 * layer], c_n[2 * layer + 1]], dim=-1)
        assert model.bridge_h is not None and model.bridge_c is not None
        states.append((torch.tanh(model.bridge_h(h_both)), model.bridge_c(c_both)))
    cells = []
    for layer in range(c.layers):
        cell = nn.LSTMCell(model.decoder.cell(layer).input_size, c.hidden).double()
        cell.load_state_dict({name: getattr(model.decoder, f"{name}_l{layer}")
                              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        cells.append(cell)
    assert model.attention is not None and model.combine is not None
    w_a = model.attention.linear_in.weight  # (H, 2H): score = o . (W_a m)
    feed = torch.zeros(source.shape[0], c.hidden, dtype=torch.float64)
    out = []
    for t in range(target_in.shape[1]):
        x = torch.cat([model.target_embedding.weight[target_in[:, t]], feed], dim=-1)
        for layer, cell in enumerate(cells):
            states[layer] = cell(x, states[layer])
            x = states[layer][0]
        scores = torch.einsum("bh,bsh->bs", x, memory @ w_a.T).masked_fill(~mask, -math.inf)
        context = torch.einsum("bs,bsd->bd", scores.softmax(-1), memory)
        feed = torch.tanh(torch.cat([context, x], dim=-1) @ model.combine.weight.T)
        out.append(model.generator(feed))
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("layers", [1, 2])
def test_forward_equals_torch_reference(layers: int) -> None:
    model = make_model(layers=layers, attention="general", input_feed=True, bidirectional=True)
    b = batch()
    logits, weights = model(b.source, b.source_lengths, b.target[:, :-1])
    expected = reference_logits(model, b.source, b.source_lengths, b.target[:, :-1])
    torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-10)
    assert weights is not None and weights.shape == (3, 4, 5)
    assert bool((weights[1, :, 2:] == 0).all()) and bool((weights[2, :, 1:] == 0).all()), "padding gets no weight"
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, dtype=torch.float64))


@pytest.mark.parametrize("attention", ["none", "dot", "general", "scaled", "additive"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_all_steps_at_once_equal_step_by_step(attention: str, cell: str) -> None:
    """Without input feeding, teacher forcing runs the fused decoder over all steps; stepping gives the same."""
    bidirectional = attention not in ("dot", "scaled")
    model = make_model(cell=cell, attention=attention, input_feed=False, layers=2, bidirectional=bidirectional)
    b = batch()
    logits, weights = model(b.source, b.source_lengths, b.target[:, :-1])
    stepped, stepped_weights = model.stepwise(b.target[:, :-1], model.encode(b.source, b.source_lengths))
    torch.testing.assert_close(logits, stepped, rtol=1e-10, atol=1e-10)
    if attention == "none":
        assert weights is None and stepped_weights is None
    else:
        torch.testing.assert_close(weights, stepped_weights, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("input_feed", [True, False])
def test_padding_never_changes_a_result(input_feed: bool) -> None:
    """Each pair gets the same logits alone and in a batch beside longer ones, whatever lies in the padding."""
    model = make_model(attention="additive", input_feed=input_feed)
    b = batch()
    together, _ = model(b.source, b.source_lengths, b.target[:, :-1])
    noisy = b.source.clone()
    noisy[1, 2:] = 7
    noisy[2, 1:] = 3
    assert torch.equal(model(noisy, b.source_lengths, b.target[:, :-1])[0], together)
    for i in range(3):
        n = int(b.source_lengths[i])
        alone, _ = model(b.source[i : i + 1, :n], b.source_lengths[i : i + 1], b.target[i : i + 1, :-1])
        torch.testing.assert_close(alone[0], together[i], rtol=1e-12, atol=1e-12)


def test_loss_is_the_mean_token_cross_entropy_and_smoothing_matches_its_definition() -> None:
    model = make_model(attention="general")
    source = torch.tensor([[4, 5, 6], [7, 8, 0]])
    lengths = torch.tensor([3, 2])
    target = torch.tensor([[BOS_ID, 5, 6, 7, EOS_ID], [BOS_ID, 8, EOS_ID, 0, 0]])
    pairs = SimpleNamespace(source=source, source_lengths=lengths, target=target)
    loss, metrics = model.loss(pairs)
    logits, _ = model(source, lengths, target[:, :-1])
    log_p = logits.log_softmax(-1)
    gold = target[:, 1:]
    terms = [-log_p[b, t, gold[b, t]] for b in range(2) for t in range(4) if gold[b, t] != 0]
    assert len(terms) == 6 and metrics["tokens"] == 6
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    assert metrics["nll"] == pytest.approx(float(loss.detach()))
    epsilon = 0.1
    model.config.label_smoothing = epsilon
    smoothed, _ = model.loss(pairs)
    uniform = [-log_p[b, t].mean() for b in range(2) for t in range(4) if gold[b, t] != 0]
    expected = (1 - epsilon) * torch.stack(terms).mean() + epsilon * torch.stack(uniform).mean()
    torch.testing.assert_close(smoothed, expected)


def test_scheduled_sampling_ramps_and_replaces_the_true_inputs() -> None:
    model = make_model(attention="general", scheduled_sampling=1.0, sampling_ramp=4)
    assert model.sampling_probability() == 0.0
    for _ in range(2):
        model.after_update()
    assert model.sampling_probability() == 0.5
    for _ in range(5):
        model.after_update()
    assert model.sampling_probability() == 1.0 and int(model.updates) == 7
    b = batch()
    other = b.target.clone()
    other[:, 1:-1] = (other[:, 1:-1] + 1 - 4) % (TARGET_VOCAB - 4) + 4  # different true tokens after <s>
    model.train()
    torch.manual_seed(5)
    first, _ = model(b.source, b.source_lengths, b.target[:, :-1])
    torch.manual_seed(5)
    second, _ = model(b.source, b.source_lengths, other[:, :-1])
    torch.testing.assert_close(first, second)  # every input after <s> was the model's own draw
    model.eval()  # no sampling at evaluation: the true inputs count again
    first, _ = model(b.source, b.source_lengths, b.target[:, :-1])
    second, _ = model(b.source, b.source_lengths, other[:, :-1])
    assert not torch.allclose(first[:, 1:], second[:, 1:])
    assert int(model.state_dict()["updates"]) == 7, "the ramp's position is saved with the weights"


def test_decoding_steps_continue_the_teacher_forced_run() -> None:
    """prime + step reproduce the log-probabilities teacher forcing gives for the same tokens."""
    model = make_model(attention="general").eval()
    b = batch()
    logits, _ = model(b.source, b.source_lengths, b.target[:, :-1])
    log_probs, state = model.prime(b.source, b.source_lengths)
    for t in range(1, 5):
        expected = logits[:, t - 1].clone()
        expected[:, [0, BOS_ID]] = -math.inf
        torch.testing.assert_close(log_probs, expected.log_softmax(-1))
        if t < 4:
            log_probs, state = model.step(b.target[:, t], state)
    assert state.attention is not None and state.attention.shape == (3, 5)


@pytest.mark.parametrize("attention", ["none", "general"])
def test_beam_of_one_is_greedy_and_batches_do_not_change_results(attention: str) -> None:
    model = make_model(seed=3, attention=attention).eval()
    for p in model.generator.parameters():
        p.data.mul_(3)  # peaked predictions: hypotheses that end
    generator = torch.Generator().manual_seed(4)
    sources = [torch.randint(2, SOURCE_VOCAB, (int(n),), generator=generator).tolist()
               for n in torch.randint(1, 8, (10,), generator=generator)]
    pairs = make_pair_batch(sources, [[BOS_ID, EOS_ID]] * 10)
    path = decoding.greedy(model, *model.prime(pairs.source, pairs.source_lengths), length=12, end_token=EOS_ID)
    ones = decoding.beam_search(model, *model.prime(pairs.source, pairs.source_lengths), beam_size=1,
                                max_length=12, end_token=EOS_ID)
    for row, (h,) in zip(path.tolist(), ones, strict=True):
        assert h.tokens == (row[: row.index(EOS_ID)] if EOS_ID in row else row)
    together = decoding.beam_search(model, *model.prime(pairs.source, pairs.source_lengths), beam_size=4,
                                    max_length=12, end_token=EOS_ID, n_best=3)
    for i, source in enumerate(sources):
        single = make_pair_batch([source], [[BOS_ID, EOS_ID]])
        alone = decoding.beam_search(model, *model.prime(single.source, single.source_lengths), beam_size=4,
                                     max_length=12, end_token=EOS_ID, n_best=3)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        assert [h.score for h in alone] == pytest.approx([h.score for h in together[i]], rel=1e-9)


@pytest.mark.parametrize("attention", ["general", "additive"])
def test_reorder_shares_the_memory_and_steps_as_with_a_copy_per_hypothesis(attention: str) -> None:
    model = make_model(attention=attention).eval()
    b = batch()
    _, state = model.prime(b.source, b.source_lengths)
    copied = state  # the reference: every tensor reordered, a memory row per hypothesis

    def step_both(index: list[int], tokens: list[int]) -> tuple[Tensor, Tensor]:
        nonlocal state, copied
        rows = torch.tensor(index)
        state = model.reorder(state, rows)
        copied = decoding.index_state(copied, rows, 0)
        ours, state = model.step(torch.tensor(tokens), state)
        theirs, copied = model.step(torch.tensor(tokens), copied)
        return ours, theirs

    for index, shared in [
        ([0, 0, 1, 1, 2, 2], 3),  # a beam of 2 over 3 inputs: the memory is not copied
        ([1, 0, 2, 3, 5, 5], 3),  # within each input's block: still shared
        ([0, 1, 4, 4], 2),  # the second input leaves the search
        ([3, 0, 1, 2], 4),  # not blocks of one input each: a memory row per hypothesis
        ([1, 1, 2], 3),
    ]:
        ours, theirs = step_both(index, [4 + i % 5 for i in range(len(index))])
        assert state.memory is not None and state.memory.shape[0] == shared
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
        torch.testing.assert_close(state.attention, copied.attention, rtol=0, atol=1e-12)
    unchanged = model.reorder(state, torch.arange(3))
    assert unchanged.memory is state.memory and unchanged.keys is state.keys


def test_decoding_never_emits_padding_or_start() -> None:
    model = make_model(attention="general").eval()
    with torch.no_grad():
        model.generator.bias[0] = 50.0
        model.generator.bias[BOS_ID] = 50.0
    b = batch()
    log_probs, _ = model.prime(b.source, b.source_lengths)
    assert bool((log_probs[:, [0, BOS_ID]] == -math.inf).all())
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, dtype=torch.float64))


def test_bf16_training_keeps_float32_states() -> None:
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(SOURCE_VOCAB, TARGET_VOCAB, embedding=8, hidden=8, attention="general"))
    b = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model.loss(b)
        state = model.encode(b.source, b.source_lengths)
        _, after = model.decode_step(b.target[:, 0], state)
    loss.backward()
    assert loss.dtype == torch.float32 and math.isfinite(float(loss.detach()))
    assert after.feed is not None and after.feed.dtype == torch.float32
    assert all(part.dtype == torch.float32 for layer in after.rnn for part in layer)


@pytest.mark.parametrize(("options", "message"), [
    ({"attention": "dot", "bidirectional": True}, "dot attention"),
    ({"attention": "luong"}, "unknown attention"),
    ({"tie_embeddings": True, "embedding": 4, "hidden": 5}, "tied embeddings"),
    ({"scheduled_sampling": 1.5}, "scheduled_sampling"),
    ({"cell": "tree"}, "unknown cell"),
])
def test_config_errors_are_one_line(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        make_model(**options)
    assert "\n" not in str(error.value)


def test_tied_embeddings_share_one_matrix() -> None:
    model = make_model(tie_embeddings=True, embedding=5, hidden=5)
    assert model.generator.weight is model.target_embedding.weight
    b = batch()
    loss, _ = model.loss(b)
    loss.backward()
    assert model.target_embedding.weight.grad is not None
    assert F.mse_loss(model.generator.weight, model.target_embedding.weight) == 0

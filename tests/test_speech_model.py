"""The CTC recogniser: its loss against a brute-force sum and a NumPy forward algorithm, decoding, the pyramid."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from unrolled.data.speech import SpeechBatch
from unrolled.decoding import beam_search, greedy
from unrolled.decoding.ngram import CharNgram, Fusion
from unrolled.features import FeatureConfig
from unrolled.models.speech import (
    BLANK,
    Alphabet,
    LocationAttention,
    PyramidEncoder,
    Recogniser,
    SpeechConfig,
    ctc_loss,
    needed_steps,
    pair_steps,
)


def collapse(path: tuple[int, ...]) -> list[int]:
    """CTC's many-to-one map: merge repeats, then drop blanks."""
    merged = [s for t, s in enumerate(path) if t == 0 or s != path[t - 1]]
    return [s for s in merged if s != BLANK]


def brute_force_nll(log_probs: np.ndarray, target: list[int]) -> float:
    """-log of the summed probability of every path that spells the target (every path enumerated)."""
    steps, symbols = log_probs.shape
    total = sum(np.exp(sum(log_probs[t, s] for t, s in enumerate(path)))
                for path in itertools.product(range(symbols), repeat=steps) if collapse(path) == target)
    return float(-np.log(total))


def forward_nll(log_probs: np.ndarray, target: list[int]) -> float:
    """Graves et al. 2006's forward recursion over the target with blanks around and between its symbols."""
    extended = [BLANK]
    for symbol in target:
        extended += [symbol, BLANK]
    alpha = np.full(len(extended), -np.inf)
    alpha[0] = log_probs[0, BLANK]
    alpha[1] = log_probs[0, extended[1]]
    for t in range(1, len(log_probs)):
        new = np.full(len(extended), -np.inf)
        for k, symbol in enumerate(extended):
            terms = [alpha[k]] + ([alpha[k - 1]] if k >= 1 else [])
            if k >= 2 and symbol != BLANK and symbol != extended[k - 2]:
                terms.append(alpha[k - 2])
            new[k] = np.logaddexp.reduce(terms) + log_probs[t, symbol]
        alpha = new
    return float(-np.logaddexp(alpha[-1], alpha[-2]))


def random_log_probs(batch: int, steps: int, symbols: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(batch, steps, symbols, generator=generator, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("target", [[1, 2], [1, 1], [2], [2, 1, 2]])
def test_ctc_loss_is_the_brute_force_sum_over_paths(target: list[int]) -> None:
    log_probs = random_log_probs(1, 5, 3, seed=len(target) + target[0])
    loss = ctc_loss(log_probs, torch.tensor([5]), torch.tensor([target]), torch.tensor([len(target)]))
    assert float(loss) == pytest.approx(brute_force_nll(log_probs[0].numpy(), target), rel=1e-9)


def test_ctc_loss_averages_the_forward_algorithm_over_a_padded_batch() -> None:
    log_probs = random_log_probs(3, 12, 6, seed=1)
    steps = torch.tensor([12, 9, 4])
    targets = [[1, 2, 2, 5], [3, 3, 3], [4]]
    padded = torch.zeros(3, 4, dtype=torch.int64)
    for b, row in enumerate(targets):
        padded[b, : len(row)] = torch.tensor(row)
    loss = ctc_loss(log_probs, steps, padded, torch.tensor([4, 3, 1]))
    expected = np.mean([forward_nll(log_probs[b, : int(steps[b])].numpy(), targets[b]) for b in range(3)])
    assert float(loss) == pytest.approx(expected, rel=1e-9)


def test_a_clip_too_short_for_its_transcript_is_an_error_not_infinity() -> None:
    targets = torch.tensor([[1, 1, 2], [1, 2, 3]])
    assert needed_steps(targets, torch.tensor([3, 2])).tolist() == [4, 2]  # a blank must part the two 1s
    with pytest.raises(ValueError, match=r"utterance 0 of the batch has 3 encoder steps, too few for its 3 characters"):
        ctc_loss(random_log_probs(2, 3, 4, seed=0), torch.tensor([3, 3]), targets, torch.tensor([3, 2]))


def test_alphabet_round_trip_and_unknown_characters() -> None:
    alphabet = Alphabet.build(["three one", "zero"])
    assert len(alphabet) == len(set("three onezero")) + 1
    ids = alphabet.encode("one three")
    assert BLANK not in ids and alphabet.decode([BLANK, *ids, BLANK]) == "one three"
    with pytest.raises(ValueError, match=r"the alphabet has no 'q', 'x' \(text 'zoqx'\)"):
        alphabet.encode("zoqx")


def test_each_pyramid_level_halves_the_steps_and_keeps_padding_out() -> None:
    h = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    paired, lengths = pair_steps(h, torch.tensor([5, 2]))
    assert paired.shape == (2, 3, 6) and lengths.tolist() == [3, 1]
    assert torch.equal(paired[0, 1], torch.cat([h[0, 2], h[0, 3]])) and (paired[0, 2, 3:] == 0).all()
    torch.manual_seed(0)
    encoder = PyramidEncoder(4, hidden=5, levels=2, dropout=0.0).eval()
    x = torch.randn(3, 13, 4)
    out, out_lengths = encoder(x, torch.tensor([13, 8, 1]))
    assert out.shape == (3, 4, 10) and out_lengths.tolist() == [4, 2, 1]  # 13 -> 7 -> 4, 8 -> 4 -> 2, 1 -> 1 -> 1
    assert (out[1, 2:] == 0).all() and (out[2, 1:] == 0).all()
    alone, _ = encoder(x[1:2, :8], torch.tensor([8]))
    torch.testing.assert_close(out[1, :2], alone[0])


def tone_word(word: str, generator: np.random.Generator) -> np.ndarray:
    """A made-up "speech": each letter a 0.1 s tone of its own pitch, with a little noise."""
    pitches = {"a": 300.0, "b": 1200.0, "c": 2500.0}
    time = np.arange(1600) / 16_000
    pieces = [np.sin(2 * np.pi * pitches[ch] * time) for ch in word]
    wave = np.concatenate(pieces) * 0.5 + 0.01 * generator.standard_normal(1600 * len(word))
    return wave.astype(np.float32)


def test_a_small_recogniser_learns_to_spell_tone_words() -> None:
    torch.manual_seed(0)
    generator = np.random.default_rng(0)
    words = ["ab", "ba", "cab", "acb"]
    alphabet = Alphabet.build(words)
    config = SpeechConfig(vocabulary=len(alphabet), features=FeatureConfig(bands=20, stack=2, stride=2), hidden=32,
                          levels=1, dropout=0.0, spec_augment=None)
    model = Recogniser(config)
    assert config.decoder == "ctc" and model.output is not None and not hasattr(model, "generator")
    batch = SpeechBatch.make([tone_word(w, generator) for w in words], [alphabet.encode(w) for w in words])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(80):
        loss, metrics = model.loss(batch)
        first = first if first is not None else float(loss.detach())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert metrics["characters"] == 10 and float(loss.detach()) < 0.1 * first
    assert metrics["ctc_per_char"] == pytest.approx(float(loss.detach()))
    assert [alphabet.decode(ids) for ids in model.greedy(batch.waves, batch.samples)] == words


def test_config_round_trips_through_json_and_refuses_bad_values() -> None:
    config = SpeechConfig(vocabulary=30, features=FeatureConfig(stack=4, stride=3))
    again = SpeechConfig(**config.to_json())
    assert again == config and isinstance(again.features, FeatureConfig)
    with pytest.raises(ValueError, match=r"blank and at least one character"):
        SpeechConfig(vocabulary=1)
    with pytest.raises(ValueError, match=r"dropout"):
        SpeechConfig(vocabulary=5, dropout=1.0)


def numpy_location_attention(layer: LocationAttention, query: np.ndarray, memory: np.ndarray, mask: np.ndarray,
                             previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """e_j = w^T tanh(W_q s + W_k h_j + b + W_f (F * alpha)_j), softmax over the real j, c = sum_j alpha_j h_j;
    the convolution written out as a sum over the filter taps, zero outside the sequence."""
    w_q, w_k, b = (p.detach().double().numpy() for p in (layer.query_layer.weight, layer.memory_layer.weight,
                                                         layer.memory_layer.bias))
    w = layer.v.weight.detach().double().numpy()[0]
    assert layer.conv is not None and layer.location_layer is not None
    taps = layer.conv.weight.detach().double().numpy()[:, 0, :]  # (K, r)
    w_f = layer.location_layer.weight.detach().double().numpy()  # (A, K)
    steps, half = memory.shape[0], taps.shape[1] // 2
    f = np.zeros((steps, taps.shape[0]))
    for j in range(steps):
        for k in range(taps.shape[1]):
            if 0 <= j + k - half < steps:
                f[j] += taps[:, k] * previous[j + k - half]
    energy = np.array([w @ np.tanh(w_q @ query + w_k @ memory[j] + b + w_f @ f[j]) for j in range(steps)])
    energy[~mask] = -np.inf
    weights = np.exp(energy - energy.max())
    weights /= weights.sum()
    return weights @ memory, weights


def test_location_aware_attention_matches_its_equations_in_numpy() -> None:
    torch.manual_seed(0)
    layer = LocationAttention(6, 4, 5, location=True, filters=3, width=5).double()
    query, memory = torch.randn(2, 6, dtype=torch.float64), torch.randn(2, 7, 4, dtype=torch.float64)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    previous = torch.softmax(torch.randn(2, 7, dtype=torch.float64), dim=-1) * mask
    with torch.no_grad():
        context, weights = layer(query, memory, layer.keys(memory), mask, previous)
    for b in range(2):
        expected_context, expected_weights = numpy_location_attention(
            layer, query[b].numpy(), memory[b].numpy(), mask[b].numpy(), previous[b].numpy())
        np.testing.assert_allclose(weights[b].numpy(), expected_weights, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(context[b].numpy(), expected_context, rtol=1e-10)
    assert (weights[1, 4:] == 0).all()
    with torch.no_grad():
        moved = layer(query, memory, layer.keys(memory), mask, torch.roll(previous, 1, dims=1) * mask)[1]
    assert not torch.allclose(moved, weights)  # the last step's weights matter; content attention would not see them


def attention_recogniser(decoder: str, alphabet: Alphabet, attention: str = "location") -> Recogniser:
    config = SpeechConfig(vocabulary=len(alphabet), features=FeatureConfig(bands=20, stack=2, stride=2), hidden=32,
                          levels=1, dropout=0.0, spec_augment=None, decoder=decoder, attention=attention,
                          decoder_hidden=32, embedding=8, filters=4, width=5, label_smoothing=0.0)
    return Recogniser(config)


def test_teacher_forcing_scores_the_transcript_as_stepping_does() -> None:
    torch.manual_seed(1)
    alphabet = Alphabet.build(["abc"])
    model = attention_recogniser("attention", alphabet).eval()
    generator = np.random.default_rng(1)
    batch = SpeechBatch.make([tone_word("abca", generator), tone_word("b", generator)],
                             [alphabet.encode("abca"), alphabet.encode("b")])
    with torch.no_grad():
        h, steps = model.encode(batch.waves, batch.samples)
        loss, count = model.attention_loss(h, steps, batch.targets, batch.target_lengths)
        total = 0.0
        for b, text in enumerate(["abca", "b"]):
            log_probs, state = model.prime(batch.waves[b : b + 1, : int(batch.samples[b])], batch.samples[b : b + 1])
            for symbol in [*alphabet.encode(text), BLANK]:  # y_1 .. y_U, then </s> (id 0)
                total -= float(log_probs[0, symbol])
                log_probs, state = model.step(torch.tensor([symbol]), state)
    assert count == 4 + 1 + 1 + 1
    assert float(loss) == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize(("decoder", "attention"), [("attention", "location"), ("joint", "content")])
def test_a_small_recogniser_learns_to_spell_with_attention(decoder: str, attention: str) -> None:
    torch.manual_seed(0)
    generator = np.random.default_rng(0)
    words = ["ab", "ba", "cab", "acb"]
    alphabet = Alphabet.build(words)
    model = attention_recogniser(decoder, alphabet, attention)
    assert (model.output is not None) == (decoder == "joint")
    batch = SpeechBatch.make([tone_word(w, generator) for w in words], [alphabet.encode(w) for w in words])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        loss, metrics = model.loss(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert ("ctc_per_char" in metrics) == (decoder == "joint") and metrics["attention_per_char"] < 0.05
    if decoder == "joint":
        expected = 0.3 * metrics["ctc_per_char"] + 0.7 * metrics["attention_per_char"]
        assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert metrics["loss_per_char"] == pytest.approx(float(loss.detach()), rel=1e-6)  # the loss trained, logged
    model.eval()
    with torch.no_grad():
        log_probs, state = model.prime(batch.waves, batch.samples)
        tokens = greedy(model, log_probs, state, length=6, end_token=BLANK)
        log_probs, state = model.prime(batch.waves, batch.samples)
        found = beam_search(model, log_probs, state, beam_size=3, max_length=6, end_token=BLANK)
    spelled = [alphabet.decode(row[: row.index(BLANK)] if BLANK in row else row) for row in tokens.tolist()]
    assert spelled == words
    assert [alphabet.decode(best[0].tokens) for best in found] == words


def ctc_nll(log_probs: np.ndarray, target: list[int]) -> float:
    """-log p_CTC(target): the NumPy forward recursion; the empty transcript is the all-blank path."""
    return float(-log_probs[:, BLANK].sum()) if not target else forward_nll(log_probs, target)


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_joint_decoding_picks_the_attention_hypothesis_of_the_best_mixed_score(weight: float) -> None:
    from unrolled.apps.transcriber import Transcriber, character_limit

    torch.manual_seed(0)
    alphabet = Alphabet.build(["abc"])
    model = attention_recogniser("joint", alphabet).eval()  # untrained: its hypotheses differ a lot
    transcriber = Transcriber(model, alphabet, None, max_seconds=60.0)
    assert transcriber.decoders == ("attention", "ctc", "joint")
    wave = tone_word("abca", np.random.default_rng(2))
    output = transcriber.transcribe([wave], beam=4, decoder="joint", ctc_weight=weight)[0]
    batch = SpeechBatch.make([wave], [[]])
    with torch.no_grad():
        log_probs, state = model.prime(batch.waves, batch.samples)
        ctc = model.ctc_head(state.memory)[0].double().numpy()  # (S, V)
        found = beam_search(model, log_probs, state, beam_size=4, end_token=BLANK, length_penalty=1.0, n_best=4,
                            max_length=character_limit(len(wave)))[0]
    assert len({tuple(h.tokens) for h in found}) == 4
    mixed = [(1 - weight) * h.score - weight * ctc_nll(ctc, h.tokens) for h in found]
    best = max(range(4), key=lambda n: (mixed[n], -n))
    assert output.decoder == "joint" and output.text == alphabet.decode(found[best].tokens)
    assert output.score == pytest.approx(mixed[best], rel=1e-5)
    lm = CharNgram.fit([alphabet.encode(t) for t in ("abca", "a", "aa")], vocabulary=len(alphabet), order=3)
    fused = transcriber.transcribe([wave], beam=4, decoder="joint", ctc_weight=weight, fusion=Fusion(lm, 0.5, 0.0))
    assert fused[0].decoder == "joint" and fused[0].score is not None  # the fused beam, rescored the same way
    with pytest.raises(ValueError, match=r"the CTC weight of joint decoding must lie in \[0, 1\], got 1.5"):
        transcriber.transcribe([wave], beam=4, decoder="joint", ctc_weight=1.5)


def test_encoder_steps_counts_what_the_encoder_returns() -> None:
    config = SpeechConfig(vocabulary=5, features=FeatureConfig(bands=20, stack=3, stride=2), hidden=8, layers=2,
                          levels=2, spec_augment=None)
    model = Recogniser(config).eval()
    samples = torch.tensor([16_000, 12_345, 1_601, 400])
    waves = torch.randn(4, 16_000) * (torch.arange(16_000) < samples[:, None])
    with torch.no_grad():
        _, steps = model.encode(waves, samples)
    assert steps.tolist() == config.encoder_steps(samples).tolist()
    with pytest.raises(ValueError, match=r"unknown decoder 'rnnt'"):
        SpeechConfig(vocabulary=5, decoder="rnnt")
    with pytest.raises(ValueError, match=r"width odd"):
        SpeechConfig(vocabulary=5, width=4)


def test_the_spellers_one_step_kernel_is_its_lstm_cell() -> None:
    torch.manual_seed(3)
    model = attention_recogniser("attention", Alphabet.build(["abc"]))
    lstm = model.decoder.cell(0)
    assert lstm.fused_mode == "LSTM"
    x = torch.randn(5, lstm.input_size, dtype=torch.float64)
    state = (torch.randn(5, lstm.hidden_size, dtype=torch.float64), torch.randn(5, lstm.hidden_size,
                                                                               dtype=torch.float64))
    lstm.double()
    ours, (h, c) = lstm(x, state)
    theirs = torch.lstm_cell(x, state, lstm.weight_ih, lstm.weight_hh, lstm.bias_ih, lstm.bias_hh)
    torch.testing.assert_close(theirs[0], h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(theirs[1], c, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours, h)

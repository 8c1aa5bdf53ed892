"""DRAM's sensor, reward and losses by known answers, and both readers learning a task made on the spot."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from unrolled.models.glimpse import (
    END,
    IGNORE,
    DigitCNN,
    DigitCNNConfig,
    GlimpseConfig,
    Glimpses,
    glimpse_patches,
    read_reward,
    reward_to_go,
    symbol_labels,
)


def test_the_sensor_crops_exactly_and_averages_the_wider_scales() -> None:
    image = torch.arange(64, dtype=torch.float64).view(1, 1, 8, 8)
    centre = torch.zeros(1, 2, dtype=torch.float64)  # the middle: between pixels 3 and 4
    patches = glimpse_patches(image, centre, size=2, scales=2)
    torch.testing.assert_close(patches[0, 0], image[0, 0, 3:5, 3:5])
    wide = image[0, 0, 2:6, 2:6]  # 4 x 4 averaged in 2 x 2 blocks
    torch.testing.assert_close(patches[0, 1], wide.view(2, 2, 2, 2).permute(0, 2, 1, 3).mean(dim=(2, 3)))
    corner = glimpse_patches(image, torch.tensor([[-1.0, -1.0]], dtype=torch.float64), size=2, scales=1)
    torch.testing.assert_close(corner[0, 0], torch.tensor([[0.0, 0.0], [0.0, 0.0 + image[0, 0, 0, 0]]]))
    shifted = glimpse_patches(image, torch.tensor([[0.0, 0.5]], dtype=torch.float64), size=2, scales=1)
    torch.testing.assert_close(shifted[0, 0], image[0, 0, 3:5, 5:7])  # x + 0.5 = 2 pixels to the right


def test_labels_and_reward_count_the_symbols_read_before_the_first_mistake() -> None:
    labels = symbol_labels([[3, 1], [7], []], symbols=4)
    assert labels.tolist() == [[3, 1, END, IGNORE], [7, END, IGNORE, IGNORE], [END, IGNORE, IGNORE, IGNORE]]
    guesses = torch.tensor([[3, 2, END, 5], [7, END, 1, 1], [4, END, END, END]])
    logits = torch.nn.functional.one_hot(guesses, 11).float()
    assert read_reward(logits, labels).tolist() == pytest.approx([1 / 3, 1.0, 0.0])
    with pytest.raises(ValueError, match="string 0 has 4 digits; this model reads at most 3"):
        symbol_labels([[1, 2, 3, 4]], symbols=4)


def test_reward_to_go_credits_each_glimpse_with_the_symbols_named_after_it() -> None:
    labels = symbol_labels([[3, 1], [7]], symbols=3)  # [3, 1, END], [7, END, IGNORE]
    guesses = torch.tensor([[3, 1, 4], [7, END, 2]])  # the first misses its END; the second is read whole
    logits = torch.nn.functional.one_hot(guesses, 11).float()
    to_go = reward_to_go(logits, labels, per_symbol=2)
    # string 1: symbols right before the first mistake: 3 and 1 of 3; glimpses 0, 1 name symbol 0 onwards (2/3),
    # glimpses 2, 3 name symbol 1 onwards (1/3), glimpses 4, 5 only the missed END (0)
    assert to_go[0].tolist() == pytest.approx([2 / 3, 2 / 3, 1 / 3, 1 / 3, 0, 0])
    assert to_go[1].tolist() == pytest.approx([1, 1, 1 / 2, 1 / 2, 0, 0])
    torch.testing.assert_close(to_go[:, 0], read_reward(logits, labels))  # the whole string's reward


def test_guidance_pulls_the_means_towards_the_boxes_it_is_given() -> None:
    torch.manual_seed(0)
    config = GlimpseConfig(glimpse=4, scales=2, features=16, hidden=16, per_symbol=2, max_digits=2, context=(4, 8),
                           guide=3.0)
    model = Glimpses(config).train()
    images = torch.rand(2, 1, 16, 32)
    nan = float("nan")
    centres = torch.tensor([[[0.5, -0.5], [0.5, 0.5], [nan, nan]], [[-0.2, 0.1], [nan, nan], [nan, nan]]])
    batch = SimpleNamespace(images=images, labels=symbol_labels([[1, 2], [3]], 3), centres=centres)
    torch.manual_seed(5)
    loss, metrics = model.loss(batch)
    torch.manual_seed(5)
    unguided, _ = model.loss(SimpleNamespace(images=images, labels=batch.labels))
    torch.manual_seed(5)
    with torch.no_grad():
        _, _, means, _ = model(images)  # the same samples as the losses' (later means depend on them)
    target = centres.repeat_interleave(2, dim=1)  # glimpses (0, 1) look for symbol 0, (2, 3) for symbol 1
    known = ~target.isnan().any(-1)
    expected = ((means - target) ** 2).sum(-1)[known].mean()
    assert int(known.sum()) == 6 and metrics["guide"] == pytest.approx(float(expected), rel=1e-5)
    assert float((loss - unguided).detach()) == pytest.approx(3.0 * float(expected), rel=1e-4)


def test_training_samples_locations_and_reading_uses_the_mean() -> None:
    torch.manual_seed(0)
    model = Glimpses(GlimpseConfig(glimpse=4, scales=2, features=16, hidden=16, per_symbol=2, max_digits=2,
                                   context=(4, 8)))
    images = torch.rand(3, 1, 16, 32)
    batch = SimpleNamespace(images=images, labels=symbol_labels([[1, 2], [3], []], 3))
    logits, locations, means, baselines = model.train()(images)
    assert logits.shape == (3, 3, 11) and locations.shape == means.shape == (3, 6, 2) and baselines.shape == (3, 6)
    assert not torch.equal(locations, means) and bool((locations.abs() <= 1).all())
    model.eval()
    first, second = model(images), model(images)
    assert torch.equal(first[1], first[2]) and torch.equal(first[0], second[0])  # deterministic: l = mu
    model.train()
    loss, metrics = model.loss(batch)
    loss.backward()
    assert model.emit.weight.grad is not None and bool(model.emit.weight.grad.abs().sum() > 0)  # REINFORCE
    assert model.baseline.weight.grad is not None and model.context[0].weight.grad is not None
    assert metrics["tokens"] == 6 and 0 <= metrics["reward"] <= 1
    model.eval()
    with torch.no_grad():
        loss, _ = model.loss(batch)  # not training: the cross-entropy alone
        expected = torch.nn.functional.cross_entropy(model(images)[0].flatten(0, 1), batch.labels.flatten(),
                                                     ignore_index=IGNORE)
    assert float(loss) == pytest.approx(float(expected)) and math.isfinite(float(loss))


def two_squares(count: int, seed: int) -> SimpleNamespace:
    """16 x 16 images with a square on the left (digit 1) or right (digit 2), or both (the string "1 2")."""
    generator = torch.Generator().manual_seed(seed)
    kinds = torch.randint(0, 3, (count,), generator=generator)
    images = torch.zeros(count, 1, 16, 16)
    strings = []
    for b, kind in enumerate(kinds.tolist()):
        if kind in (0, 2):
            images[b, 0, 5:11, 1:7] = 1.0
        if kind in (1, 2):
            images[b, 0, 5:11, 9:15] = 1.0
        strings.append([[1], [2], [1, 2]][kind])
    return SimpleNamespace(images=images, labels=symbol_labels(strings, 3), strings=strings)


@pytest.mark.parametrize("kind", ["dram", "dram-conv", "cnn"])
def test_both_readers_learn_a_small_task(kind: str) -> None:
    torch.manual_seed(1)
    model: torch.nn.Module
    if kind.startswith("dram"):  # the widest patch (16 x 16) sees the whole image wherever it looks
        model = Glimpses(GlimpseConfig(glimpse=4, scales=3, features=32, hidden=32, per_symbol=2, max_digits=2,
                                       context=(8, 8), sensor="conv" if kind == "dram-conv" else "linear"))
    else:
        model = DigitCNN(DigitCNNConfig(height=16, width=16, channels=(8, 8), hidden=32, max_digits=2))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(200):
        batch = two_squares(32, seed=step)
        loss, _ = model.loss(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    test = two_squares(60, seed=10_000)
    read, _ = model.read(test.images)
    assert sum(r == s for r, s in zip(read, test.strings, strict=True)) >= 57

"""Checkpoints: round trips, exact resume, atomic saves under simulated crashes, clear errors on bad files."""

from __future__ import annotations

import inspect
import json
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from unrolled import checkpoint as ckpt
from unrolled.checkpoint import (
    CheckpointError,
    capture_rng_state,
    flatten_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unflatten_state,
)

V, E, H, B, T = 7, 6, 6, 3, 5  # vocabulary, embedding (= hidden, for tying), hidden, batch, time


class TinyLM(nn.Module):
    """Embedding -> LSTM -> dropout -> linear, with the output weight tied to the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, E)
        self.lstm = nn.LSTM(E, H, batch_first=True)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(H, V)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))  # (B, T, H)
        return self.head(self.drop(out))  # (B, T, V)


def train_steps(model: TinyLM, optimizer: torch.optim.Optimizer, steps: int) -> list[float]:
    """Steps on random batches drawn from torch's generator (so resuming needs the RNG state too)."""
    losses = []
    for _ in range(steps):
        tokens = torch.randint(0, V, (B, T + 1))  # (B, T+1)
        logits = model(tokens[:, :-1])  # (B, T, V)
        loss = nn.functional.cross_entropy(logits.reshape(-1, V), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def assert_same(a: Any, b: Any) -> None:
    """Exact equality of nested states, tensors included (dtype and values), lists and tuples kept apart."""
    if isinstance(a, dict):  # a state dict is an OrderedDict and comes back a dict, keys in another order
        assert isinstance(b, dict) and sorted(a, key=repr) == sorted(b, key=repr), (a, b)
        for key in a:
            assert_same(a[key], b[key])
        return
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


def trained(optimizer_name: str) -> tuple[TinyLM, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = TinyLM()
    if optimizer_name == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    train_steps(model, optimizer, 3)
    return model, optimizer


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("optimizer_name", ["adam", "sgd"])
def test_round_trip_model_config_optimizer(tmp_path: Path, optimizer_name: str) -> None:
    model, optimizer = trained(optimizer_name)
    config = {"kind": "char-lm", "model": {"hidden": H, "cell": "lstm"}, "vocabulary": list("helo"), "step": 3}
    state = {"optimizer": optimizer.state_dict(), "scheduler": {"best": float("inf"), "last_epoch": 3}}
    save_checkpoint(tmp_path / "run", model_state=model.state_dict(), config=config, training_state=state)
    loaded = load_checkpoint(tmp_path / "run", kind="char-lm")
    assert loaded.recovered_from is None
    assert loaded.config == config
    assert_same(loaded.model_state, model.state_dict())
    assert_same(loaded.training_state, state)
    fresh = TinyLM()
    fresh.load_state_dict(loaded.model_state)
    assert fresh.head.weight is fresh.embed.weight  # the tie survives (the fresh model ties them itself)
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no temp or aside folder left behind


def test_flatten_keeps_int_keys_tuples_and_odd_floats_apart() -> None:
    state = {0: {"a": torch.ones(2)}, "0": torch.zeros(1), "__x": (1, None, True), "f": [float("-inf"), 0.5]}
    tensors, tree = flatten_state(state)
    rebuilt = unflatten_state(tensors, json.loads(json.dumps(tree, allow_nan=False)))
    assert_same(rebuilt, state)
    with pytest.raises(TypeError, match="set"):
        flatten_state({"bad": {1, 2}})


def test_shared_and_noncontiguous_tensors_are_saved(tmp_path: Path) -> None:
    base = torch.arange(12.0).reshape(3, 4)
    state = {"w": base, "tied": base, "t": base.t(), "row": base[1]}
    save_checkpoint(tmp_path / "c", model_state=state, config={})
    assert_same(load_checkpoint(tmp_path / "c").model_state, {k: v.contiguous() for k, v in state.items()})


def test_rng_states_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.randn(3), np.random.randn(3), random.gauss(0, 1)  # leave NumPy with a cached Gaussian
    tensors, info = capture_rng_state()
    expected = (torch.rand(4), np.random.rand(4), np.random.randn(), random.random(), random.gauss(0, 1))
    save_checkpoint(tmp_path / "c", model_state={}, config={}, training_state={"rng": (tensors, info)})
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    restore_rng_state(*load_checkpoint(tmp_path / "c").training_state["rng"])
    again = (torch.rand(4), np.random.rand(4), np.random.randn(), random.random(), random.gauss(0, 1))
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


def test_resumed_training_continues_bit_for_bit(tmp_path: Path) -> None:
    model, optimizer = trained("adam")
    rng = capture_rng_state()
    save_checkpoint(tmp_path / "c", model_state=model.state_dict(), config={"kind": "char-lm", "step": 3},
                    training_state={"optimizer": optimizer.state_dict(), "rng": rng})
    uninterrupted = train_steps(model, optimizer, 3)

    torch.manual_seed(123)  # a different process state: everything must come from the checkpoint
    loaded = load_checkpoint(tmp_path / "c", kind="char-lm")
    fresh = TinyLM()
    fresh.load_state_dict(loaded.model_state)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=0.5)
    fresh_optimizer.load_state_dict(loaded.training_state["optimizer"])
    restore_rng_state(*loaded.training_state["rng"])
    assert train_steps(fresh, fresh_optimizer, 3) == uninterrupted


# ---------------------------------------------------------------- atomicity


class Crash(Exception):
    """A simulated kill in the middle of a save."""


def crash_at(monkeypatch: pytest.MonkeyPatch, k: int, *, kill: bool) -> list[int]:
    """Make the k-th call of os.replace / os.rename / os.fsync / the safetensors writer / rmtree raise Crash.

    With `kill`, every later call raises too: a killed process cleans nothing up.
    """
    calls = [0]

    def wrap(original: Any) -> Any:
        def crashing(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == k or (kill and calls[0] > k):
                raise Crash(f"call {k}")
            return original(*args, **kwargs)

        return crashing

    for owner, name in [(os, "replace"), (os, "rename"), (os, "fsync"), (shutil, "rmtree"),
                        (ckpt.safetensors.torch, "save_file")]:
        monkeypatch.setattr(owner, name, wrap(getattr(owner, name)))
    return calls


@pytest.mark.parametrize("kill", [False, True], ids=["error", "kill"])
@pytest.mark.parametrize("with_training", [False, True])
def test_a_crash_at_any_point_leaves_old_or_new_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      with_training: bool, kill: bool) -> None:
    old = {"w": torch.zeros(3)}, {"kind": "char-lm", "step": 1}
    new = {"w": torch.ones(3)}, {"kind": "char-lm", "step": 2}
    training = {"optimizer": {"state": {0: {"m": torch.full((3,), 2.0)}}}} if with_training else None
    k, completed, recovered = 0, False, 0
    while not completed:
        k += 1
        assert k < 50, "the save never completed"
        target = tmp_path / f"k{k}" / "run"
        save_checkpoint(target, model_state=old[0], config=old[1], training_state=training)
        with monkeypatch.context() as patch:
            calls = crash_at(patch, k, kill=kill)
            try:
                save_checkpoint(target, model_state=new[0], config=new[1], training_state=training)
                completed = calls[0] < k
            except Crash:
                pass
        loaded = load_checkpoint(target, kind="char-lm")
        assert (loaded.config, loaded.model_state["w"].tolist()) in [(old[1], [0.0] * 3), (new[1], [1.0] * 3)]
        if with_training:
            assert_same(loaded.training_state, training)
        recovered += loaded.recovered_from is not None
        if completed:
            assert loaded.config == new[1]
    assert k > 5  # every stage was hit: writes, fsyncs, renames, cleanup
    assert recovered == (2 if kill else 0)  # killed between the two renames (before or after the fsync)


def test_recovers_from_a_kill_between_the_two_renames(tmp_path: Path) -> None:
    target = tmp_path / "run"
    save_checkpoint(target, model_state={"w": torch.zeros(2)}, config={"step": 1})
    aside = tmp_path / ".run.old-0123456789ab"
    os.replace(target, aside)  # what a kill right after renaming the old checkpoint aside leaves
    loaded = load_checkpoint(target)
    assert loaded.recovered_from == aside and loaded.config == {"step": 1}
    partial = tmp_path / ".run.tmp-0123456789ab"  # a newer save killed before it wrote config.json
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"")
    assert load_checkpoint(target).recovered_from == aside
    save_checkpoint(target, model_state={"w": torch.ones(2)}, config={"step": 2})
    assert sorted(os.listdir(tmp_path)) == ["run"]  # a successful save clears the leftovers


# ---------------------------------------------------------------- bad input


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    save_checkpoint(folder, model_state={"w": torch.randn(64, 64)}, config={"kind": "char-lm"},
                    training_state={"step": torch.tensor(3.0)})
    return folder


def one_line_error(folder: Path, naming: str, **kwargs: Any) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(folder, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and naming in message, message
    return message


@pytest.mark.parametrize("name", ["model.safetensors", "training.safetensors"])
def test_truncated_or_garbage_safetensors(saved: Path, name: str) -> None:
    path = saved / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in one_line_error(saved, str(path))
    path.write_bytes(b"\x07garbage bytes, not safetensors" * 5)
    one_line_error(saved, str(path))
    path.write_bytes(data[:5])  # not even a whole header length
    one_line_error(saved, str(path))


def test_invalid_or_non_object_json(saved: Path) -> None:
    path = saved / "config.json"
    path.write_text('{"kind": "char-lm", ', encoding="utf-8")
    assert "not valid JSON" in one_line_error(saved, str(path))
    path.write_bytes(b"\xff\xfe\x00")
    one_line_error(saved, str(path))
    path.write_text("[1, 2]", encoding="utf-8")
    assert "not an object" in one_line_error(saved, str(path))


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_missing_file(saved: Path, name: str) -> None:
    (saved / name).unlink()
    assert "missing" in one_line_error(saved, str(saved / name))


def test_missing_training_file_is_no_training_state(saved: Path) -> None:
    (saved / "training.safetensors").unlink()
    assert load_checkpoint(saved).training_state is None


def test_missing_folder_and_a_file_instead(tmp_path: Path) -> None:
    assert "does not exist" in one_line_error(tmp_path / "nowhere", str(tmp_path / "nowhere"))
    (tmp_path / "file").write_text("x", encoding="utf-8")
    assert "not a folder" in one_line_error(tmp_path / "file", str(tmp_path / "file"))


def test_wrong_kind_names_both(saved: Path) -> None:
    message = one_line_error(saved, str(saved / "config.json"), kind="seq2seq")
    assert "'char-lm'" in message and "'seq2seq'" in message
    assert load_checkpoint(saved, kind="char-lm").config["kind"] == "char-lm"


def test_config_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not JSON-serialisable"):
        save_checkpoint(tmp_path / "c", model_state={}, config={"x": object()})
    assert not (tmp_path / "c").exists()


def test_no_pickle_anywhere(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = inspect.getsource(ckpt)
    for forbidden in ("import pickle", "pickle.", "torch.load(", "torch.save(", "np.load(", "eval(", "exec("):
        assert forbidden not in source, forbidden

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("something unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    assert_same(load_checkpoint(saved).training_state, {"step": torch.tensor(3.0)})

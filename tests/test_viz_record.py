"""Recording a char LM's states: equal to `Recurrent`'s trace, cell-major float16 memory maps, reused, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.viz_runs import TEXT, train_tiny_lm
from unrolled.apps.lm import LanguageModel
from unrolled.checkpoint import save_checkpoint
from unrolled.viz.record import Recording, make_streams, record_states


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_lm(tmp_path_factory.mktemp("viz-record"))


def traced(run: Path, text: str) -> dict[str, dict[str, torch.Tensor]]:
    """The trace of the whole text read as one stream from the zero state: "l0" -> name -> (N, H)."""
    trained = LanguageModel.load(run, device="cpu")
    model = trained.model
    with torch.inference_mode():
        ids = trained.vocabulary.encode(text)[None]
        _, _, trace = model.rnn(model.embed(ids), trace=True)
    return {layer: {name: v[0] for name, v in gates.items()} for layer, gates in trace.items()}


def test_one_stream_equals_the_trace(run: Path) -> None:
    text = TEXT[:300]
    recording = record_states(run, text, streams=1)
    assert recording.index.quantities == ["i", "f", "o", "c", "h"]  # the LSTM's, without the candidate g
    assert recording.folder.parent == run / "viz" and recording.text == text
    expected = traced(run, text)
    for layer in (0, 1):
        for quantity in recording.index.quantities:
            states = recording.states(layer, quantity)
            assert states.shape == (16, 300) and states.dtype == np.float16
            reference = expected[f"l{layer}"][quantity].T.numpy()  # (H, N)
            np.testing.assert_allclose(states, reference, atol=2e-3, rtol=2e-3)
            low, high = recording.index.ranges[f"l{layer}.{quantity}"]
            assert low == pytest.approx(float(states.min()), abs=1e-3)
            assert high == pytest.approx(float(states.max()), abs=1e-3)


def test_streams_record_each_segment_after_its_warmup(run: Path) -> None:
    text = TEXT[:200]
    recording = record_states(run, text, streams=3, warmup=20, quantities=["h"], chunk=16, force=True)
    assert (recording.index.streams, recording.index.warmup) == (3, 20)
    states = recording.states(1, "h")
    for begin, start, end in ((0, 0, 67), (47, 67, 134), (114, 134, 200)):  # segments of 67, read 20 earlier
        reference = traced(run, text[begin:end])["l1"]["h"].T.numpy()[:, start - begin :]
        np.testing.assert_allclose(states[:, start:end], reference, atol=2e-3)
    low, high = recording.index.ranges["l1.h"]  # over the recorded steps only: no warm-up, no padding
    assert (low, high) == pytest.approx((float(states.min()), float(states.max())), abs=1e-3)


def test_make_streams_pads_and_offsets() -> None:
    streams = make_streams(np.arange(1, 11), 3, 2)
    assert streams.begin.tolist() == [0, 2, 6] and streams.offset.tolist() == [0, 2, 2]
    assert streams.end.tolist() == [4, 8, 10]
    assert streams.ids.tolist() == [[1, 2, 3, 4, 0, 0], [3, 4, 5, 6, 7, 8], [7, 8, 9, 10, 0, 0]]


def test_a_finished_recording_is_reused(run: Path) -> None:
    first = record_states(run, TEXT[:120], quantities=["h"])
    stamp = (first.folder / "l0.h.f16").stat().st_mtime_ns
    again = record_states(run, TEXT[:120], quantities=["h"])
    assert again.folder == first.folder and (again.folder / "l0.h.f16").stat().st_mtime_ns == stamp
    assert json.loads((first.folder / "index.json").read_text())["characters"] == 120
    wider = record_states(run, TEXT[:120], quantities=["c"])  # recorded again, keeping h
    assert wider.folder == first.folder and wider.index.quantities == ["c", "h"]
    assert isinstance(Recording(first.folder).text, str)


def test_bad_input_is_one_clear_error(run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="never saw in training: '€'"):
        record_states(run, "To be €", streams=1)
    with pytest.raises(ValueError, match="no such run"):
        record_states(tmp_path / "nothing", "To be")
    with pytest.raises(ValueError, match="has no z"):
        record_states(run, "To be", quantities=["z"])
    with pytest.raises(ValueError, match="empty"):
        record_states(run, "")
    cnn = tmp_path / "cnn"
    save_checkpoint(cnn / "last", model_state={"w": torch.zeros(1)}, config={"kind": "classifier"})
    with pytest.raises(ValueError, match="'classifier' model"):
        record_states(cnn, "To be")
    with pytest.raises(ValueError, match="layer 5 does not exist"):
        record_states(run, TEXT[:120], quantities=["h"]).states(5, "h")


@pytest.mark.parametrize(("cell", "quantities"), [("gru", ["r", "z", "h"]), ("rnn", ["h"])])
def test_gru_and_rnn_runs_record_their_own_gates(cell: str, quantities: list[str], tmp_path: Path) -> None:
    run = train_tiny_lm(tmp_path, steps=2, cell=cell)
    recording = record_states(run, TEXT[:90], streams=1)
    assert recording.index.quantities == quantities and recording.index.cell == cell
    expected = traced(run, TEXT[:90])
    for quantity in quantities:
        np.testing.assert_allclose(recording.states(1, quantity), expected["l1"][quantity].T.numpy(), atol=2e-3)

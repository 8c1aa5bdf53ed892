"""Caption, glimpse and video runs exported: the graphs against eager torch (batch 1 and 8, within 1e-5; three
lengths, padded or not, for the video labeller), and the runtime's answers against the predictors', token for token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e '.[export]')")
Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed (pip install -e '.[vision]')")

from tests.cli_errors import one_error_line  # noqa: E402
from tests.export_runs import caption_run, glimpse_run, video_run, without_torch  # noqa: E402
from tests.test_export_parity import BATCHES, LENGTHS, TOLERANCE, largest_difference, some_lengths  # noqa: E402
from unrolled import runtime  # noqa: E402
from unrolled.cli import main  # noqa: E402
from unrolled.export import export_run, load_predictor  # noqa: E402
from unrolled.export.apps import EXPORTERS  # noqa: E402
from unrolled.export.graphs import exportable, to_onnx  # noqa: E402

CAPTION_SIZE, READER_SIZE, FRAME_SIZE = (16, 12), (16, 24), (12, 10)


def pictures(count: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3), dtype=np.uint8)


def sessions(name: str, predictor: Any) -> dict[str, tuple[Any, Any]]:
    graphs, _ = EXPORTERS[name](predictor)
    found = {}
    for graph in graphs:
        proto = to_onnx(exportable(graph.module), graph.args, graph.inputs, graph.outputs, graph.dynamic, graph.opset)
        found[graph.name] = (ort.InferenceSession(proto.SerializeToString()), graph.module.eval())
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vision")
    made = {"caption": caption_run(root / "caption", seed=1), "plain": caption_run(root / "plain", seed=2,
                                                                                    attention="none"),
            "dram": glimpse_run(root / "dram"), "cnn": glimpse_run(root / "cnn", seed=1, reader="cnn"),
            "video": video_run(root / "video", first_labelled=False)}
    return {**made, **{f"{name}-onnx": export_run(run, root / f"{name}-onnx") for name, run in made.items()}}


@pytest.mark.parametrize("attention", ["soft", "none"])
def test_caption_encoder_and_step_match_eager_torch(tmp_path: Path, attention: str) -> None:
    _, predictor = load_predictor(caption_run(tmp_path, attention=attention))
    found = sessions("caption", predictor)
    (encoder_session, encoder), (step_session, step) = found["encoder"], found["step"]
    generator = torch.Generator().manual_seed(3)
    for batch in BATCHES:
        images = torch.from_numpy(pictures(batch, CAPTION_SIZE, seed=batch))
        assert largest_difference(encoder_session, encoder, {"images": images}) < TOLERANCE
        with torch.no_grad():
            state = encoder(images)
        for k in (1, 3):  # k hypotheses per image, reading its features once
            rows = torch.arange(batch).repeat_interleave(k)
            hypotheses = {"h": state[0][rows] + 0.1 * torch.randn(len(rows), state[0].shape[1], generator=generator),
                          "c": state[1][rows]}
            memory = dict(zip(["features", "keys"], state[2:], strict=False))
            tokens = torch.randint(2, 12, (len(rows),), generator=generator)
            assert largest_difference(step_session, step, {"tokens": tokens, **hypotheses, **memory}) < TOLERANCE


@pytest.mark.parametrize("reader", ["dram", "cnn"])
def test_the_glimpse_readers_graph_matches_eager_torch(tmp_path: Path, reader: str) -> None:
    _, predictor = load_predictor(glimpse_run(tmp_path, reader=reader))
    session, module = sessions("glimpse", predictor)["model"]
    for batch in BATCHES:
        images = torch.from_numpy(pictures(batch, READER_SIZE, seed=batch))
        assert largest_difference(session, module, {"images": images}) < TOLERANCE


@pytest.mark.parametrize("options", [{}, {"model": "cnn"}, {"cell": "gru", "layers": 2}],
                         ids=["lstm", "cnn", "gru-stacked"])
def test_the_video_labellers_graph_matches_eager_torch(tmp_path: Path, options: dict[str, Any]) -> None:
    _, predictor = load_predictor(video_run(tmp_path, **options))
    session, module = sessions("video", predictor)["model"]
    generator = torch.Generator().manual_seed(4)
    for batch, steps, lengths in some_lengths(generator):
        frames = torch.randint(0, 256, (batch, steps, *FRAME_SIZE), dtype=torch.uint8, generator=generator)
        assert largest_difference(session, module, {"frames": frames, "lengths": lengths}) < TOLERANCE


@pytest.mark.parametrize("name", ["caption", "plain"])
@pytest.mark.parametrize("beam", [1, 4])
def test_the_runtimes_captions_equal_the_captioners(runs: dict[str, Path], name: str, beam: int) -> None:
    _, predictor = load_predictor(runs[name])
    exported = runtime.load(runs[f"{name}-onnx"])
    images = pictures(7, CAPTION_SIZE, seed=5)
    options = {"beam": beam, "n_best": min(beam, 3), "batch_size": 3}
    expected, got = predictor.caption(images, **options), exported.caption(images, **options)
    assert [[c.tokens for c in found] for found in got] == [[c.tokens for c in found] for found in expected]
    for mine, theirs in zip(got, expected, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            assert a.text == b.text and a.finished == b.finished and abs(a.score - b.score) < 1e-4


def test_the_runtime_reads_the_digits_and_the_glimpse_path_of_the_reader(runs: dict[str, Path]) -> None:
    images = pictures(9, READER_SIZE, seed=6)
    for name in ("dram", "cnn"):
        _, predictor = load_predictor(runs[name])
        expected, where = predictor.read(images, batch_size=4)
        got, path = runtime.load(runs[f"{name}-onnx"]).read(images, batch_size=4)
        assert got == expected
        assert (where is None) == (path is None) == (name == "cnn")
        if where is not None and path is not None:
            assert path.shape == tuple(where.shape) and np.abs(path - where.numpy()).max() < TOLERANCE


def test_the_runtime_labels_every_frame_as_the_labeller(runs: dict[str, Path]) -> None:
    _, predictor = load_predictor(runs["video"])
    generator = np.random.default_rng(7)
    clips = [generator.integers(0, 256, (steps, *FRAME_SIZE), dtype=np.uint8) for steps in (1, 4, 4, 11, 7, 2)]
    expected = predictor.label(clips, batch_size=2)
    assert runtime.load(runs["video-onnx"]).label(clips, batch_size=2) == expected
    assert all(row[0] == "-" for row in expected)  # training labelled no first frame


def test_cli_run_prints_what_predict_prints_and_the_runtime_imports_no_torch(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {"caption": [], "glimpse": [], "video": []}
    for k, image in enumerate(pictures(2, (20, 20), seed=8)):  # another size: both resize as they read
        files["caption"].append(str(tmp_path / f"c{k}.png"))
        Image.fromarray(image).save(files["caption"][-1])
    files["glimpse"] = files["caption"]
    frames = np.random.default_rng(9).integers(0, 256, (5, 14, 14), dtype=np.uint8)
    files["video"].append(str(tmp_path / "clip.gif"))
    Image.fromarray(frames[0]).save(files["video"][0], save_all=True,
                                    append_images=[Image.fromarray(f) for f in frames[1:]])
    for app, run, flags in (("caption", "caption", ["--beam", "3", "--n-best", "2"]), ("glimpse", "dram", []),
                            ("video", "video", [])):
        assert main([app, "predict", str(runs[run]), *files[app], *flags, "--json"]) == 0
        expected = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert main(["run", str(runs[f"{run}-onnx"]), *files[app], *flags, "--json"]) == 0
        got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(got) == len(expected) > 0
        assert json.dumps(rounded(got)) == json.dumps(rounded(expected))
    one_error_line(capsys, main(["run", str(runs["caption-onnx"]), *files["caption"], "--attention-map", "x.png"]),
                   "--attention-map is not in the runtime")
    one_error_line(capsys, main(["run", str(runs["dram-onnx"]), str(tmp_path / "none.png")]), "no such image")
    printed = without_torch(
        f"print(runtime.load({str(runs['caption-onnx'])!r}).predict({files['caption']!r})[0].captions[0].text)",
        f"print(runtime.load({str(runs['dram-onnx'])!r}).predict({files['glimpse']!r})[0].digits)",
        f"print(runtime.load({str(runs['video-onnx'])!r}).predict({files['video']!r})[0].labels)")
    assert len(printed) == 3


def rounded(value: Any) -> Any:
    """Floats to 4 decimals (scores and glimpse centres agree to float32 rounding), recursively."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def test_int8_and_torchscript(runs: dict[str, Path], tmp_path: Path) -> None:
    import onnx

    folder = export_run(runs["video"], tmp_path / "int8", quantize="int8")
    kinds = [node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node]
    assert "DynamicQuantizeLSTM" in kinds and "MatMulInteger" in kinds
    clips = [np.zeros((3, *FRAME_SIZE), dtype=np.uint8), np.full((5, *FRAME_SIZE), 200, dtype=np.uint8)]
    assert [len(row) for row in runtime.load(folder).label(clips)] == [3, 5]
    captions = runtime.load(export_run(runs["caption"], tmp_path / "c8", quantize="int8")).caption(
        pictures(2, CAPTION_SIZE), beam=2)
    assert len(captions) == 2
    _, predictor = load_predictor(runs["video"])
    traced = export_run(runs["video"], tmp_path / "ts", graphs="torchscript")
    with pytest.warns(DeprecationWarning, match="deprecated"):
        graph = torch.jit.load(str(traced / "model.pt"))
    for steps in LENGTHS:
        frames = torch.randint(0, 256, (2, steps, *FRAME_SIZE), dtype=torch.uint8)
        lengths = torch.tensor([steps, max(steps // 2, 1)])
        with torch.no_grad():
            expected = predictor.model(frames.float() / 255.0, lengths)
            assert (graph(frames, lengths) - expected).abs().max() < TOLERANCE

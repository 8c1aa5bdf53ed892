"""The variants benchmark: the table builds the right cells, runs learn, compile falls back, resume skips, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.cli_errors import one_error_line
from unrolled import native
from unrolled.cells import GRUCell, LSTMCell, RNNCell
from unrolled.cli import bench as cli_bench
from unrolled.cli import main
from unrolled.data.longrange import make_task
from unrolled.variants import suite as variants_suite
from unrolled.variants import train as variants_module
from unrolled.variants.suite import SuiteConfig, run_suite
from unrolled.variants.train import COMPILE_CHOICES, VARIANTS, RunResult, RunSpec, VariantNet, compiled, run

FUSED = {"rnn", "lstm", "lstm-fb0", "gru-cudnn"}
STEPS_TO_LEARN = 300


def cell_of(variant: str) -> Any:
    return VariantNet(make_task("order"), variant, 8).rnn.cell(0)


def total_forget_bias(cell: LSTMCell) -> torch.Tensor:
    return cell.block(cell.bias_ih, "f") + cell.block(cell.bias_hh, "f")  # type: ignore[operator]


def test_the_table_names_every_variant_of_the_issue() -> None:
    assert tuple(VARIANTS) == ("rnn", "lstm", "lstm-fb0", "nig", "nfg", "nog", "niaf", "noaf", "peepholes",
                               "cifg", "gru-cho", "gru-cudnn")
    for name in VARIANTS:
        model = VariantNet(make_task("order"), name, 8)
        assert model.fused == (name in FUSED), name


def test_the_table_maps_to_the_cells_gates() -> None:
    assert isinstance(cell_of("rnn"), RNNCell) and cell_of("rnn").nonlinearity == "tanh"
    assert cell_of("lstm").gates == ("i", "f", "g", "o") and not cell_of("lstm").peepholes
    assert torch.equal(total_forget_bias(cell_of("lstm")), torch.ones(8))
    assert torch.equal(total_forget_bias(cell_of("lstm-fb0")), torch.zeros(8))
    assert cell_of("nig").gates == ("f", "g", "o")
    assert cell_of("nfg").gates == ("i", "g", "o")
    assert cell_of("nog").gates == ("i", "f", "g")
    assert cell_of("cifg").gates == ("i", "g", "o") and cell_of("cifg").coupled
    assert cell_of("peepholes").weight_cf is not None
    gru = cell_of("gru-cho")
    assert isinstance(gru, GRUCell) and gru.variant == "cho" and cell_of("gru-cudnn").variant == "cudnn"


def traced(variant: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    cell = cell_of(variant)
    torch.manual_seed(0)
    x, state = torch.randn(4, cell.input_size) * 3, (torch.randn(4, 8), torch.randn(4, 8) * 3)
    with torch.no_grad():
        _, _, gates = cell.trace(x, state)
        return cell.project(x) + cell.weight_hh.matmul(state[0].t()).t() + cell.bias_hh, gates


def test_the_ablations_change_the_step_as_their_names_say() -> None:
    _, cifg = traced("cifg")
    torch.testing.assert_close(cifg["f"], 1 - cifg["i"])
    _, noaf = traced("noaf")
    torch.testing.assert_close(noaf["h"], noaf["o"] * noaf["c"])
    _, lstm = traced("lstm")
    torch.testing.assert_close(lstm["h"], lstm["o"] * torch.tanh(lstm["c"]))
    pre, niaf = traced("niaf")
    torch.testing.assert_close(niaf["g"], pre[:, 16:24])  # the candidate is the raw block g, no tanh
    assert float(niaf["g"].abs().max()) > 1


@pytest.mark.parametrize("variant, compile", [("lstm", "off"), ("cifg", "off"), ("cifg", "native"),
                                              ("gru-cudnn", "native")])
def test_a_short_run_learns_temporal_order_at_length_10(variant: str, compile: str) -> None:
    """A fixed number of updates, not of seconds, so that a busy machine cannot fail it."""
    task = make_task("order")
    result = run(task, RunSpec("order", variant, 10, 0, hidden=32), budget=0.0, steps=STEPS_TO_LEARN, compile=compile)
    assert result.score > 0.9, result
    assert result.engine == {"lstm": "fused", "cifg": compile.replace("off", "eager"), "gru-cudnn": "native"}[variant]


def test_runs_are_deterministic_by_seed_for_a_fixed_step_count(monkeypatch: pytest.MonkeyPatch) -> None:
    task = make_task("adding")
    spec = RunSpec("adding", "nog", 10, 1, hidden=8)
    first, again = (run(task, spec, budget=0.0) for _ in range(2))  # budget 0: exactly one step
    assert first.steps == again.steps == 1 and first.score == again.score and first.loss == again.loss


def test_a_step_budget_trains_exactly_that_many_updates_whatever_the_time() -> None:
    task = make_task("order")
    for variant in ("lstm", "cifg"):  # a fused and a transparent engine
        result = run(task, RunSpec("order", variant, 10, 0, hidden=8), budget=0.0, steps=7)
        assert result.steps == 7, (variant, result)


def test_a_suite_with_a_step_budget_skips_the_time_share_and_keeps_its_steps_on_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int | None] = []

    def fake(task: Any, spec: RunSpec, *, budget: float, compile: str, steps: int | None = None) -> RunResult:
        seen.append(steps)
        return RunResult(score=0.5, loss=1.0, steps=steps or 1, seconds=0.1, engine="eager")

    def no_timing(*_: Any) -> float:
        raise AssertionError("a step budget needs no evaluation timing")

    monkeypatch.setattr(variants_suite, "run", fake)
    monkeypatch.setattr(variants_suite, "evaluation_seconds", no_timing)
    out = tmp_path / "out"
    config = SuiteConfig(tasks=("order",), variants=("rnn", "lstm"), lengths=(10,), seeds=1, budget=0.0, steps=25)
    rows = run_suite(config, out, report=lambda _: None)
    assert seen == [25, 25] and [r["steps"] for r in rows] == ["25", "25"]
    assert json.loads((out / "config.json").read_text())["steps"] == 25
    other = SuiteConfig(tasks=("order",), variants=("rnn", "lstm", "cifg"), lengths=(10,), seeds=1, budget=0.0,
                        steps=50)
    with pytest.raises(ValueError, match=r"was run with steps 25, not 50: resume with the same --steps"):
        run_suite(other, out, resume=True, report=lambda _: None)


def test_compile_falls_back_to_eager_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    task = make_task("order")
    model = VariantNet(task, "cifg", 8)
    assert compiled(VariantNet(task, "lstm", 8), "on")[1] == "fused"

    def refuse(*_: Any, **__: Any) -> Any:
        raise RuntimeError("no compiler")

    monkeypatch.setattr(torch, "compile", refuse)
    assert compiled(model, "on") == (model, "eager (RuntimeError)")

    def fails_when_called(*_: Any, **__: Any) -> Any:
        def call(x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("backend failed")
        return call

    monkeypatch.setattr(torch, "compile", fails_when_called)
    result = run(task, RunSpec("order", "cifg", 10, 0, hidden=8), budget=0.0, compile="on")
    assert result.engine == "eager (AssertionError)" and result.steps == 1



def test_the_native_engine_trains_what_the_eager_one_does(monkeypatch: pytest.MonkeyPatch) -> None:
    task = make_task("order")
    spec = RunSpec("order", "gru-cho", 10, 0, hidden=8)
    eager_result = run(task, spec, budget=0.0, steps=3)
    native_result = run(task, spec, budget=0.0, steps=3, compile="native")
    assert (eager_result.engine, native_result.engine) == ("eager", "native")
    assert native_result.loss == pytest.approx(eager_result.loss, rel=1e-4)
    assert compiled(VariantNet(task, "lstm", 8), "native")[1] == "fused"
    monkeypatch.setattr(native, "unavailable", lambda: "RuntimeError: ninja: build stopped")
    model = VariantNet(task, "cifg", 8)
    assert compiled(model, "native") == (model, "eager (native: RuntimeError: ninja: build stopped)")


def test_the_cli_offers_the_compile_choices_the_suite_knows() -> None:
    assert cli_bench.COMPILE_CHOICES == COMPILE_CHOICES

def fake_run(calls: list[tuple[str, str]]) -> Any:
    def fake(task: Any, spec: RunSpec, *, budget: float, compile: str, steps: int | None = None) -> RunResult:
        calls.append((spec.variant, spec.task))
        return RunResult(score=0.5, loss=1.0, steps=steps or 1, seconds=budget, engine="eager")
    return fake


def test_resume_skips_finished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(variants_suite, "run", fake_run(calls))
    out = tmp_path / "out"
    config = SuiteConfig(tasks=("order",), variants=("rnn", "lstm"), lengths=(10,), seeds=2, budget=60)
    run_suite(config, out, report=lambda _: None)
    assert len(calls) == 4
    with pytest.raises(ValueError, match="exists: give another --out, or --resume"):
        run_suite(config, out, report=lambda _: None)
    calls.clear()
    more = SuiteConfig(tasks=("order",), variants=("rnn", "lstm", "cifg"), lengths=(10,), seeds=2, budget=60)
    rows = run_suite(more, out, resume=True, report=lambda _: None)
    assert calls == [("cifg", "order")] * 2 and len(rows) == 6
    with (out / "results.csv").open(newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 6
    assert "| cifg | 0.500 ± 0.000 |" in (out / "results.md").read_text()
    assert (out / "order.png").stat().st_size > 0
    calls.clear()
    wider = SuiteConfig(tasks=("order",), variants=("rnn", "lstm", "gru-cho"), lengths=(10,), seeds=2, budget=60,
                        hidden=128)
    with pytest.raises(ValueError, match=r"was run with hidden 64, not 128: resume with the same --hidden"):
        run_suite(wider, out, resume=True, report=lambda _: None)
    assert calls == []  # nothing trained, nothing mixed into results.csv
    (out / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"cannot read the resumed suite's settings"):
        run_suite(more, out, resume=True, report=lambda _: None)


def test_the_budget_leaves_room_for_the_slowest_engines_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    costs = {"lstm": 0.01, "rnn": 0.005, "nig": 0.2, "peepholes": 0.3, "gru-cho": 0.25, "gru-cudnn": 0.02}
    timed: list[tuple[str, str, int]] = []

    def fake(task: Any, spec: RunSpec) -> float:
        timed.append((spec.task, spec.variant, spec.length))
        return costs[spec.variant] * (2 if spec.task == "copy" else 1)

    monkeypatch.setattr(variants_suite, "evaluation_seconds", fake)
    tasks = {name: make_task(name) for name in ("order", "copy")}
    config = SuiteConfig(tasks=("order", "copy"), variants=tuple(costs), lengths=(10, 40), seeds=1, budget=60)
    assert variants_suite.run_budget(config, 6, tasks) == pytest.approx(10 - 0.6)
    per_task = ["lstm", "rnn", "peepholes", "gru-cudnn"]  # one per engine; peepholes: the most parameters
    assert sorted(timed) == sorted((t, v, 40) for t in ("order", "copy") for v in per_task)
    with pytest.raises(ValueError, match=r"less than one evaluation \(0.6s, peepholes\)"):
        variants_suite.run_budget(config, 120, tasks)


def test_findings_name_the_papers_and_ours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(task: Any, spec: RunSpec, *, budget: float, compile: str, steps: int | None = None) -> RunResult:
        score = {"rnn": 0.25, "nfg": 0.3}.get(spec.variant, 1.0) - 0.01 * spec.seed
        return RunResult(score=score, loss=1.0, steps=1, seconds=0.0, engine="eager")

    monkeypatch.setattr(variants_suite, "run", fake)
    config = SuiteConfig(tasks=("order",), variants=tuple(VARIANTS), lengths=(10, 20), seeds=3, budget=600)
    run_suite(config, tmp_path / "out", report=lambda _: None)
    text = (tmp_path / "out" / "results.md").read_text()
    assert "rnn - lstm = -0.750" in text and "nfg hurts significantly" in text
    assert "none is significantly better" in text and "no gap to close" in text


def cli(*args: str) -> int:
    return main(["bench", "variants", *args])


@pytest.mark.parametrize(("args", "fragments"), [
    (["--tasks", "adding,parity"], ["unknown task 'parity'", "adding, copy, order, charlm"]),
    (["--variants", "lstm,mgu"], ["unknown variant 'mgu'", "rnn, lstm, lstm-fb0"]),
    (["--budget", "0.001s", "--tasks", "order", "--variants", "lstm"], ["too small", "one evaluation"]),
    (["--lengths", "5"], ["at least 10"]),
    (["--budget", "soon"], ["cannot read 'soon' as a duration"]),
    (["--budget", "1m", "--steps", "10"], ["give --budget", "or --steps", "not both"]),
    (["--tasks", "charlm", "--text", "/nonexistent/t.txt"], ["not found: give --text FILE"]),
])
def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                               fragments: list[str]) -> None:
    one_error_line(capsys, cli(*args, "--out", str(tmp_path / "out")), *fragments)


def test_an_existing_out_without_resume_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_error_line(capsys, cli("--out", str(tmp_path)), "exists", "--resume")


def test_the_command_trains_writes_and_prints_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(variants_module, "EVAL_EXAMPLES", 64)
    out = tmp_path / "out"
    code = cli("--tasks", "order", "--variants", "rnn,lstm", "--lengths", "10", "--seeds", "1", "--budget", "4s",
               "--hidden", "8", "--out", str(out))
    printed = capsys.readouterr().out
    assert code == 0 and "Vanilla RNN fails at long lengths" in printed
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "order.png", "results.csv", "results.md"]


def test_quick_is_every_variant_on_the_three_tasks_within_its_budget() -> None:
    from unrolled.cli import build_parser
    from unrolled.cli.bench import suite_config

    config = suite_config(build_parser().parse_args(["bench", "variants", "--quick", "--out", "x"]))
    assert config.tasks == ("adding", "copy", "order") and config.variants == tuple(VARIANTS)
    assert len(config.grid()) == 72 and config.budget <= 240 and config.text is None
    full = suite_config(build_parser().parse_args(["bench", "variants", "--out", "x"]))
    assert len(full.grid()) == 324 and full.budget == 3600

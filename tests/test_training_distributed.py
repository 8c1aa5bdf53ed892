"""Two processes under torchrun train what one process does on the whole batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.training_fixtures import B, H, distributed_settings, lines, train
from unrolled.checkpoint import load_checkpoint


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with the gloo backend is not available in this torch build")
def test_two_processes_match_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    worker = Path(__file__).with_name("distributed_worker.py")
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
               str(tmp_path)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    single, model = train(tmp_path / "single", distributed_settings(), dropout=0.0)
    straight, resumed = load_file(tmp_path / "straight.safetensors"), load_file(tmp_path / "resumed.safetensors")
    for name, value in model.state_dict().items():
        assert torch.allclose(straight[name], value, atol=1e-6, rtol=0), name
        assert torch.equal(resumed[name], straight[name]), name  # a 2-process resume is exact too
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["straight"]["steps"] == single.steps == 6
    assert report["straight"]["best_step"] == single.best_step
    saved = load_checkpoint(tmp_path / "straight" / "last").training_state["data"]
    assert saved["world"] == 2 and len(saved["ranks"]) == 2
    first, second = (rank["hidden"][0] for rank in saved["ranks"])  # each rank's carried state, (1, B/2, H)
    assert first.shape == (1, B // 2, H) and not torch.equal(first, second)
    assert lines(tmp_path / "straight")[-1]["step"] == 6

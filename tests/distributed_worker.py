"""One process of the 2-process test in test_training_distributed.py; run as `torchrun --nproc_per_node 2 THIS OUT`.

1. "straight": 6 steps; the trainer starts and ends the process group itself.
2. "split": with a process group this script starts (the trainer must use it and leave it),
   3 steps, then a resume to 6.
Rank 0 writes the final parameters of both (OUT/straight.safetensors, OUT/resumed.safetensors)
and the results (OUT/report.json); the runs' folders are OUT/straight and OUT/split.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))

from training_fixtures import APP, distributed_settings, evaluate, make

from unrolled.training import Trainer, TrainResult, distributed_context


def run(folder: Path, *, resume: bool = False, **changes: object) -> tuple[TrainResult, dict[str, object]]:
    model, data = make(dropout=0.0)
    result = Trainer(model, data, distributed_settings(**changes), folder, evaluate=evaluate,
                     checkpoint_config=APP).fit(resume=resume)
    return result, {name: value.contiguous() for name, value in model.state_dict().items()}


def main(out: Path) -> None:
    rank, world, _ = distributed_context()
    straight, straight_parameters = run(out / "straight")
    assert not dist.is_initialized(), "the trainer should end the process group it started"

    dist.init_process_group("gloo", init_method=f"file://{out / 'store'}", rank=rank, world_size=world)
    run(out / "split", max_steps=3, decay_steps=6)
    resumed, resumed_parameters = run(out / "split", resume=True)
    assert dist.is_initialized(), "the trainer should leave a process group it did not start"
    dist.destroy_process_group()

    if rank == 0:
        save_file(straight_parameters, out / "straight.safetensors")  # type: ignore[arg-type]
        save_file(resumed_parameters, out / "resumed.safetensors")  # type: ignore[arg-type]
        report = {name: {**asdict(result), "run_dir": str(result.run_dir)}
                  for name, result in (("straight", straight), ("resumed", resumed))}
        (out / "report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

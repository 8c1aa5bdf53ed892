"""Several processes: the torchrun context, DistributedDataParallel, and what the ranks share.

Under ``torchrun --nproc_per_node N`` (WORLD_SIZE > 1) each process trains on
``data.shard(rank, N)`` through DistributedDataParallel (gloo on CPU, nccl on
``cuda:LOCAL_RANK``); rank 0 evaluates, logs and writes checkpoints, and
broadcasts the validation loss and the max_time decision so every process
stops at the same step; every rank's data state is gathered into rank 0's
checkpoints. A process group the trainer finds is used and left; one it starts
it ends.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from typing import Any, cast

import safetensors.torch
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from unrolled.checkpoint import flatten_state, unflatten_state
from unrolled.devices import resolve_device
from unrolled.training.config import Trainable

LossFunction = Callable[[Any], tuple[Tensor, dict[str, float]]]


def distributed_context() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the environment torchrun sets; (0, 1, 0) in a plain process."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


NO_BUFFER_SYNC: dict[str, Any] = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)
"""DDP without syncing buffers at every forward (`broadcast_buffers` until torch renamed it, with a warning)."""


class LossOf(nn.Module):
    """The model seen through its loss, for DistributedDataParallel (which hooks into forward)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        return cast(Trainable, self.model).loss(batch)


def pack_state(state: Any) -> bytes:
    """A state `flatten_state` takes, as safetensors bytes (its JSON tree in the metadata): to send between ranks."""
    tensors, tree = flatten_state(state)
    storable = {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in tensors.items()}
    return safetensors.torch.save(storable, metadata={"tree": json.dumps(tree, allow_nan=False)})


def unpack_state(blob: bytes) -> Any:
    header_size = int.from_bytes(blob[:8], "little")
    tree = json.loads(json.loads(blob[8 : 8 + header_size])["__metadata__"]["tree"])
    return unflatten_state(safetensors.torch.load(blob), tree)


class Processes:
    """This process among the run's: rank, world, its device (`resolve_device` of the config's name;
    cuda:LOCAL_RANK in a distributed CUDA run), and the collective operations the trainer needs."""

    def __init__(self, device_name: str) -> None:
        self.rank, self.world, self.local_rank = distributed_context()
        device = resolve_device(device_name)
        self.owns_group = False
        if self.world > 1:
            if device.type == "cuda":
                device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
                self.owns_group = True
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = device

    def loss_function(self, model: nn.Module) -> LossFunction:
        """`model.loss`, through DistributedDataParallel when there are several processes."""
        if self.world == 1:
            return cast(Trainable, model).loss
        ids = [self.local_rank] if self.device.type == "cuda" else None
        return cast(LossFunction, DistributedDataParallel(LossOf(model), device_ids=ids, **NO_BUFFER_SYNC))

    def _collective_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def broadcast(self, value: float) -> float:
        """Rank 0's `value` on every rank."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self._collective_device())
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def gather(self, state: dict[str, Any]) -> list[Any]:
        """Every rank's data state, in rank order (on rank 0; other ranks get a list too)."""
        if self.world == 1:
            return [state]
        device = self._collective_device()
        blob = torch.frombuffer(bytearray(pack_state(state)), dtype=torch.uint8).to(device)
        size = torch.tensor([blob.numel()], dtype=torch.int64, device=device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        longest = max(int(s.item()) for s in sizes)
        padded = torch.zeros(longest, dtype=torch.uint8, device=device)
        padded[: blob.numel()] = blob
        blobs = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(blobs, padded)
        return [unpack_state(bytes(b[: int(s.item())].cpu().numpy())) for b, s in zip(blobs, sizes, strict=True)]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        """End the process group if this run started it."""
        if self.owns_group:
            dist.destroy_process_group()
            self.owns_group = False

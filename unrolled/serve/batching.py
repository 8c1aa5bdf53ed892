"""Requests that arrive together, answered by one batched pass: a queue per model.

The queue's worker takes the first waiting job, then gathers more until it holds
B jobs (``--max-batch``) or W milliseconds (``--max-wait-ms``) have passed since
it took the first; jobs whose `key` differs (other decoding options) are
answered by separate passes in arrival order. A pass runs on the model's own
thread, so the event loop keeps accepting requests while it computes, and the
next batch is gathered from what queued meanwhile: under load batches fill up,
and a lone request waits at most W. B = 1 answers one request at a time.

A pass returns one result per job, or an exception for a job that failed on its
own. When a whole pass fails with a client's error (`client_error`: one bad
input in the batch), each of its jobs is run again alone, so only the bad one
fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from unrolled.serve.errors import client_error

Job = TypeVar("Job")
Result = TypeVar("Result")


@dataclass
class BatchStats:
    """What the queue has done: passes run and jobs answered (their ratio is the mean batch)."""

    passes: int = 0
    jobs: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)


class Batcher(Generic[Job, Result]):
    """A queue of jobs for one model whose worker answers them in batches by ``run(jobs) -> results``.

    `key(job)` says which jobs may share a pass; `name` names the worker thread.
    """

    def __init__(self, run: Callable[[list[Job]], Sequence[Result | BaseException]], *, max_batch: int,
                 max_wait_ms: float, key: Callable[[Job], Hashable] = lambda job: None, name: str = "model") -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be positive and max_wait_ms 0 or more, got {max_batch}, {max_wait_ms}")
        self.run, self.key, self.max_batch, self.max_wait = run, key, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue[tuple[Job, asyncio.Future[Result]]] | None = None
        self.worker: asyncio.Task[None] | None = None
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"unrolled-serve-{name}")
        self.stats = BatchStats()

    async def submit(self, job: Job) -> Result:
        """The job's result, once a pass has answered it (its exception, if it failed)."""
        loop = asyncio.get_running_loop()
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.worker = loop.create_task(self.serve())
        future: asyncio.Future[Result] = loop.create_future()
        await self.queue.put((job, future))
        return await future

    async def gather(self) -> list[tuple[Job, asyncio.Future[Result]]]:
        """The next batch: the first job waited for, then up to B - 1 more within W of it."""
        assert self.queue is not None
        batch = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(batch) < self.max_batch:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except TimeoutError:
                break
        return [(job, future) for job, future in batch if not future.done()]  # a cancelled request is dropped

    async def serve(self) -> None:
        """The worker: gather a batch, answer it by passes of compatible jobs, forever."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.gather()
            groups: dict[Hashable, list[tuple[Job, asyncio.Future[Result]]]] = {}
            for job, future in batch:
                groups.setdefault(self.key(job), []).append((job, future))
            for group in groups.values():
                outcomes = await loop.run_in_executor(self.thread, self.answer, [job for job, _ in group])
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)

    def answer(self, jobs: list[Job]) -> list[Result | BaseException]:
        """One pass over `jobs` (on the model's thread); each job alone again if a client's input broke it."""
        self.stats.passes += 1
        self.stats.jobs += len(jobs)
        self.stats.largest = max(self.stats.largest, len(jobs))
        self.stats.sizes[len(jobs)] = self.stats.sizes.get(len(jobs), 0) + 1
        try:
            outcomes = list(self.run(jobs))
        except Exception as error:
            if len(jobs) > 1 and client_error(error) is not None:
                return [self.alone(job) for job in jobs]
            return [error] * len(jobs)
        if len(outcomes) != len(jobs):
            return [RuntimeError(f"a pass answered {len(outcomes)} of {len(jobs)} jobs")] * len(jobs)
        return outcomes

    def alone(self, job: Job) -> Result | BaseException:
        try:
            return self.run([job])[0]
        except Exception as error:
            return error

    async def close(self) -> None:
        """Stop the worker and its thread."""
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        self.thread.shutdown(wait=False, cancel_futures=True)


def stats_json(stats: BatchStats) -> dict[str, Any]:
    mean = stats.jobs / stats.passes if stats.passes else 0.0
    return {"passes": stats.passes, "jobs": stats.jobs, "mean_batch": mean, "largest_batch": stats.largest}

"""`unroll` compiled in chunks of steps, for cells without a fused kernel: one compile per cell, whatever T.

Handing a whole model to `torch.compile` traces `unroll`'s Python loop step by
step, so the graph and its compile time grow with T (6 to 134 s per shape on 2
cores at T = 20 to 50). Compiling one step instead leaves a compiled call per
step whose fixed cost (about 50 us here) outweighs the step's arithmetic at
H = 64. In between, `unroll_in_chunks` runs `unroll` itself, compiled, over
chunks of C = `CHUNK_STEPS` steps:

    out_k, state = unroll(cell, x[kC : (k+1)C], state)      k = 0 .. T/C - 1   (compiled)
    out = [out_0; out_1; ...]                                                   (T, B, H)

Each chunk, its input projection included, is one graph forward and one
backward. Every chunk has the same shapes, so a cell configuration compiles
once for a given (B, C, I, H) whatever T is, and the compiled `unroll` is
shared by every cell (dynamo guards on the cell's options, not on the object).
Steps past the last whole chunk, calls without gradient (evaluation) and traces
run in plain `unroll`, eagerly; masks (lengths) are split with the chunks.

Measured (`bench/variants_speed.py`, H = 64, B = 32, one core): a training
step runs 1.4x to 2.3x as fast as eager, 0.65x to 0.77x of the fused LSTM at
T = 20 and 0.46x to 0.57x at T = 100, short of the issue's 0.8x: the compiled
step costs about what oneDNN's fused step does, but calling compiled code
costs about 250 us per chunk. Compiling took 11 to 25 s per variant with
Inductor's cache cold, 5 to 9 s with it warm.

The function is `unroll`'s: the same outputs and gradients to float tolerance
(the compiled kernels round differently). `Recurrent.unroller = unroll_in_chunks`
selects it; `torch.compile` fails lazily, at the first call, so the caller keeps
an eager fallback (`unrolled.variants.train` does).

Dimensions: T time, B batch, I input features, H hidden units, C steps per chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import torch
from torch import Tensor

from unrolled.cells import Cell, Gates, State
from unrolled.recurrent import unroll

CHUNK_STEPS = 10
"""C, steps per compiled chunk; it divides the suite's lengths (10 to 100). Measured (CIFG training step over the
fused LSTM's, H = 64, B = 32, one busy core): at T = 20, C = 5 0.57x, 10 0.63-0.75x, 20 0.66-0.73x; at T = 50,
C = 10 0.58-0.64x, 25 0.69x (31 s to compile), 50 0.74x (102 s). Compiling grows with C."""
INDUCTOR_OPTIONS = {"cpp_wrapper": True}
"""The compiled graph calls its kernels from C++, not Python: per chunk of 10 steps, 0.62x the fused LSTM against
0.57x without (T=50, CIFG and Cho's GRU, two runs each on one busy core); compiling takes a few seconds more."""
RECOMPILE_LIMIT = 64
"""dynamo's graphs per compiled function (torch's default is 8): one per cell configuration and shape, and the
variants suite alone has 8 configurations over 2 input sizes. Past the limit dynamo would run eagerly, silently."""


@cache
def compiled_unroll() -> Callable[..., Any]:
    """`unroll` under torch.compile (static shapes, `INDUCTOR_OPTIONS`), made once per process, shared by all cells."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(unroll, dynamic=False, options=dict(INDUCTOR_OPTIONS))


def unroll_in_chunks(
    cell: Cell, x: Tensor, state: State, *, mask: Tensor | None = None, trace: bool = False
) -> tuple[Tensor, State, Gates | None]:
    """`unroll(cell, x, state, mask=mask, trace=trace)`, computed by the compiled `unroll` chunk by chunk.

    x (T, B, I), mask (T, B) or None; returns the outputs (T, B, H), the final state, and the trace (T, B, H)
    per gate with trace=True (that case, and calls without gradient, run eagerly).
    """
    if trace or x.shape[0] < CHUNK_STEPS or not torch.is_grad_enabled():
        return unroll(cell, x, state, mask=mask, trace=trace)
    run = compiled_unroll()
    state = needing_grad(state)
    x_chunks = x.split(CHUNK_STEPS)  # split, not x[a:b]: its backward is one cat, not T/C zero-filled copies
    masks = [None] * len(x_chunks) if mask is None else mask.split(CHUNK_STEPS)
    outputs = []
    for x_k, mask_k in zip(x_chunks, masks, strict=True):
        step = run if x_k.shape[0] == CHUNK_STEPS else unroll  # the last, shorter chunk eagerly: no second compile
        out, state, _ = step(cell, x_k, state, mask=mask_k)
        outputs.append(out)
    return torch.cat(outputs), state, None


def needing_grad(state: State) -> State:
    """The initial state marked as needing a gradient, like every later chunk's, so that one graph serves both.

    A part that already needs one is left as it is; the others are detached leaves (their gradient is dropped).
    """
    def mark(part: Tensor) -> Tensor:
        return part if part.requires_grad else part.detach().requires_grad_()

    return (mark(state[0]), mark(state[1])) if isinstance(state, tuple) else mark(state)

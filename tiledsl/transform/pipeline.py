"""The pass pipeline of each target, written out once.

`pipeline("cpu")` lists the passes in order; `run(func, target)` applies them, writing the
IR after each pass to `$TILEDSL_DUMP_IR/<kernel>/<NN>_<pass>.py` when that is set.
"""
from __future__ import annotations

import os
from typing import Callable, List, Tuple

from .. import ir
from ..target import Target
from .flatten_buffers import flatten_buffers
from .legalize_memory import legalize_memory
from .partition_edges import partition_edges
from .lower_pipelined import lower_pipelined_cpu
from .lower_tile_ops import lower_tile_ops
from .infer_layout import infer_layout
from .insert_barriers import insert_barriers
from .lower_gpu_ops import attach_scratch
from .partition_threads import partition_threads
from .plan_shared_memory import plan_shared_memory

__all__ = ["pipeline", "run"]

Pass = Callable[[ir.PrimFunc, Target], ir.PrimFunc]


def _verify_tile(f, t):
    return ir.verify(f)


def _verify_loops(f, t):
    return ir.verify(f, allow_tile_ops=False)


_CPU: List[Tuple[str, Pass]] = [
    ("verify", _verify_tile),
    ("infer_layout", infer_layout),
    ("verify_layouts", _verify_tile),
    ("lower_tile_ops", lower_tile_ops),
    ("verify_loops", _verify_loops),
    ("legalize_memory", lambda f, t: legalize_memory(f)),
    ("partition_edges", lambda f, t: partition_edges(f)),
    ("lower_pipelined_cpu", lambda f, t: lower_pipelined_cpu(f)),
    ("flatten_buffers", lambda f, t: flatten_buffers(f)),
]


# The GPU list: tile ops become per-element parallel loops (GEMM per its registry row), global
# accesses are guarded, then each parallel nest is split over the block's threads by its
# fragment's layout and barriers go where shared memory changes hands.
_CUDA: List[Tuple[str, Pass]] = [
    ("verify", _verify_tile),
    ("infer_layout", infer_layout),
    ("verify_layouts", _verify_tile),
    ("lower_tile_ops", lower_tile_ops),
    ("attach_scratch", attach_scratch),
    ("plan_shared_memory", plan_shared_memory),
    ("legalize_memory", lambda f, t: legalize_memory(f)),
    ("lower_pipelined", lambda f, t: lower_pipelined_cpu(f)),
    ("partition_threads", partition_threads),
    ("verify_loops", _verify_loops),  # after: the mma row addresses C's registers directly
    ("insert_barriers", insert_barriers),
    ("flatten_buffers", lambda f, t: flatten_buffers(f)),
]


def pipeline(target: "str | Target") -> List[Tuple[str, Pass]]:
    """The ordered (name, pass) list for a target kind."""
    kind = Target.parse(target).kind if not isinstance(target, Target) else target.kind
    if kind == "cpu":
        return list(_CPU)
    if kind == "cuda":
        return list(_CUDA)
    raise ValueError(f"no pass pipeline for target {kind!r}")


def run(func: ir.PrimFunc, target: Target) -> ir.PrimFunc:
    dump = os.environ.get("TILEDSL_DUMP_IR")
    if dump:
        folder = os.path.join(dump, func.name)
        os.makedirs(folder, exist_ok=True)
        _write(folder, "00_input", func)
    for n, (name, p) in enumerate(pipeline(target), start=1):
        func = p(func, target)
        if dump:
            _write(folder, f"{n:02d}_{name}", func)
    return func


def _write(folder: str, stem: str, func: ir.PrimFunc) -> None:
    with open(os.path.join(folder, stem + ".py"), "w") as f:
        f.write(func.script())

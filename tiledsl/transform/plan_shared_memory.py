"""plan_shared_memory (GPU): afterwards every `T.Kernel` carries the place of each of its shared
tiles in the block's dynamic shared memory (`Kernel.smem`: name, byte offset, bytes), and no
block needs more than the target architecture lets one block have.

A kernel that cannot fit is a `LoweringError` at its `T.Kernel` line that names every shared
tile with its size, before any code exists; otherwise the launch fails at call time
("invalid argument"). Tiles are laid out in allocation order at 16-byte aligned offsets (the
widest vector access and `cp.async` need 16), and `codegen/cuda.py` renders these offsets.
The pass runs after `attach_scratch`, so the staging tiles the compiler adds (reductions)
count; passes after it must not add or resize shared tiles (codegen checks that they did not).
"""
from __future__ import annotations

import dataclasses
from typing import List, Tuple

from .. import ir
from ..errors import LoweringError
from ..ir import Kernel
from ..target import Target
from .flatten_buffers import flat_size

__all__ = ["plan_shared_memory", "shared_memory_limit", "SMEM_ALIGN"]

SMEM_ALIGN = 16

# The most dynamic shared memory one block may opt in to (cudaDevAttrMaxSharedMemoryPerBlockOptin;
# the CUDA programming guide's per-compute-capability table). Each SM keeps 1 KB of its shared
# memory for the system, hence 227 KB of Hopper's 228 KB.
_LIMITS = {
    "sm_70": 96 * 1024, "sm_72": 96 * 1024, "sm_75": 64 * 1024,
    "sm_80": 163 * 1024, "sm_86": 99 * 1024, "sm_87": 163 * 1024, "sm_89": 99 * 1024,
    "sm_90": 227 * 1024, "sm_100": 227 * 1024, "sm_103": 227 * 1024,
    "sm_120": 99 * 1024, "sm_121": 99 * 1024,
}
# An architecture not in the table gets what every CUDA GPU gives a block without opting in:
# a kernel that fits there is rejected nowhere it could run.
_DEFAULT_LIMIT = 48 * 1024


def shared_memory_limit(arch: str) -> int:
    """Bytes of shared memory one block may use on `arch` ("sm_90a" counts as "sm_90")."""
    return _LIMITS.get(arch.rstrip("af"), _DEFAULT_LIMIT)


def _layout(k: Kernel) -> List[Tuple[str, int, int, ir.Buffer]]:
    out, offset = [], 0
    for b in k.allocs:
        if b.scope != "shared":
            continue
        n = flat_size(b)
        if not isinstance(n, ir.Const):
            raise LoweringError(f"shared tile '{b.name}' has no size known at compile time", k.span)
        nbytes = n.value * b.dtype.itemsize
        out.append((b.name, offset, nbytes, b))
        offset += (nbytes + SMEM_ALIGN - 1) // SMEM_ALIGN * SMEM_ALIGN
    return out


def _too_big(k: Kernel, plan: list, total: int, limit: int, arch: str) -> LoweringError:
    tiles = sorted(plan, key=lambda t: -t[2])
    listed = ", ".join(f"'{name}' {tuple(int(s.value) for s in b.shape)} {b.dtype} = {nbytes} bytes"
                       for name, _, nbytes, b in tiles)
    return LoweringError(
        f"the block needs {total} bytes of shared memory, more than the {limit} bytes "
        f"({limit // 1024} KB) one block may have on {arch}: {listed}", k.span,
        hint="use smaller tiles (block sizes, num_stages), keep per-thread data in fragments, or "
             "walk a wide row in tiles (examples/softmax.py: online_softmax)")


def plan_shared_memory(func: ir.PrimFunc, target: Target) -> ir.PrimFunc:
    """Give each T.Kernel its shared-memory layout (`Kernel.smem`), or raise if it cannot fit."""
    limit = shared_memory_limit(target.arch)

    class _P(ir.StmtRewriter):
        def visit_Kernel(self, k: Kernel):
            plan = _layout(k)
            if not plan:
                return k
            _, offset, nbytes, _ = plan[-1]
            total = offset + (nbytes + SMEM_ALIGN - 1) // SMEM_ALIGN * SMEM_ALIGN  # what the launch asks for
            if total > limit:
                raise _too_big(k, plan, total, limit, target.arch)
            smem = tuple((name, off, n) for name, off, n, _ in plan)
            return k if smem == k.smem else dataclasses.replace(k, smem=smem)
    return _P()(func)

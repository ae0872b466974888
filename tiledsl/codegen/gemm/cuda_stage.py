"""Fragment operands of a GPU `T.gemm`, staged through shared memory.

FlashAttention's `T.gemm(P, V_s, O)` takes P from registers (a fragment). The GEMM rows read
their operands from shared memory, so a fragment operand is first written there: each thread
stores the elements it holds into a fresh shared tile (`insert_barriers` then places the
barrier before the GEMM reads it, and before the next write while the GEMM may still read).
That costs one shared round trip per call; taking A straight from registers (the mma / wgmma
RS forms, whose A layout is the previous GEMM's accumulator layout) is the faster path and
is not generated yet.
"""
from __future__ import annotations

import dataclasses

from ... import ir
from ...ir import Buffer, Gemm, Region
from ...transform.common import loop_nest

__all__ = ["stage_fragment_operands"]


def stage_fragment_operands(g: Gemm, namer) -> tuple:
    """(statements writing g's fragment operands to shared tiles, g reading those tiles)."""
    pre = []
    for attr in ("a", "b"):
        r: Region = getattr(g, attr)
        if r.buffer.scope != "fragment":
            continue
        extents = tuple(int(e.value) for e in r.matrix_extents(2))
        tag = namer("stage").name.replace("__", "_")
        tile = Buffer(f"{r.buffer.name}_{tag}", tuple(ir.const(n) for n in extents), r.buffer.dtype, "shared")
        vars_ = [namer("i") for _ in extents]
        load = ir.Load(r.buffer, r.index(tuple(vars_)), r.buffer.dtype)
        pre.append(loop_nest(vars_, extents, ir.Store(tile, tuple(vars_), load, span=g.span), span=g.span))
        g = dataclasses.replace(g, **{attr: Region.full(tile)})
    return pre, g

"""GPU lowerings of the tile ops whose CPU loops would read other threads' registers.

`T.reduce_*` on the GPU goes through shared memory: every thread writes the source elements
it holds into a scratch tile, the rows are reduced (each by one thread) into a second scratch
vector, and every thread that holds the destination reads the results back. The barriers
between the steps come from `insert_barriers`; the scratch tiles are attached to the block
by `attach_scratch`. (A warp-shuffle reduction within the threads that share a row is the
faster path: see docs/architecture.md.)
"""
from __future__ import annotations

import dataclasses

from .. import ir
from ..ir import Buffer, Kernel, Reduce
from .common import Namer, loop_nest

__all__ = ["lower_reduce_gpu", "attach_scratch"]

_MERGE = {"sum": "sum", "abssum": "sum", "max": "max", "absmax": "max", "min": "min"}


def lower_reduce_gpu(s: Reduce, namer: Namer, identity, combine) -> ir.Stmt:
    src, dst = s.src, s.dst
    shape = src.static_shape
    keep = [d for d in range(src.ndim) if d != s.dim]
    out_shape = tuple(shape[d] for d in keep) or (1,)
    dt = dst.dtype
    tag = namer("red").name.replace("__", "_")
    tile = Buffer(f"{src.name}_{tag}", tuple(ir.const(n) for n in shape), src.dtype, "shared")
    rows = Buffer(f"{dst.name}_{tag}", tuple(ir.const(n) for n in out_shape), dt, "shared")

    # 1. every thread puts the source elements it holds into shared memory
    v1 = [namer("i") for _ in shape]
    put = loop_nest(v1, shape, ir.Store(tile, tuple(v1), ir.Load(src, tuple(v1), src.dtype), span=s.span),
                    span=s.span)
    # 2. one thread per destination element reduces its row
    outer = [namer("i") for _ in keep] or [namer("i")]
    r = namer("r")
    idx = list(outer[:len(keep)])
    idx.insert(s.dim, r)
    acc = namer("acc", dt)
    x = ir.cast(ir.Load(tile, tuple(idx), src.dtype), dt)
    row = ir.seq(
        ir.Decl(acc, identity, span=s.span),
        ir.For(r, ir.const(0), ir.const(shape[s.dim]), "serial", ir.Assign(acc, combine(s.kind, acc, x),
                                                                       span=s.span), span=s.span),
        ir.Store(rows, tuple(outer), acc, span=s.span))
    reduce_rows = loop_nest(outer, out_shape, row, span=s.span)
    # 3. every thread holding the destination takes the results
    v3 = [namer("i") for _ in out_shape]
    dst_idx = tuple(v3) if dst.ndim == len(out_shape) else tuple(v3) + (ir.const(0),)
    value = ir.Load(rows, tuple(v3), dt)
    if not s.clear:
        value = combine(_MERGE[s.kind], ir.Load(dst, dst_idx, dt), value)
    take = loop_nest(v3, out_shape, ir.Store(dst, dst_idx, value, span=s.span), span=s.span)
    return ir.seq(put, reduce_rows, take)


def attach_scratch(func: ir.PrimFunc, target) -> ir.PrimFunc:
    """Add the shared buffers that lowerings introduced to their block's allocations."""
    class _A(ir.StmtRewriter):
        def visit_Kernel(self, k: Kernel):
            have = {b.name for b in k.allocs}
            extra = {}

            def visit(n):
                if isinstance(n, Buffer) and n.scope == "shared" and n.name not in have:
                    extra.setdefault(n.name, n)
            ir.walk(k.body, visit)
            if not extra:
                return k
            return dataclasses.replace(k, allocs=k.allocs + tuple(extra.values()))
    return _A()(func)

"""GPU lowerings of the tile ops whose CPU loops would read other threads' registers.

`T.reduce_*` of a fragment, for any layout of it, in four steps:
1. each thread combines the source elements it holds into its own partial value per output
   element (a `T.Parallel` nest over the source, so `partition_threads` gives every thread
   exactly its registers);
2. a warp all-reduce of those partials with shuffles (`codegen/cuda_warp.py`);
3. with more than one warp, lane 0 of each warp writes the warp's totals to a small shared
   scratch (warps x outputs) and every thread combines the warps' rows;
4. every thread holding a destination element takes it (combined with the old value unless
   `clear`).
Every thread then holds every total, whatever the destination's layout. The only shared
memory is step 3's scratch, a few hundred bytes, never the source tile.

`T.cumsum` of a fragment goes through a shared tile: the fragment is written there, each line
is scanned by one thread (the shared-tile lowering), and the result is read back.

`attach_scratch` declares the shared and per-thread buffers these lowerings introduce.
"""
from __future__ import annotations

import dataclasses

from .. import ir
from ..codegen.cuda_warp import allreduce_name, warp_allreduce
from ..ir import THREAD_X, Buffer, BufferPtr, CumSum, ExternCall, Kernel, Reduce
from .common import Namer, loop_nest

__all__ = ["lower_reduce_gpu", "stage_cumsum_gpu", "attach_scratch"]

_MERGE = {"sum": "sum", "abssum": "sum", "max": "max", "absmax": "max", "min": "min"}


def lower_reduce_gpu(s: Reduce, namer: Namer, threads: int, identity, combine) -> ir.Stmt:
    """See the module docstring; `identity(kind, dtype)` and `combine(kind, acc, x)` are the
    CPU lowering's, so both targets agree on start values and on abs."""
    src, dst = s.src, s.dst
    shape = src.static_shape
    keep = [d for d in range(src.ndim) if d != s.dim]
    out_shape = tuple(shape[d] for d in keep) or (1,)
    n_out = 1
    for n in out_shape:
        n_out *= n
    acc_t = ir.dtype("float32") if dst.dtype.is_narrow_float else dst.dtype
    merge = _MERGE[s.kind]
    tag = namer("red").name.replace("__", "_")
    part = Buffer(f"{dst.name}_{tag}_part", (ir.const(n_out),), acc_t, "local")

    def flat(idx):
        e = ir.const(0)
        for x, n in zip(idx, out_shape):
            e = e * n + x
        return e

    r = namer("r")
    init = ir.For(r, ir.const(0), ir.const(n_out), "unroll",
                  ir.Store(part, (r,), identity(s.kind, acc_t), span=s.span), span=s.span)
    v1 = [namer("i") for _ in shape]
    slot = (flat([v1[d] for d in keep]),)
    x = ir.cast(ir.Load(src, tuple(v1), src.dtype), acc_t)
    gather = loop_nest(v1, shape, ir.Store(part, slot, combine(s.kind, ir.Load(part, slot, acc_t), x),
                                           span=s.span), span=s.span)
    name = allreduce_name(merge, acc_t, threads)
    steps = [init, gather, ExternCall(name, (BufferPtr(part, ir.const(0)), ir.const(n_out)),
                                      warp_allreduce(merge, acc_t, threads), span=s.span)]
    warps = -(-threads // 32)
    if warps > 1:
        steps.extend(_across_warps(part, warps, merge, namer, (identity, combine), s.span))
    v3 = [namer("i") for _ in out_shape]
    dst_idx = tuple(v3) if dst.ndim == len(out_shape) else tuple(v3) + (ir.const(0),)
    value = ir.Load(part, (flat(v3),), acc_t)
    if not s.clear:
        value = combine(merge, ir.cast(ir.Load(dst, dst_idx, dst.dtype), acc_t), value)
    steps.append(loop_nest(v3, out_shape, ir.Store(dst, dst_idx, ir.cast(value, dst.dtype), span=s.span),
                           span=s.span))
    return ir.seq(*steps)


def _across_warps(part: Buffer, warps: int, merge: str, namer: Namer, ops: tuple, span) -> list:
    """Lane 0 of each warp publishes the warp's totals; every thread combines the warps'.
    `ops` is the (identity, combine) pair of `lower_reduce_gpu`."""
    identity, combine = ops
    n_out, acc_t = part.shape[0].value, part.dtype
    red = Buffer(f"{part.name}_warps", (ir.const(warps), ir.const(n_out)), acc_t, "shared")
    r, w, r2 = namer("r"), namer("w"), namer("r")
    publish = ir.If(ir.binop("==", THREAD_X % 32, 0), ir.For(
        r, ir.const(0), ir.const(n_out), "serial",
        ir.Store(red, (THREAD_X // 32, r), ir.Load(part, (r,), acc_t), span=span), span=span), None, span=span)
    acc = namer("acc", acc_t)
    total = ir.For(r2, ir.const(0), ir.const(n_out), "serial", ir.seq(
        ir.Decl(acc, identity(merge, acc_t), span=span),
        ir.For(w, ir.const(0), ir.const(warps), "unroll",
               ir.Assign(acc, combine(merge, acc, ir.Load(red, (w, r2), acc_t)), span=span), span=span),
        ir.Store(part, (r2,), acc, span=span)), span=span)
    return [publish, total]


def stage_cumsum_gpu(s: CumSum, namer: Namer) -> ir.Stmt:
    """`T.cumsum` with a fragment side, as shared-tile copies around a shared-tile cumsum."""
    shape = s.src.static_shape
    tag = namer("scan").name.replace("__", "_")
    tile = Buffer(f"{s.dst.name}_{tag}", tuple(ir.const(n) for n in shape), s.dst.dtype, "shared")

    def copy(src: Buffer, dst: Buffer) -> ir.Stmt:
        v = [namer("i") for _ in shape]
        load = ir.cast(ir.Load(src, tuple(v), src.dtype), dst.dtype)
        return loop_nest(v, shape, ir.Store(dst, tuple(v), load, span=s.span), span=s.span)
    scan = dataclasses.replace(s, src=tile, dst=tile)
    return ir.seq(copy(s.src, tile), scan, copy(tile, s.dst))


def attach_scratch(func: ir.PrimFunc, target) -> ir.PrimFunc:
    """Add the shared and per-thread buffers that lowerings introduced to their block's
    allocations."""
    class _A(ir.StmtRewriter):
        def visit_Kernel(self, k: Kernel):
            have = {b.name for b in k.allocs}
            extra = {}

            def visit(n):
                if isinstance(n, Buffer) and n.scope in ("shared", "local") and n.name not in have:
                    extra.setdefault(n.name, n)
            ir.walk(k.body, visit)
            if not extra:
                return k
            return dataclasses.replace(k, allocs=k.allocs + tuple(extra.values()))
    return _A()(func)

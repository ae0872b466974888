"""lower_tile_ops: afterwards no Copy / Fill / Reduce / CumSum / Gemm remains, only loops over elements.

Lowerings are a table keyed by node type; `T.gemm` is resolved per call by the GEMM registry
(`tiledsl.codegen.gemm`), which picks the implementation for the target and operands.
"""
from __future__ import annotations

from typing import Callable, Dict, Type

from .. import ir
from ..ir import Const, Copy, CumSum, Fill, Gemm, Reduce, StmtRewriter
from ..ir.stmt import reduce_identity
from ..target import Target
from .common import Namer, loop_nest

__all__ = ["lower_tile_ops", "register_lowering"]

_LOWERINGS: Dict[Type, Callable] = {}


def register_lowering(node_type: Type):
    def deco(fn):
        _LOWERINGS[node_type] = fn
        return fn
    return deco


def lower_tile_ops(func: ir.PrimFunc, target: Target) -> ir.PrimFunc:
    """Replace every tile op by loops over its elements (GEMM by its registered implementation)."""
    namer = Namer()

    class _Lower(StmtRewriter):
        def visit_Kernel(self, k: ir.Kernel):
            namer.block_threads = k.threads  # GPU lowerings that split work over the block read it
            return self.generic(k)

    # A lowering may return other tile ops (a GEMM that clears C returns a Fill): lower those too.
    for node_type, fn in _LOWERINGS.items():
        setattr(_Lower, "visit_" + node_type.__name__,
                lambda self, s, fn=fn: self.stmt(fn(s, target, namer)))
    return _Lower()(func)


@register_lowering(Copy)
def _copy(s: Copy, target: Target, namer: Namer) -> ir.Stmt:
    sd, dd = s.src.nonunit_dims(), s.dst.nonunit_dims()
    ref = s.dst if all(isinstance(s.dst.extents[d], Const) for d in dd) else s.src
    extents = [ref.extents[d] for d in (dd if ref is s.dst else sd)]
    vars_ = [namer("i") for _ in extents]
    src_idx, dst_idx = list(s.src.starts), list(s.dst.starts)
    for k, v in enumerate(vars_):
        src_idx[sd[k]] = src_idx[sd[k]] + v
        dst_idx[dd[k]] = dst_idx[dd[k]] + v
    load = ir.Load(s.src.buffer, tuple(src_idx), s.src.buffer.dtype)
    store = ir.Store(s.dst.buffer, tuple(dst_idx), ir.cast(load, s.dst.buffer.dtype), span=s.span,
                     atomic=s.atomic)
    return loop_nest(vars_, extents, store, span=s.span)


@register_lowering(Fill)
def _fill(s: Fill, target: Target, namer: Namer) -> ir.Stmt:
    vars_ = [namer("i") for _ in s.dst.extents]
    idx = tuple(st + v for st, v in zip(s.dst.starts, vars_))
    store = ir.Store(s.dst.buffer, idx, s.value, span=s.span)
    return loop_nest(vars_, s.dst.extents, store, span=s.span)


def _combine(kind: str, acc: ir.Expr, x: ir.Expr) -> ir.Expr:
    if kind in ("abssum", "absmax"):
        x = ir.call("abs", x)
    if kind in ("sum", "abssum"):
        return acc + x
    return ir.max_(acc, x) if kind in ("max", "absmax") else ir.min_(acc, x)


def _identity(kind: str, dt) -> ir.Expr:
    return ir.const(reduce_identity(kind, dt), dt)


@register_lowering(Reduce)
def _reduce(s: Reduce, target: Target, namer: Namer) -> ir.Stmt:
    if target.kind == "cuda":
        from .lower_gpu_ops import lower_reduce_gpu
        return lower_reduce_gpu(s, namer, namer.block_threads, _identity, _combine)
    src, dst = s.src, s.dst
    shape = src.static_shape
    outer = [namer("i") for d in range(src.ndim) if d != s.dim]
    r = namer("r")
    src_idx = list(outer)
    src_idx.insert(s.dim, r)
    dst_idx = tuple(outer) if dst.ndim == len(outer) else tuple(outer) + (ir.const(0),)
    dt = dst.dtype
    acc = namer("acc", dt)
    init = _identity(s.kind, dt) if s.clear else ir.Load(dst, dst_idx, dt)
    x = ir.cast(ir.Load(src, tuple(src_idx), src.dtype), dt)
    body = ir.seq(
        ir.Decl(acc, init, span=s.span),
        ir.For(r, ir.const(0), ir.const(shape[s.dim]), "serial",
               ir.Assign(acc, _combine(s.kind, acc, x), span=s.span), span=s.span),
        ir.Store(dst, dst_idx, acc, span=s.span),
    )
    extents = [shape[d] for d in range(src.ndim) if d != s.dim]
    return loop_nest(outer, extents, body, span=s.span)


@register_lowering(CumSum)
def _cumsum(s: CumSum, target: Target, namer: Namer) -> ir.Stmt:
    # One running sum per line along `dim`, in the dst type (float32 for 16-bit floats); every
    # element is read before it is written, so src and dst may be the same tile.
    if target.kind == "cuda" and "fragment" in (s.src.scope, s.dst.scope):
        # A line of a fragment is spread over threads' registers: scanned in a shared tile.
        from .lower_gpu_ops import stage_cumsum_gpu
        return stage_cumsum_gpu(s, namer)
    shape = s.src.static_shape
    n = shape[s.dim]
    outer = [namer("i") for d in range(len(shape)) if d != s.dim]
    r = namer("r")
    idx = list(outer)
    idx.insert(s.dim, ir.const(n - 1) - r if s.reverse else r)
    dt = s.dst.dtype
    acc_t = ir.dtype("float32") if dt.is_narrow_float else dt
    acc = namer("acc", acc_t)
    step = ir.seq(ir.Assign(acc, acc + ir.cast(ir.Load(s.src, tuple(idx), s.src.dtype), acc_t), span=s.span),
                  ir.Store(s.dst, tuple(idx), ir.cast(acc, dt), span=s.span))
    body = ir.seq(ir.Decl(acc, ir.const(0, acc_t), span=s.span),
                  ir.For(r, ir.const(0), ir.const(n), "serial", step, span=s.span))
    return loop_nest(outer, [shape[d] for d in range(len(shape)) if d != s.dim], body, span=s.span)


@register_lowering(Gemm)
def _gemm(s: Gemm, target: Target, namer: Namer) -> ir.Stmt:
    from ..codegen.gemm import resolve
    return resolve(s, target).lower(s, target, namer)

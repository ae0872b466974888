"""legalize_memory: afterwards no access to a global tensor can leave the tensor.

Each load from or store to a global buffer whose index is not provably in range (interval
analysis over the loop and block variables) is guarded: loads become `in_range ? A[...] : 0`
(so a ragged last tile reads zeros, which a GEMM's K tail needs), stores are skipped. Where
tiles divide the tensor the guards provably hold and are not emitted.
"""
from __future__ import annotations

from .. import ir
from ..ir import Const, For, Kernel, Load, Store, StmtRewriter
from ..ir.analysis import bound, loop_range, provably

__all__ = ["legalize_memory"]


def legalize_memory(func: ir.PrimFunc) -> ir.PrimFunc:
    """Guard every global access that the ranges of the surrounding loops do not prove safe."""
    return _Legalize()(func)


class _Legalize(StmtRewriter):
    def __init__(self):
        self.ranges: dict = {}

    def visit_For(self, s: For):
        self.ranges[s.var] = loop_range(s.start, s.extent, self.ranges)
        try:
            return self.generic(s)
        finally:
            del self.ranges[s.var]

    def visit_Kernel(self, s: Kernel):
        for v, g in zip(s.block_vars, s.grid):
            self.ranges[v] = loop_range(ir.const(0), g, self.ranges)
        try:
            return self.generic(s)
        finally:
            for v in s.block_vars:
                del self.ranges[v]

    def in_range(self, buffer: ir.Buffer, indices) -> ir.Expr:
        cond = ir.const(True)
        for i, n in zip(indices, buffer.shape):
            lo, _ = bound(i, self.ranges)
            if lo is None or lo < 0:
                cond = ir.logical_and(cond, ir.binop(">=", i, 0))
            upper = ir.binop("<", i, n)
            if provably(upper, self.ranges) is not True:
                cond = ir.logical_and(cond, upper)
        return cond

    def visit_Load(self, e: Load):
        if e.buffer.scope != "global":
            return e
        cond = self.in_range(e.buffer, e.indices)
        if isinstance(cond, Const) and cond.value:
            return e
        return ir.select(cond, e, ir.const(0, e.dtype))

    def visit_Store(self, s: Store):
        s = self.generic(s)
        if s.buffer.scope != "global":
            return s
        cond = self.in_range(s.buffer, s.indices)
        if isinstance(cond, Const) and cond.value:
            return s
        return ir.If(cond, s, None, span=s.span)

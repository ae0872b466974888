"""flatten_buffers: afterwards every buffer is 1-D and every access is a flat offset.

The offset comes from the buffer's layout when it has one (shared / fragment tiles after
layout inference) and is row-major otherwise, so swizzled and packed tiles are addressed
through the same `Layout` object that the layout algebra proves bijective.
"""
from __future__ import annotations

from .. import ir
import dataclasses

from ..ir import Buffer, Kernel, Load, Store, StmtRewriter

__all__ = ["flatten_buffers", "flat_size", "row_major_offset"]


def row_major_offset(shape, indices) -> ir.Expr:
    off = ir.const(0)
    for n, i in zip(shape, indices):
        off = off * n + i
    return off


def flat_size(buffer: Buffer) -> ir.Expr:
    if buffer.layout is not None:
        size = 1
        for n in buffer.layout.output_shape:
            size *= n
        return ir.const(size)
    size = ir.const(1)
    for n in buffer.shape:
        size = size * n
    return size


def flatten_buffers(func: ir.PrimFunc) -> ir.PrimFunc:
    """Rewrite N-d loads / stores as 1-d accesses at their layout's offset.

    Parameters keep their N-d shape (the host code checks it); the body sees 1-d buffers.
    """
    cache: dict = {}

    def flat(b: Buffer) -> Buffer:
        if b not in cache:
            cache[b] = Buffer(b.name, (flat_size(b),), b.dtype, b.scope)
        return cache[b]

    def offset(b: Buffer, idx) -> ir.Expr:
        if b.layout is not None:
            return ir.convert(b.layout.offset(*idx))
        return row_major_offset(b.shape, idx)

    class _F(StmtRewriter):
        def visit_Load(self, e: Load):
            return Load(flat(e.buffer), (offset(e.buffer, e.indices),), e.dtype)

        def visit_Store(self, s: Store):
            idx = tuple(self.expr(i) for i in s.indices)
            return Store(flat(s.buffer), (offset(s.buffer, idx),), self.expr(s.value), span=s.span,
                         atomic=s.atomic)

        def visit_Kernel(self, k: Kernel):
            k = self.generic(k)
            return dataclasses.replace(k, allocs=tuple(flat(b) for b in k.allocs))

    return _F()(func)

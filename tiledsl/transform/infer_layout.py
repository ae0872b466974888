"""infer_layout: afterwards every shared, fragment and local buffer carries a layout.

Decided in order of authority: the user's `T.annotate_layout` (already on the buffer when
the frontend made it), then what the GEMM implementation chosen for each `T.gemm` needs of its
operands (the CPU micro-kernel's packed panels, for instance; `T.copy` into those tiles then
lowers into the packing loop), and the identity for the rest. A GEMM implementation only
imposes a layout on a buffer nobody has fixed yet: its predicate refuses operands whose
layout it cannot read, so the registry falls back to one that can.
"""
from __future__ import annotations

from .. import ir
from ..errors import LoweringError
from ..ir import Buffer, Gemm
from ..layout import Layout
from ..target import Target

__all__ = ["infer_layout"]


def infer_layout(func: ir.PrimFunc, target: Target) -> ir.PrimFunc:
    """Give every on-chip buffer a Layout (annotations > GEMM requirements > identity)."""
    from ..codegen.gemm import resolve

    decided: dict = {}   # buffer name -> (layout, span that decided it)
    on_chip: dict = {}

    def visit(node):
        if isinstance(node, ir.Kernel):
            for b in node.allocs:
                on_chip[b.name] = b
                if b.layout is not None:
                    decided[b.name] = (b.layout, node.span)
    ir.walk(func.body, visit)

    gemms = []
    ir.walk(func.body, lambda n: gemms.append(n) if isinstance(n, Gemm) else None)
    for g in gemms:
        g = _with_layouts(g, decided)
        impl = resolve(g, target)
        wanted = getattr(impl, "layouts", lambda g, t: {})(g, target)
        for name, layout in wanted.items():
            prev = decided.get(name)
            if prev is not None and prev[0] != layout:
                raise LoweringError(f"T.gemm needs '{name}' in layout {layout!r}, but line "
                                    f"{prev[1].line if prev[1] else '?'} decided {prev[0]!r}", g.span)
            decided.setdefault(name, (layout, g.span))
    for name, b in on_chip.items():
        decided.setdefault(name, (Layout.identity(b.static_shape), None))

    return _with_layouts(func, decided)


def _with_layouts(node, decided: dict):
    """`node` with each on-chip buffer carrying the layout decided for it so far."""
    def fn(b: Buffer) -> Buffer:
        d = decided.get(b.name)
        return b.with_layout(d[0]) if d is not None and b.scope != "global" and b.layout != d[0] else b
    return ir.replace_buffers(node, fn)

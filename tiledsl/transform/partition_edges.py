"""partition_edges: afterwards an innermost loop over a ragged tile edge carries no per-element
bounds test in the part that is inside the tensor.

`legalize_memory` guards each access (`j < N ? A[..j] : 0`); in the innermost loop of a copy
that test blocks vectorisation. Where the guard is `base + j < limit` (affine in the loop
variable j, coefficient 1), the loop is split at `hi = clamp(limit - base, 0, extent)`:
`[0, hi)` runs unguarded, `[hi, extent)` stores the zeros (a guarded store just stops).
Guard terms that do not depend on j stay, and the C++ compiler hoists them.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from .. import ir
from ..ir import BinOp, Const, For, If, Load, Select, Store, StmtRewriter, Var
from .common import Namer

__all__ = ["partition_edges"]


def partition_edges(func: ir.PrimFunc) -> ir.PrimFunc:
    """Split innermost guarded copy loops into an unguarded part and an edge part."""
    namer = Namer("pe")

    class _P(StmtRewriter):
        def visit_For(self, s: For):
            s = self.generic(s)
            out = _split(s, namer)
            return s if out is None else out

    return _P()(func)


def _coeff(e: ir.Expr, v: Var) -> Optional[int]:
    """The coefficient of v in e if e is affine in v (with integer constants), else None."""
    if e == v:
        return 1
    if v not in ir.free_vars(e):
        return 0
    if isinstance(e, BinOp) and e.op in ("+", "-"):
        a, b = _coeff(e.a, v), _coeff(e.b, v)
        if a is None or b is None:
            return None
        return a + b if e.op == "+" else a - b
    if isinstance(e, BinOp) and e.op == "*":
        if isinstance(e.b, Const) and e.b.dtype.is_int:
            a = _coeff(e.a, v)
            return None if a is None else a * e.b.value
    return None


def _terms(cond: ir.Expr) -> list:
    if isinstance(cond, BinOp) and cond.op == "and":
        return _terms(cond.a) + _terms(cond.b)
    return [cond]


def _conj(terms: list) -> ir.Expr:
    out = ir.const(True)
    for t in terms:
        out = ir.logical_and(out, t)
    return out


def _split(s: For, namer: Namer) -> Optional[ir.Stmt]:
    if not (isinstance(s.start, Const) and s.start.value == 0) or s.kind == "unroll":
        return None
    body, guarded_store = s.body, None
    if isinstance(body, If) and body.else_ is None and isinstance(body.then, Store):
        cond, guarded_store = body.cond, body.then
    elif isinstance(body, Store) and isinstance(body.value, Select) and isinstance(body.value.t, Load) \
            and isinstance(body.value.f, Const):
        cond = body.value.cond
    else:
        return None
    v = s.var
    limits, rest = [], []
    for t in _terms(cond):
        c = _coeff(t.a, v) if isinstance(t, BinOp) and t.op == "<" else None
        if c == 1 and _coeff(t.b, v) == 0:
            limits.append(t.b - ir.substitute(t.a, {v: ir.const(0)}))
        elif v in ir.free_vars(t):
            return None  # a guard we cannot split on: keep the loop as it is
        else:
            rest.append(t)
    if not limits:
        return None
    hi_expr = limits[0]
    for lim in limits[1:]:
        hi_expr = ir.min_(hi_expr, lim)
    hi_expr = ir.max_(ir.const(0), ir.min_(s.extent, hi_expr))
    hi = namer("hi")
    keep = _conj(rest)
    if guarded_store is not None:
        inside = guarded_store if isinstance(keep, Const) else If(keep, guarded_store, span=body.span)
        return ir.seq(ir.Decl(hi, hi_expr, span=s.span), dataclasses.replace(s, extent=hi, body=inside))
    sel = body.value
    inside = dataclasses.replace(body, value=ir.select(keep, sel.t, sel.f))
    edge = dataclasses.replace(body, value=sel.f)
    return ir.seq(ir.Decl(hi, hi_expr, span=s.span),
                  dataclasses.replace(s, extent=hi, body=inside),
                  dataclasses.replace(s, start=hi, extent=s.extent - hi, body=edge))

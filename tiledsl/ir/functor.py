"""Generic traversal and rewriting of IR trees.

Passes override only the node types they care about; everything else is rebuilt from its
fields, and a subtree in which nothing changed is returned as the same object (so a pass
that changes nothing returns its input).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

from .buffer import Buffer, Region
from .expr import BinOp, Call, Cast, Const, Expr, Load, Select, UnOp, Var, binop, cast, select
from .stmt import BufferPtr, PrimFunc, Stmt

__all__ = ["ExprRewriter", "StmtRewriter", "walk", "substitute", "free_vars", "replace_buffers",
           "stored_buffers"]


class ExprRewriter:
    """Post-order expression rewriter: children first, then `visit_<Type>` if defined."""

    def __call__(self, e: Expr) -> Expr:
        return self.expr(e)

    def expr(self, e: Expr) -> Expr:
        rebuilt = self._children(e)
        # Visit by the original node's type only: a rebuilt node that folded into another kind
        # (x * 0 + i -> i) must not be visited again (substitution would apply twice).
        if type(rebuilt) is not type(e):
            return rebuilt
        fn = getattr(self, "visit_" + type(e).__name__, None)
        return fn(rebuilt) if fn is not None else rebuilt

    def buffer(self, b: Buffer) -> Buffer:
        return b

    def _children(self, e: Expr) -> Expr:
        if isinstance(e, (Const, Var)):
            return e
        if isinstance(e, BinOp):
            a, b = self.expr(e.a), self.expr(e.b)
            return e if a is e.a and b is e.b else binop(e.op, a, b)
        if isinstance(e, Select):
            c, t, f = self.expr(e.cond), self.expr(e.t), self.expr(e.f)
            return e if c is e.cond and t is e.t and f is e.f else select(c, t, f)
        if isinstance(e, Cast):
            v = self.expr(e.value)
            return e if v is e.value else cast(v, e.dtype)
        if isinstance(e, Load):
            buf = self.buffer(e.buffer)
            idx = tuple(self.expr(i) for i in e.indices)
            if buf is e.buffer and all(a is b for a, b in zip(idx, e.indices)):
                return e
            return Load(buf, idx, buf.dtype)
        if isinstance(e, UnOp):
            a = self.expr(e.a)
            return e if a is e.a else UnOp(e.op, a, e.dtype)
        if isinstance(e, Call):
            args = tuple(self.expr(a) for a in e.args)
            return e if all(a is b for a, b in zip(args, e.args)) else Call(e.op, args, e.dtype)
        raise TypeError(f"unknown expression node {type(e).__name__}")


class StmtRewriter(ExprRewriter):
    """Rewrites statements; `visit_<Type>(stmt)` overrides take precedence over the generic
    field-by-field rebuild, and may call `self.generic(stmt)` to recurse."""

    def __call__(self, node):
        if isinstance(node, PrimFunc):
            return node.with_body(self.stmt(node.body))
        return self.stmt(node)

    def stmt(self, s: Stmt) -> Stmt:
        fn = getattr(self, "visit_" + type(s).__name__, None)
        return fn(s) if fn is not None else self.generic(s)

    def generic(self, s: Stmt) -> Stmt:
        changes = {}
        for f in dataclasses.fields(s):
            if f.name == "span":
                continue
            old = getattr(s, f.name)
            new = self._value(old)
            if new is not old:
                changes[f.name] = new
        return dataclasses.replace(s, **changes) if changes else s

    def region(self, r: Region) -> Region:
        buf = self.buffer(r.buffer)
        starts = tuple(self.expr(x) for x in r.starts)
        extents = tuple(self.expr(x) for x in r.extents)
        if buf is r.buffer and all(a is b for a, b in zip(starts + extents, r.starts + r.extents)):
            return r
        return Region(buf, starts, extents)

    def _value(self, v):
        if isinstance(v, Stmt):
            return self.stmt(v)
        if isinstance(v, Expr):
            return self.expr(v)
        if isinstance(v, Region):
            return self.region(v)
        if isinstance(v, Buffer):
            return self.buffer(v)
        if isinstance(v, BufferPtr):
            b, off = self.buffer(v.buffer), self.expr(v.offset)
            return v if b is v.buffer and off is v.offset else BufferPtr(b, off)
        if isinstance(v, tuple):
            new = tuple(self._value(x) for x in v)
            return v if all(a is b for a, b in zip(new, v)) else new
        return v


def walk(node, visit: Callable[[object], None]) -> None:
    """Pre-order visit of every statement, expression, region and buffer reachable from node."""
    for n in _iter(node):
        visit(n)


def _iter(node) -> Iterator[object]:
    stack = [node]
    while stack:
        n = stack.pop()
        if n is None or isinstance(n, (int, float, str, bool)):
            continue
        if isinstance(n, tuple):
            stack.extend(reversed(n))
            continue
        yield n
        if isinstance(n, (Const, Var)):
            continue
        if isinstance(n, PrimFunc):
            stack.append(n.body)
            continue
        if dataclasses.is_dataclass(n) and not isinstance(n, Buffer):
            stack.extend(reversed([getattr(n, f.name) for f in dataclasses.fields(n)
                                   if f.name not in ("span", "dtype")]))


def substitute(node, mapping: dict):
    """Replace variables by expressions (constants fold as the tree is rebuilt)."""
    if not mapping:
        return node

    class _Sub(StmtRewriter):
        def visit_Var(self, v: Var) -> Expr:
            return mapping.get(v, v)

    r = _Sub()
    return r.expr(node) if isinstance(node, Expr) else r(node)


def free_vars(e: Expr) -> set:
    out = set()
    walk(e, lambda n: out.add(n) if isinstance(n, Var) else None)
    return out


def replace_buffers(node, fn: Callable[[Buffer], Buffer]):
    """Rebuild `node` with every buffer reference (allocations included) passed through `fn`."""
    class _R(StmtRewriter):
        def buffer(self, b: Buffer) -> Buffer:
            return fn(b)
    return _R()(node)


def stored_buffers(node) -> set:
    """Names of the buffers that `node` writes: by element stores, and (in tile IR) as the
    destination of a tile operation."""
    from .stmt import Copy, CumSum, Fill, Gemm, Reduce, Store

    out: set = set()

    def visit(n):
        if isinstance(n, Store):
            out.add(n.buffer.name)
        elif isinstance(n, (Copy, Fill)):
            out.add(n.dst.buffer.name)
        elif isinstance(n, Gemm):
            out.add(n.c.buffer.name)
        elif isinstance(n, (Reduce, CumSum)):
            out.add(n.dst.name)
    walk(node, visit)
    return out

"""Invariants every PrimFunc must satisfy, checked after the frontend and after each pass."""
from __future__ import annotations

from ..errors import VerifyError
from .buffer import Buffer, Region
from .expr import Expr, Load, Var
from .functor import walk
from .stmt import (THREAD_X, TILE_OPS, Assign, Copy, CumSum, Decl, Fill, For, Gemm, If, Kernel, PrimFunc, Reduce,
                   Seq, Stmt, Store, Evaluate, ExternCall, BufferPtr)

__all__ = ["verify"]


def verify(func: PrimFunc, allow_tile_ops: bool = True) -> PrimFunc:
    """Raise VerifyError (with the offending statement's span) if `func` is malformed."""
    _Verifier(func, allow_tile_ops).run()
    return func


class _Verifier:
    def __init__(self, func: PrimFunc, allow_tile_ops: bool):
        self.func = func
        self.allow_tile_ops = allow_tile_ops
        self.vars = {p for p in func.params if isinstance(p, Var)}
        for b in func.buffers:
            for s in b.shape:
                walk(s, lambda n: self.vars.add(n) if isinstance(n, Var) else None)
        self.buffers = {b.name: b for b in func.buffers}
        self.mutable: set = set()
        self.in_kernel = False

    def run(self) -> None:
        self.stmt(self.func.body)

    def fail(self, msg: str, s) -> None:
        raise VerifyError(f"{self.func.name}: {msg}", getattr(s, "span", None))

    def expr(self, e: Expr, s: Stmt) -> None:
        def visit(n):
            if isinstance(n, Var) and n not in self.vars:
                self.fail(f"variable '{n.name}' is used outside its scope", s)
            if isinstance(n, Load):
                self.buffer(n.buffer, s)
                if len(n.indices) != n.buffer.ndim:
                    self.fail(f"'{n.buffer.name}' has {n.buffer.ndim} dims, indexed with {len(n.indices)}", s)
        walk(e, visit)

    def buffer(self, b: Buffer, s: Stmt) -> None:
        known = self.buffers.get(b.name)
        if known is None:
            self.fail(f"buffer '{b.name}' is used outside the kernel that allocates it", s)
        if known != b:
            self.fail(f"buffer '{b.name}' is used with two different definitions", s)

    def region(self, r: Region, s: Stmt) -> None:
        self.buffer(r.buffer, s)
        for x in r.starts + r.extents:
            self.expr(x, s)

    def stmt(self, s: Stmt) -> None:
        if isinstance(s, Seq):
            for x in s.stmts:
                self.stmt(x)
        elif isinstance(s, For):
            self.expr(s.start, s)
            self.expr(s.extent, s)
            self._scoped([s.var], lambda: self.stmt(s.body))
        elif isinstance(s, If):
            self.expr(s.cond, s)
            self.stmt(s.then)
            if s.else_ is not None:
                self.stmt(s.else_)
        elif isinstance(s, Store):
            self.buffer(s.buffer, s)
            for i in s.indices:
                self.expr(i, s)
            self.expr(s.value, s)
            if s.value.dtype != s.buffer.dtype:
                self.fail(f"store of {s.value.dtype} into {s.buffer.dtype} buffer '{s.buffer.name}'", s)
        elif isinstance(s, Decl):
            self.expr(s.value, s)
            self.vars.add(s.var)
            self.mutable.add(s.var)
        elif isinstance(s, Assign):
            if s.var not in self.mutable:
                self.fail(f"'{s.var.name}' cannot be assigned here", s)
            self.expr(s.value, s)
        elif isinstance(s, Evaluate):
            self.expr(s.value, s)
        elif isinstance(s, Kernel):
            self.kernel(s)
        elif isinstance(s, ExternCall):
            for a in s.args:
                if isinstance(a, BufferPtr):
                    self.buffer(a.buffer, s)
                    self.expr(a.offset, s)
                else:
                    self.expr(a, s)
        elif isinstance(s, TILE_OPS):
            if not self.allow_tile_ops:
                self.fail(f"tile operation {type(s).__name__} was not lowered", s)
            if isinstance(s, (Reduce, CumSum)):
                self.buffer(s.src, s)
                self.buffer(s.dst, s)
            else:
                regions = {Copy: ("src", "dst"), Gemm: ("a", "b", "c"), Fill: ("dst",)}[type(s)]
                for name in regions:
                    self.region(getattr(s, name), s)
                if isinstance(s, Fill):
                    self.expr(s.value, s)
        else:
            self.fail(f"unknown statement {type(s).__name__}", s)

    def kernel(self, k: Kernel) -> None:
        if self.in_kernel:
            self.fail("T.Kernel cannot be nested in another T.Kernel", k)
        for g in k.grid:
            self.expr(g, k)
        saved = dict(self.buffers)
        for b in k.allocs:
            if b.scope == "global":
                self.fail(f"'{b.name}' is allocated in global scope inside a kernel", k)
            self.buffers[b.name] = b
        self.in_kernel = True

        def body():
            self.stmt(k.body)
        self._scoped(list(k.block_vars) + [THREAD_X], body)  # thread_x: after partition_threads
        self.in_kernel = False
        self.buffers = saved

    def _scoped(self, new_vars, fn) -> None:
        saved, saved_mut = set(self.vars), set(self.mutable)
        self.vars.update(new_vars)
        fn()
        self.vars, self.mutable = saved, saved_mut

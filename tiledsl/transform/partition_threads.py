"""partition_threads (GPU): afterwards every `T.Parallel` nest is one thread's share of it,
and every fragment is the thread's own register array.

A nest is split by the layout of its *driving* fragment access (`_locality.driver_from`): one
that reaches the fragment through the loop variables plus constants (`C[i, j]`, or
`t[2 + i, 1 + j]` for a sub-tile), or, failing that, a strided layout over the nest's extents.
Thread `t` runs the slots `s` of the driver whose element the nest visits (a guard when the
nest covers only part of the fragment): the element is the driver's inverse at `(t, s)`, so
the driver's accesses become the register `C[s]` (a constant once the slot loop is
unrolled). Every other fragment access must be thread-local: the thread running an iteration
holds the element (checked over the whole iteration domain, so any layouts that agree are
accepted); a fragment held whole by every thread (a reduction's row values) always is, but is
written only by nests all its holders run, so no copy goes stale. Anything else would read
another thread's register and is an error naming the access and the loop.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List

from .. import ir
from ..errors import LoweringError
from ..ir import THREAD_X, Buffer, For, Kernel, Load, Store, StmtRewriter, Var
from ..layout import Fragment, LayoutError
from ..target import Target
from .common import Namer
from ._locality import Driver, access_is_local, driver_from, driver_threads, held_whole
from .infer_layout import strided_fragment

__all__ = ["partition_threads", "PARTITION"]

PARTITION = "thread_partition"  # annotation marking a slot loop made by this pass
PRINT_PREFIX = "tdsl_print_"      # T.print's functions (language/printing.py)


def partition_threads(func: ir.PrimFunc, target: Target) -> ir.PrimFunc:
    return _Partition()(func)


class _Registers(StmtRewriter):
    """Rewrites fragment loads and stores through `_reg(buffer, indices, span)`."""

    def _reg(self, b: Buffer, indices, span) -> tuple:
        raise NotImplementedError

    def visit_Load(self, e: Load):
        if e.buffer.scope != "fragment":
            return e
        buf, idx = self._reg(e.buffer, e.indices, None)
        return Load(buf, idx, e.dtype)

    def visit_Store(self, s: Store):
        s = self.generic(s)
        if s.buffer.scope != "fragment":
            return s
        buf, idx = self._reg(s.buffer, s.indices, s.span)
        return Store(buf, idx, s.value, span=s.span, atomic=s.atomic)


class _Partition(_Registers):
    def __init__(self):
        self.threads = 0
        self.regs: Dict[str, Buffer] = {}
        self.namer = Namer("p")
        self.per_thread = False

    def visit_Kernel(self, k: Kernel):
        self.threads = k.threads
        self.regs = {}
        for b in k.allocs:
            if b.scope == "fragment":
                if not isinstance(b.layout, Fragment):
                    raise LoweringError(f"fragment '{b.name}' has no thread layout", k.span)
                if b.layout.num_threads > k.threads:
                    raise LoweringError(f"fragment '{b.name}' is spread over {b.layout.num_threads} "
                                        f"threads but the block has {k.threads}", k.span,
                                        hint="raise T.Kernel(..., threads=) or change the layout")
                self.regs[b.name] = Buffer(b.name, (ir.const(b.layout.locals_per_thread),), b.dtype, "local")
        body = self.stmt(k.body)
        allocs = tuple(self.regs.get(b.name, b) for b in k.allocs)
        return dataclasses.replace(k, body=body, allocs=allocs)

    def visit_ExternCall(self, s: ir.ExternCall):
        s = self.generic(s)
        if s.name.startswith(PRINT_PREFIX):
            # A statement of the whole block runs in every thread: one of them prints it.
            return ir.If(ir.binop("==", THREAD_X, 0), s, None, span=s.span)
        return s

    def visit_Store(self, s: Store):
        s = _Registers.visit_Store(self, s)
        if s.buffer.scope in ("global", "shared") and not self.per_thread:
            # A store of the whole block happens once, as on the CPU: every thread doing it
            # would add an atomic up, and race a read-modify-write (`W[b] = W[b] + 1`) with
            # itself. insert_barriers then orders the readers after it.
            return ir.If(ir.binop("==", THREAD_X, 0), s, None, span=s.span)
        return s

    def visit_If(self, s: ir.If):
        if THREAD_X not in ir.free_vars(s.cond) or self.per_thread:
            return self.generic(s)
        self.per_thread = True  # a branch on the thread index: each thread's own stores
        try:
            return self.generic(s)
        finally:
            self.per_thread = False

    # -- fragment accesses outside a parallel nest: only whole-held fragments --------------

    def _reg(self, b: Buffer, indices, span) -> tuple:
        f = b.layout
        if not held_whole(f, self.threads):
            raise LoweringError(f"fragment '{b.name}' is used outside a T.Parallel loop; on the GPU "
                                f"its elements live in different threads", span,
                                hint="read it inside a T.Parallel loop, or copy it to a shared buffer")
        return self.regs[b.name], (f.index(*indices),)

    # -- parallel nests --------------------------------------------------------------------

    def visit_For(self, s: For):
        if s.kind != "parallel":
            return self.generic(s)
        vars_: List[Var] = []
        extents: List[int] = []
        f = s
        while isinstance(f, For) and f.kind == "parallel":
            if not isinstance(f.extent, ir.Const) or not (isinstance(f.start, ir.Const) and f.start.value == 0):
                raise LoweringError("on the GPU a T.Parallel loop needs constant extents", f.span,
                                    hint="make the tile size a Python constant of the kernel factory")
            vars_.append(f.var)
            extents.append(f.extent.value)
            f = f.body
        body = f
        vars_, extents = tuple(vars_), tuple(extents)
        driver = driver_from(body, vars_, self.threads) or Driver(
            strided_fragment(extents, self.threads), tuple((k, 0) for k in range(len(vars_))), vars_)
        slot = self.namer("s")
        frag = driver.frag
        coords = _visited(frag, THREAD_X, slot, frag.shape, self.threads, s.span)
        runner = driver_threads(driver, extents)
        body = _Access(self, driver, vars_, extents, runner, slot, s.span).stmt(body)
        body = ir.substitute(body, dict(zip(vars_, driver.loop_values(coords, len(vars_)))))
        guard = driver.guard(coords, extents)
        if guard is not None:
            body = ir.If(guard, body, None, span=s.span)
        if frag.num_threads < self.threads:
            body = ir.If(ir.binop("<", THREAD_X, frag.num_threads), body, None, span=s.span)
        return For(slot, ir.const(0), ir.const(frag.locals_per_thread), "unroll", body,
                   annotations=((PARTITION, 1),), span=s.span)


def _visited(f: Fragment, thread: ir.Expr, slot: ir.Expr, extents: tuple, threads: int, span) -> list:
    """The logical index that `thread` holds in `slot` of fragment `f` (its inverse)."""
    if f == strided_fragment(extents, threads):   # closed form: e = slot * T + thread
        e = slot * f.num_threads + thread
        coords = []
        for d in range(len(extents)):
            inner = 1
            for n in extents[d + 1:]:
                inner *= n
            coords.append((e // inner) % extents[d] if d else e // inner)
        return coords
    try:
        inverse = f.inverse()
    except LayoutError as err:
        raise LoweringError(f"cannot split this T.Parallel loop over threads: {err}", span)
    if inverse.tables:
        raise LoweringError(f"the layout {f!r} has no closed-form inverse (it needs a lookup "
                            f"table, which the GPU code generator does not emit yet)", span,
                            hint="use a fragment built from // and % of its indices")
    return [ir.substitute(e, {inverse.vars[0]: thread, inverse.vars[1]: slot})
            for e in inverse.forward[:len(extents)]]


class _Access(_Registers):
    """Fragment accesses inside one parallel nest -> the thread's registers."""

    def __init__(self, outer: _Partition, driver: Driver, vars_: tuple, extents: tuple, runner, slot: Var,
                 span):
        self.outer, self.driver, self.vars, self.extents = outer, driver, vars_, extents
        self.runner, self.slot, self.span = runner, slot, span
        self.storing = False

    def visit_Store(self, s: Store):
        value = self.expr(s.value)
        idx = tuple(self.expr(i) for i in s.indices)
        if s.buffer.scope != "fragment":
            return Store(s.buffer, idx, value, span=s.span, atomic=s.atomic)
        self.storing = True
        try:
            buf, reg = self._reg(s.buffer, s.indices, s.span)
        finally:
            self.storing = False
        return Store(buf, reg, value, span=s.span, atomic=s.atomic)

    def _reg(self, b: Buffer, indices, span) -> tuple:
        f, d, threads = b.layout, self.driver, self.outer.threads
        if f == d.frag and tuple(indices) == d.indices:
            return self.outer.regs[b.name], (self.slot,)
        whole = held_whole(f, threads)
        if self.storing and f.replicate > 1 and not (whole and held_whole(d.frag, threads)):
            raise LoweringError(
                f"fragment '{b.name}' is held by several threads, but this T.Parallel loop (split "
                f"over threads by '{d.name or 'its extents'}') writes each element in one thread "
                f"only: the other copies would go stale", span or self.span,
                hint=f"write '{b.name}' in a loop of its own (every thread then computes it), or "
                     f"through a shared buffer")
        if whole or access_is_local(f, indices, self.vars, self.extents, self.runner):
            return self.outer.regs[b.name], (f.index(*indices),)
        where = f"line {span.line}" if span is not None else "this loop"
        raise LoweringError(
            f"fragment '{b.name}' is {'written' if self.storing else 'read'} in a T.Parallel loop "
            f"whose iterations are split over threads by '{d.name or 'its extents'}' "
            f"(line {self.span.line if self.span else '?'}); at {where} a thread would need "
            f"another thread's register", span or self.span,
            hint="index it by the loop variables in order, or copy it through shared memory")

    def visit_ExternCall(self, s: ir.ExternCall):
        s = self.generic(s)
        if s.name.startswith(PRINT_PREFIX) and self.driver.frag.replicate > 1:
            # every holder of the driving element runs the iteration: the first one prints
            return ir.If(ir.binop("==", THREAD_X, 0), s, None, span=s.span) \
                if held_whole(self.driver.frag, self.outer.threads) else s
        return s

    def visit_For(self, s: For):
        if s.kind == "parallel":
            raise LoweringError("a T.Parallel loop inside another T.Parallel loop's body", s.span,
                                hint="write one T.Parallel over all the dimensions")
        return self.generic(s)

"""partition_threads (GPU): afterwards every `T.Parallel` nest is one thread's share of it,
and every fragment is the thread's own register array.

A nest is split by the layout of its *driving* fragment, the one it indexes by exactly its
loop variables (`C[i, j]` in `for i, j in T.Parallel(M, N)`); a nest that touches no fragment
is split by a strided layout over its extents. Thread `t` runs the slots `s` of the driver:
the element it visits is the driver's inverse at `(t, s)`, so the driver's accesses become
the register `C[s]` (a constant once the slot loop is unrolled). The other fragments of the
nest must either share the driver's layout and indices or be held whole by every thread
(a reduction's row values); anything else would read another thread's register and is an
error at the loop's line.
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
from .infer_layout import strided_fragment

__all__ = ["partition_threads", "PARTITION"]

PARTITION = "thread_partition"  # annotation marking a slot loop made by this pass


def partition_threads(func: ir.PrimFunc, target: Target) -> ir.PrimFunc:
    return _Partition()(func)


def _held_whole(f: Fragment, threads: int) -> bool:
    return f.replicate >= threads and f.num_threads == f.replicate


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

    # -- fragment accesses outside a parallel nest: only whole-held fragments --------------

    def _reg(self, b: Buffer, indices, span) -> tuple:
        f = b.layout
        if not _held_whole(f, self.threads):
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
        driver = self._driver(body, tuple(vars_), tuple(extents), s.span)
        slot = self.namer("s")
        coords = _visited(driver, THREAD_X, slot, tuple(extents), self.threads, s.span)
        body = _Access(self, driver, tuple(vars_), slot, s.span).stmt(body)
        body = ir.substitute(body, dict(zip(vars_, coords)))
        if driver.num_threads < self.threads:
            body = ir.If(ir.binop("<", THREAD_X, driver.num_threads), body, None, span=s.span)
        return For(slot, ir.const(0), ir.const(driver.locals_per_thread), "unroll", body,
                   annotations=((PARTITION, 1),), span=s.span)

    def _driver(self, body, vars_: tuple, extents: tuple, span) -> Fragment:
        found: List[Fragment] = []

        def visit(n):
            if isinstance(n, (Load, Store)) and n.buffer.scope == "fragment" and \
                    tuple(n.indices) == vars_ and n.buffer.static_shape == extents:
                found.append(n.buffer.layout)
        ir.walk(body, visit)
        spread = list(dict.fromkeys(f for f in found if not _held_whole(f, self.threads)))
        if len(spread) > 1:
            raise LoweringError("this T.Parallel loop uses fragments spread over threads in different "
                                "ways; no thread holds all the elements one iteration needs", span,
                                hint="copy one of them through a shared buffer")
        if spread:
            return spread[0]
        if found:
            return found[0]
        return strided_fragment(extents, self.threads)


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

    def __init__(self, outer: _Partition, driver: Fragment, vars_: tuple, slot: Var, span):
        self.outer, self.driver, self.vars, self.slot, self.span = outer, driver, vars_, slot, span

    def _reg(self, b: Buffer, indices, span) -> tuple:
        f = b.layout
        if f == self.driver and tuple(indices) == self.vars:
            return self.outer.regs[b.name], (self.slot,)
        if _held_whole(f, self.outer.threads):
            return self.outer.regs[b.name], (f.index(*indices),)
        raise LoweringError(f"fragment '{b.name}' is read in a T.Parallel loop whose iterations are "
                            f"split over threads by another layout; a thread would need another "
                            f"thread's register", span or self.span,
                            hint="index it by the loop variables in order, or copy it through shared memory")

    def visit_For(self, s: For):
        if s.kind == "parallel":
            raise LoweringError("a T.Parallel loop inside another T.Parallel loop's body", s.span,
                                hint="write one T.Parallel over all the dimensions")
        return self.generic(s)

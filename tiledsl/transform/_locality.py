"""Which thread runs each iteration of a `T.Parallel` nest, and whether a fragment access in
it stays in that thread's registers. Used by `partition_threads` (and, for the layouts it
chooses, `infer_layout`).

A nest is *driven* by one fragment access whose indices are the loop variables, each at most
once, plus constants (`t[i, j]`, `t[2 + i, 1 + j]`, `cols[0, j]`): thread `t` runs the
iterations whose element of the driver it holds. Any other fragment access is thread-local
when, for every iteration, the thread that runs it holds the element it touches; this is
checked on the whole iteration domain (tiles are small), so any pair of layouts that agree
is accepted, and only pairs that truly disagree are refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .. import ir
from ..ir import Var
from ..layout import Fragment
from ..layout._eval import compile_exprs
from ..layout.layout import MAX_ENUMERATE

__all__ = ["Driver", "affine_form", "driver_from", "driver_threads", "access_is_local", "held_whole"]


def held_whole(f: Fragment, threads: int) -> bool:
    """Every thread of the block holds every element."""
    return f.replicate >= threads and f.num_threads == f.replicate


def affine_form(indices: Sequence[ir.Expr], vars_: Sequence[Var]) -> Optional[tuple]:
    """Per index: `(k, c)` for loop variable `k` plus constant `c`, or `(None, c)` for a
    constant; None unless every loop variable appears exactly once."""
    pos = {v: k for k, v in enumerate(vars_)}
    out, seen = [], set()
    for e in indices:
        term = _var_plus_const(e, pos)
        if term is None:
            return None
        if term[0] is not None:
            if term[0] in seen:
                return None
            seen.add(term[0])
        out.append(term)
    return tuple(out) if len(seen) == len(vars_) else None


def _var_plus_const(e: ir.Expr, pos: dict) -> Optional[tuple]:
    if isinstance(e, ir.Const):
        return (None, int(e.value))
    if isinstance(e, Var):
        return (pos[e], 0) if e in pos else None
    if isinstance(e, ir.BinOp) and e.op in ("+", "-"):
        for v, c, sign in ((e.a, e.b, 1 if e.op == "+" else -1), (e.b, e.a, 1)):
            if isinstance(v, Var) and v in pos and isinstance(c, ir.Const) and (e.op == "+" or v is e.a):
                return (pos[v], sign * int(c.value))
    return None


@dataclass(frozen=True)
class Driver:
    """The nest is split by `frag`'s distribution of the elements `form` (from `affine_form`)
    reaches; `indices` is that access, so identical accesses map to the slot directly."""
    frag: Fragment
    form: tuple
    indices: tuple
    name: str = ""  # the driving buffer, for messages

    def guard(self, coords: Sequence[ir.Expr], extents: Sequence[int]) -> Optional[ir.Expr]:
        """The condition that fragment element `coords` is one the nest visits (None: all are)."""
        conds = []
        for dim, ((k, c), x) in enumerate(zip(self.form, coords)):
            if k is None:
                conds.append(ir.binop("==", x, ir.const(c)))
                continue
            if c > 0:
                conds.append(ir.binop(">=", x, ir.const(c)))
            if c + extents[k] < self.frag.shape[dim]:
                conds.append(ir.binop("<", x, ir.const(c + extents[k])))
        out = None
        for cond in conds:
            out = cond if out is None else ir.binop("and", out, cond)
        return out

    def loop_values(self, coords: Sequence[ir.Expr], nvars: int) -> list:
        """The loop variables' values at fragment element `coords`."""
        vals = [None] * nvars
        for (k, c), x in zip(self.form, coords):
            if k is not None:
                vals[k] = x - c if c else x
        return vals


def _domain(extents: Sequence[int]) -> list:
    grids = np.meshgrid(*(np.arange(n, dtype=np.int64) for n in extents), indexing="ij")
    return [g.ravel() for g in grids]


def driver_threads(d: Driver, extents: Sequence[int]) -> np.ndarray:
    """Thread running each iteration (row-major over the nest's domain)."""
    dom = _domain(extents)
    coords = tuple(dom[k] + c if k is not None else np.full(dom[0].shape, c) for k, c in d.form)
    return d.frag.thread_table()[coords + (0,)]


def access_is_local(f: Fragment, indices: Sequence[ir.Expr], vars_: Sequence[Var],
                    extents: Sequence[int], runner: np.ndarray) -> bool:
    """Does the thread `runner[n]` running iteration `n` hold `f[indices]` at that iteration?

    An index that depends on anything but the loop variables (a serial loop's counter) may
    take any value, so `f`'s thread must not depend on that dimension."""
    if int(np.prod(extents)) > MAX_ENUMERATE:
        return False
    table = f.thread_table()                            # shape + (replicate,)
    loop = set(vars_)
    exprs = []
    for d, e in enumerate(indices):
        if ir.free_vars(e) <= loop:
            exprs.append(e)
            continue
        if not np.all(table == table.take([0], axis=d)):
            return False
        exprs.append(ir.const(0))
    dom = _domain(extents)
    fn = compile_exprs(tuple(exprs), tuple(vars_), True)
    coords = [np.broadcast_to(np.asarray(x, dtype=np.int64), dom[0].shape) for x in fn(*dom)]
    inside = np.ones(dom[0].shape, bool)
    for x, n in zip(coords, f.shape):
        inside &= (x >= 0) & (x < n)
    clipped = tuple(np.clip(x, 0, n - 1) for x, n in zip(coords, f.shape))
    holders = table[clipped]                             # (points, replicate)
    ok = (holders == runner[:, None]).any(axis=1)
    return bool(np.all(ok | ~inside))


def driver_from(body: ir.Stmt, vars_: tuple, threads: int) -> Optional[Driver]:
    """The access that drives the nest: a fragment spread over threads reached through
    `affine_form` (an exact `t[i, j]` first), else one every thread holds whole indexed exactly
    (all threads then run every iteration); None when there is neither."""
    best = None

    def visit(n):
        nonlocal best
        if not (isinstance(n, (ir.Load, ir.Store)) and n.buffer.scope == "fragment"):
            return
        idx = tuple(n.indices)
        whole = held_whole(n.buffer.layout, threads)
        form = affine_form(idx, vars_) if not whole else (
            tuple((k, 0) for k in range(len(vars_))) if idx == vars_ else None)
        if form is None:
            return
        rank = (not whole, idx == vars_)
        if best is None or rank > best[0]:
            best = (rank, Driver(n.buffer.layout, form, idx, n.buffer.name))
    ir.walk(body, visit)
    return best[1] if best else None

"""`Fragment`: which thread holds each element of a register tile, and in which slot.

A fragment is a layout whose physical coordinates are (thread, register slot), as in
TileLang: `forward_thread` and `forward_index` are IR expressions over the logical indices.
With `replicate > 1` several threads hold the same element: the thread expression may use
the extra variable `rep` in `[0, replicate)`, while the slot does not depend on it.

Every fragment is checked when built: no two (element, rep) pairs share a (thread, slot).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Optional, Sequence

import numpy as np

from tiledsl.ir.expr import Expr, Var, convert
from tiledsl.ir.functor import walk
from tiledsl.ir.printer import expr_str

from ._eval import compile_exprs
from ._simplify import domain_ranges, simplify, subst
from .layout import (MAX_ENUMERATE, Layout, LayoutError, _check_shape, _n_params, _row_major,
                     _to_exprs, domain_arrays, index_vars)

__all__ = ["Fragment", "REP"]

REP = Var("rep")  # the replica index of a replicated fragment's thread expression


def _call(fn: Callable, vars_: tuple, allow_rep: bool, what: str) -> Any:
    n = _n_params(fn)
    if n is None:
        return fn(*vars_)
    if n == len(vars_):
        return fn(*vars_)
    if allow_rep and n == len(vars_) + 1:
        return fn(*vars_, REP)
    want = f"{len(vars_)}" + (f" (or {len(vars_) + 1} with rep)" if allow_rep else "")
    raise LayoutError(f"{what} takes {n} arguments; the fragment's shape needs {want}")


@dataclass(frozen=True, init=False)
class Fragment:
    """Logical index -> (thread, register slot), with optional replication.

    >>> c = Fragment((16, 8), lambda i, j: i % 8 * 4 + j // 2, lambda i, j: i // 8 * 2 + j % 2)
    >>> c.num_threads, c.locals_per_thread, c.thread(9, 5), c.index(9, 5)
    (32, 4, 6, 3)

    `forward_index_fn` may return several coordinates; they are flattened row-major over
    their extents into the single slot.
    """

    shape: tuple
    vars: tuple
    forward_thread: Expr
    forward_index: Expr
    replicate: int
    num_threads: int
    locals_per_thread: int

    def __init__(self, shape: Any, forward_thread_fn: Callable, forward_index_fn: Callable,
                 replicate: int = 1):
        shape = _check_shape(shape)
        if not isinstance(replicate, int) or replicate < 1:
            raise LayoutError(f"replicate must be a positive int, got {replicate!r}")
        vars_ = index_vars(len(shape))
        thread = _to_exprs(_call(forward_thread_fn, vars_, True, "forward_thread_fn"),
                           "a fragment's thread")
        if len(thread) != 1:
            raise LayoutError("forward_thread_fn must return one expression")
        index = _to_exprs(_call(forward_index_fn, vars_, False, "forward_index_fn"),
                          "a fragment's register slot")
        if len(index) > 1:
            extents = Layout(shape, list(index)).output_shape
            index = (simplify(_row_major(index, extents), domain_ranges(vars_, shape)),)
        for e, allowed, what in ((thread[0], vars_ + (REP,), "thread"),
                                 (index[0], vars_, "slot")):
            def check(node, allowed=allowed, what=what):
                if isinstance(node, Var) and node not in allowed:
                    raise LayoutError(f"a fragment's {what} expression uses {node.name!r}; "
                                      f"it may use {tuple(v.name for v in allowed)}")
            walk(e, check)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "vars", vars_)
        object.__setattr__(self, "forward_thread", thread[0])
        object.__setattr__(self, "forward_index", index[0])
        object.__setattr__(self, "replicate", replicate)
        threads, slots = self._tables
        if int(threads.min()) < 0 or int(slots.min()) < 0:
            raise LayoutError(f"fragment {self._map_str()} gives a negative thread or slot")
        object.__setattr__(self, "num_threads", int(threads.max()) + 1)
        object.__setattr__(self, "locals_per_thread", int(slots.max()) + 1)
        owners = threads * self.locals_per_thread + slots[:, None]
        if np.unique(owners).size != owners.size:
            raise LayoutError(f"fragment {self._map_str()} puts two elements (or two replicas "
                              "of one) in the same thread and slot")

    # -- evaluation -------------------------------------------------------------------------

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @cached_property
    def _fn(self) -> Callable:
        return compile_exprs((self.forward_thread, self.forward_index), self.vars + (REP,))

    def thread(self, *idx: Any, rep: Any = 0):
        """The thread holding element `idx` (replica `rep`): an int, or an Expr for Exprs."""
        self._check_arity(idx)
        if any(isinstance(x, Expr) for x in idx) or isinstance(rep, Expr):
            mapping = {v: convert(x) for v, x in zip(self.vars, idx)}
            mapping[REP] = convert(rep)
            return subst(self.forward_thread, mapping)
        return int(self._fn(*(int(x) for x in idx), int(rep))[0])

    def index(self, *idx: Any):
        """The register slot of element `idx` within its thread(s)."""
        self._check_arity(idx)
        if any(isinstance(x, Expr) for x in idx):
            return subst(self.forward_index, {v: convert(x) for v, x in zip(self.vars, idx)})
        return int(self._fn(*(int(x) for x in idx), 0)[1])

    def _check_arity(self, idx: tuple) -> None:
        if len(idx) != self.ndim:
            raise LayoutError(f"fragment over {self.shape} takes {self.ndim} indices, "
                              f"got {len(idx)}")

    @cached_property
    def _tables(self) -> tuple:
        """(threads of shape (size, replicate), slots of shape (size,)), row-major order; read-only
        views, computed once (the constructor needs them to check the fragment)."""
        if self.size * self.replicate > MAX_ENUMERATE:
            raise LayoutError(f"fragment over {self.shape} is too large to check")
        dom = domain_arrays(self.shape)
        fn = compile_exprs((self.forward_thread, self.forward_index), self.vars + (REP,),
                           True)
        reps = np.arange(self.replicate, dtype=np.int64)[None, :]
        t, s = fn(*(d[:, None] for d in dom), reps)
        shape = (self.size, self.replicate)
        return (np.broadcast_to(np.asarray(t, dtype=np.int64), shape),
                np.broadcast_to(np.asarray(s, dtype=np.int64), shape)[:, 0])

    def thread_table(self) -> np.ndarray:
        """Threads of every element: shape `self.shape + (replicate,)`."""
        return self._tables[0].reshape(self.shape + (self.replicate,))

    def index_table(self) -> np.ndarray:
        """Register slot of every element, as an array of the logical shape."""
        return self._tables[1].reshape(self.shape)

    # -- views and algebra --------------------------------------------------------------------

    def as_layout(self) -> Layout:
        """The fragment as a `Layout` to (thread, slot); a replicated fragment's domain gets
        a last dimension for `rep`."""
        shape = self.shape + ((self.replicate,) if self.replicate > 1 else ())
        vars_ = index_vars(len(shape))
        mapping = dict(zip(self.vars + (REP,), vars_ if self.replicate > 1 else
                           vars_ + (convert(0),)))
        forward = [subst(self.forward_thread, mapping),
                   subst(self.forward_index, mapping)]
        return Layout(shape, forward, (self.num_threads, self.locals_per_thread))

    def is_bijective(self) -> bool:
        """Every (thread, slot) of `num_threads x locals_per_thread` holds an element."""
        return self.size * self.replicate == self.num_threads * self.locals_per_thread

    def inverse(self) -> Layout:
        """(thread, slot) -> logical index (followed by `rep` when replicated). Needs every
        (thread, slot) to be used: see `is_bijective`."""
        if not self.is_bijective():
            raise LayoutError(f"{self!r} leaves some (thread, slot) pairs empty; it has no "
                              "inverse")
        return self.as_layout().inverse()

    def repeat(self, count: int, over: str = "threads", dim: int = 0) -> "Fragment":
        """Tile the fragment `count` times along logical `dim`. Copy `r` is held by threads
        shifted by `r * num_threads` (`over="threads"`) or by the same threads in slots
        shifted by `r * locals_per_thread` (`over="registers"`)."""
        if over not in ("threads", "registers"):
            raise LayoutError(f"repeat over 'threads' or 'registers', not {over!r}")
        if count < 1:
            raise LayoutError(f"repeat count must be positive, got {count}")
        dim = dim % self.ndim
        v, extent = self.vars[dim], self.shape[dim]
        local = {v: v % extent}
        thread = subst(self.forward_thread, local)
        index = subst(self.forward_index, local)
        if over == "threads":
            thread = thread + (v // extent) * self.num_threads
        else:
            index = index + (v // extent) * self.locals_per_thread
        shape = list(self.shape)
        shape[dim] *= count
        ranges = domain_ranges(self.vars, shape)
        ranges[REP] = (0, self.replicate - 1)
        thread, index = simplify(thread, ranges), simplify(index, ranges)
        return Fragment(tuple(shape), lambda *_: thread, lambda *_: index, self.replicate)

    # -- printing -----------------------------------------------------------------------------

    def _map_str(self) -> str:
        names = ", ".join(v.name for v in self.vars)
        return (f"({names}) -> thread {expr_str(self.forward_thread)}, "
                f"slot {expr_str(self.forward_index)}")

    def __repr__(self) -> str:
        rep = f", replicate={self.replicate}" if self.replicate > 1 else ""
        head = f"{self.shape}" if not hasattr(self, "num_threads") else (
            f"{self.shape}, threads={self.num_threads}, locals={self.locals_per_thread}")
        return f"Fragment({head}{rep}: {self._map_str()})"


def fragment_from_exprs(shape: Sequence[int], vars: Sequence[Var], thread: Any, index: Any,
                        replicate: int = 1, rep: Optional[Var] = None) -> Fragment:
    """A fragment from expressions over arbitrary `vars` (and `rep`), renamed canonically."""
    canon = dict(zip(vars, index_vars(len(vars))))
    if rep is not None:
        canon[rep] = REP
    t = subst(convert(thread), canon)
    s = subst(convert(index), canon)
    return Fragment(shape, lambda *_: t, lambda *_: s, replicate)

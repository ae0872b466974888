"""The statement and expression interpreter of the tile IR.

Blocks of a `T.Kernel` run one after another. A `T.Parallel` (or `T.vectorized`) loop is not
iterated: its variable becomes a numpy array along a new *lane* axis and the body runs once
over all iterations, masked where an `if` splits them. Lane axes are prepended, so the lane
shape is (innermost loop, ..., outermost loop) and every value broadcasts against it. Serial
loops (`T.serial`, `range`, `T.Pipelined`, `T.unroll`) are Python loops.

What no target defines is an error at the statement's source line: an on-chip index outside
the tile, a read of an element nothing wrote, int32 overflow (and, in strict mode, integer
division by zero, which every target defines as numpy does: 0), and races (two iterations of
one T.Parallel loop writing different values to one element, or one reading what another
wrote; two blocks writing one global element). So is an element access outside a global
tensor (`B[i] = A[i]` with i == M): the compiled targets read 0 and drop the store there,
which hides a missing guard, so the debugging target reports it unless it is `-lenient`.
Tile copies (`T.copy`) keep their zero-fill / drop at ragged edges: that is their meaning.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Dict, Optional

import numpy as np

from .. import ir
from ..ir import BinOp, Call, Cast, Const, Expr, Load, Select, UnOp, Var
from ..language.printing import SPECS, format_line
from . import tileops
from .errors import (ArithmeticFault, InterpError, OutOfBoundsError, RaceError,
                     UninitializedReadError)
from .memory import OWNER_LIMIT, Mem, first_index
from .values import atomic_combine, cast_value, compute_dtype, format_value, storage_dtype, to_compute

__all__ = ["Machine"]

_CMP = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
        "==": np.equal, "!=": np.not_equal}
_ARITH = {"+": np.add, "-": np.subtract, "*": np.multiply, "&": np.bitwise_and,
          "|": np.bitwise_or, "^": np.bitwise_xor, "<<": np.left_shift, ">>": np.right_shift}
_CALLS = {"exp": np.exp, "exp2": np.exp2, "log": np.log, "log2": np.log2, "sqrt": np.sqrt,
          "tanh": np.tanh, "sin": np.sin, "cos": np.cos, "floor": np.floor, "ceil": np.ceil,
          "rsqrt": lambda x: 1 / np.sqrt(x), "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
          "erf": np.vectorize(math.erf, otypes=[np.float64])}


def _and(mask, c):
    return c if mask is True else mask & c


def _any(mask) -> bool:
    return mask is True or bool(np.any(mask))


class Machine:
    """Runs one PrimFunc on bound arguments: `env` maps parameters (and symbolic sizes) to
    values, `mems` maps global buffer names to their `Mem`."""

    def __init__(self, func: ir.PrimFunc, env: dict, mems: Dict[str, Mem], strict: bool = False,
                 lenient: bool = False):
        self.func = func
        self.env: Dict[Var, Any] = dict(env)
        self.mem = dict(mems)
        self.strict = strict
        self.lenient = lenient   # global element accesses outside a tensor: 0 / dropped, no error
        self.lanes: tuple = ()
        self.span = func.span
        self.block = 0           # running block's id + 1 (0: outside any T.Kernel)
        self.grid: tuple = ()
        self.decl_depth: Dict[Var, int] = {}
        self.consts: Dict[Const, np.ndarray] = {}

    # ---- errors ----

    def error(self, cls, msg: str, hint: Optional[str] = None):
        return cls(f"{self.func.name}: {msg}", self.span, hint)

    def block_name(self, block_id: int) -> str:
        n, idx = block_id - 1, []
        for g in self.grid:
            idx.append(n % g)
            n //= g
        return "(" + ", ".join(str(i) for i in idx) + ")" if len(idx) > 1 else str(idx[0])

    def access_failure(self, mem: Mem):
        """The `fail(kind, index, other)` callback of `Mem.read` / `Mem.write` for `mem`."""
        def fail(kind: str, index: tuple, other):
            at = f"{mem.name}[{', '.join(str(i) for i in index)}]"
            if kind == "uninitialized":
                if mem.on_chip:
                    raise self.error(UninitializedReadError, f"'{at}' is read before anything was written to it",
                                     hint=f"fill '{mem.name}' (T.copy / T.fill / T.clear or a store) before "
                                          f"reading it; a block starts with undefined tiles")
                raise self.error(UninitializedReadError, f"output '{at}' is read before the kernel wrote it",
                                 hint="outputs allocated for the caller (out_idx) start undefined")
            other_name = self.block_name(other)
            if kind == "block-read":
                raise self.error(RaceError, f"block {self.block_name(self.block)} reads '{at}', which block "
                                            f"{other_name} wrote in the same T.Kernel",
                                 hint="blocks run in any order, at the same time: a block may only read "
                                      "global elements that no other block of this kernel writes")
            raise self.error(RaceError, f"blocks {other_name} and {self.block_name(self.block)} both write "
                                        f"'{at}', with different values",
                             hint="check how the block indices map to tiles: blocks run in any order")
        return fail

    # ---- statements ----

    def run(self) -> None:
        self.stmt(self.func.body, True)

    def stmt(self, s: ir.Stmt, mask) -> None:
        if getattr(s, "span", None) is not None:
            self.span = s.span
        getattr(self, "s_" + type(s).__name__)(s, mask)

    def s_Seq(self, s, mask):
        for x in s.stmts:
            self.stmt(x, mask)

    def s_Evaluate(self, s, mask):
        self.ev(s.value, mask)

    def s_Decl(self, s, mask):
        self.env[s.var] = self.ev(s.value, mask)
        self.decl_depth[s.var] = len(self.lanes)

    def s_Assign(self, s, mask):
        new = self.ev(s.value, mask)
        old = self.env[s.var]
        outer = len(self.lanes) - self.decl_depth.get(s.var, 0)
        if outer > 0:
            new = self._collapse(s.var, new, old, mask, outer)
        elif mask is not True:
            new = np.where(mask, new, old)
        self.env[s.var] = np.asarray(new).astype(compute_dtype(s.var.dtype), copy=False)

    def _collapse(self, var: Var, new, old, mask, axes: int):
        """Assigning, inside T.Parallel iterations, a variable declared outside them: fine when
        every active iteration assigns the same value, a race otherwise."""
        shape = self.lanes
        m = np.broadcast_to(True if mask is True else mask, shape).reshape(
            (-1,) + shape[axes:])
        v = np.broadcast_to(new, shape).reshape((-1,) + shape[axes:])
        pick = np.argmax(m, axis=0)
        chosen = np.take_along_axis(v, pick[None], axis=0)[0]
        differ = m & (v != chosen[None])
        if np.any(differ):
            raise self.error(RaceError, f"iterations of a T.Parallel loop assign different values to "
                                        f"'{var.name}', which is declared outside the loop",
                             hint="iterations run at the same time on the GPU: declare the variable "
                                  "inside the loop, or accumulate with T.reduce_* over a tile")
        active = np.any(m, axis=0)
        return np.where(active, chosen, np.broadcast_to(old, active.shape) if np.ndim(old) else old)

    def s_If(self, s, mask):
        c = self.ev(s.cond, mask)
        if np.ndim(c) == 0 and mask is True:
            if bool(c):
                self.stmt(s.then, mask)
            elif s.else_ is not None:
                self.stmt(s.else_, mask)
            return
        then_mask = _and(mask, c)
        if _any(then_mask):
            self.stmt(s.then, then_mask)
        if s.else_ is not None:
            else_mask = _and(mask, ~np.asarray(c))
            if _any(else_mask):
                self.stmt(s.else_, else_mask)

    def s_For(self, s, mask):
        start, extent = self.ev(s.start, mask), self.ev(s.extent, mask)
        if s.kind in ("parallel", "vectorized"):
            return self._lanes_loop(s, start, extent, mask)
        if np.ndim(start) == 0 and np.ndim(extent) == 0:
            lo, hi = int(start), int(start) + int(extent)
            for k in range(lo, hi):
                self.env[s.var] = np.int64(k)
                self.stmt(s.body, mask)
            return
        # A serial loop whose bounds differ between T.Parallel iterations.
        act = np.broadcast_to(True if mask is True else mask, self.lanes)
        st, en = np.broadcast_to(start, self.lanes), np.broadcast_to(start + extent, self.lanes)
        if not act.any():
            return
        for k in range(int(st[act].min()), int(en[act].max())):
            self.env[s.var] = np.int64(k)
            m = _and(mask, (st <= k) & (k < en))
            if _any(m):
                self.stmt(s.body, m)

    def _lanes_loop(self, s, start, extent, mask):
        if np.ndim(extent) == 0:
            n, inner = int(extent), None
        else:
            act = np.broadcast_to(True if mask is True else mask, self.lanes)
            n = int(np.broadcast_to(extent, self.lanes)[act].max()) if act.any() else 0
            inner = extent
        if n <= 0:
            return
        saved_lanes, saved_span = self.lanes, self.span
        steps = np.arange(n, dtype=np.int64).reshape((n,) + (1,) * len(saved_lanes))
        self.lanes = (n,) + saved_lanes
        new_mask = mask
        if inner is not None:
            new_mask = _and(mask, steps < inner)
        self.env[s.var] = start + steps
        outermost = not saved_lanes
        try:
            self.stmt(s.body, new_mask)
        finally:
            self.lanes = saved_lanes
            self.span = saved_span
            if outermost:  # the end of a T.Parallel nest synchronises the block
                for m in self.mem.values():
                    m.writer = None

    def s_Kernel(self, k, mask):
        grid = [int(self.ev(g, True)) for g in k.grid]
        self.grid = tuple(grid)
        written = ir.stored_buffers(k)
        for name in written:
            mem = self.mem.get(name)
            if mem is not None and not mem.on_chip and mem.data.size <= OWNER_LIMIT:
                mem.owner = np.zeros(mem.data.shape, np.int32)
        try:
            total = int(np.prod(grid)) if grid else 1
            for lin in range(max(total, 0)):
                n = lin
                for v, g in zip(k.block_vars, grid):
                    self.env[v] = np.int64(n % g)
                    n //= g
                self.block = lin + 1
                for b in k.allocs:
                    shape = b.static_shape
                    self.mem[b.name] = Mem(b, np.zeros(shape, storage_dtype(b.dtype)),
                                           written=np.zeros(shape, bool))
                self.stmt(k.body, mask)
        finally:
            self.block = 0
            for b in k.allocs:
                self.mem.pop(b.name, None)
            for name in written:
                if name in self.mem:
                    self.mem[name].owner = None

    def s_Store(self, s, mask):
        mem = self.mem[s.buffer.name]
        value = self.ev(s.value, mask)
        idx = [self.ev(i, mask) for i in s.indices]
        if s.atomic:
            self._atomic(s, mem, idx, value, mask)
            return
        if not self.lanes:
            if mask is not True and not bool(mask):
                return
            key = tuple(int(i) for i in idx)
            if not self._in_bounds(mem, key):
                return
            mem.write(key, np.asarray(value), self.block, self.access_failure(mem))
            return
        key, sel = self._lane_access(mem, idx, mask)
        if key is None:
            return
        vals = np.broadcast_to(value, self.lanes)[sel].astype(mem.data.dtype)
        self._check_lane_writes(mem, key, vals, sel)
        mem.write(key, vals, self.block, self.access_failure(mem))

    def _atomic(self, s, mem: Mem, idx: list, value, mask) -> None:
        dt = mem.buffer.dtype
        combine = lambda old, v: atomic_combine(s.atomic, old, v, dt)  # noqa: E731
        if not self.lanes:
            if mask is not True and not bool(mask):
                return
            key = tuple(int(i) for i in idx)
            if self._in_bounds(mem, key):
                mem.atomic([key], [value], combine)
            return
        key, sel = self._lane_access(mem, idx, mask)
        if key is None:
            return
        # Iterations in loop order (lanes are innermost-first), as one CPU core runs them.
        shape = self.lanes
        keys = [np.broadcast_to(np.asarray(i, np.int64), shape).T[sel.T] for i in idx]
        vals = np.broadcast_to(value, shape).T[sel.T]
        mem.atomic(list(zip(*(k.tolist() for k in keys))), list(vals), combine)

    def s_ExternCall(self, s, mask):
        spec = SPECS.get(s.name)
        if spec is None:
            raise self.error(InterpError, f"the interpreter cannot run extern function '{s.name}'")
        values = [self.ev(a, mask) for a in s.args]
        shape = self.lanes
        act = np.broadcast_to(True if mask is True else mask, shape).T
        cols = [np.broadcast_to(v, shape).T[act] for v in values]
        n_ctx = len(spec.context)
        dt = s.args[-1].dtype
        for row in zip(*cols) if cols else ():
            line = format_line(spec, row[:n_ctx], row[n_ctx:-1], format_value(row[-1], dt))
            print(line, file=sys.stdout, flush=True)

    # tile operations: once per block, never inside T.Parallel iterations
    def _tile(self, fn, s, mask):
        if self.lanes:
            raise self.error(InterpError, f"T.{type(s).__name__.lower()} inside a T.Parallel loop",
                             hint="tile operations act on whole tiles once per block")
        if mask is True or bool(mask):
            fn(self, s)

    def s_Copy(self, s, mask): self._tile(tileops.copy, s, mask)
    def s_Fill(self, s, mask): self._tile(tileops.fill, s, mask)
    def s_Gemm(self, s, mask): self._tile(tileops.gemm, s, mask)
    def s_Reduce(self, s, mask): self._tile(tileops.reduce, s, mask)
    def s_CumSum(self, s, mask): self._tile(tileops.cumsum, s, mask)

    # ---- element access ----

    def _in_bounds(self, mem: Mem, key: tuple) -> bool:
        ok = all(0 <= i < n for i, n in zip(key, mem.data.shape))
        if not ok and (mem.on_chip or not self.lenient):
            self.out_of_bounds(mem, key)
        return ok

    def out_of_bounds(self, mem: Mem, key: tuple):
        shape = tuple(mem.data.shape)
        where = "tile" if mem.on_chip else "tensor"
        hint = ("on-chip tiles have a fixed shape: check the loop extents and index arithmetic"
                if mem.on_chip else "guard the access (if i < M: ...) for the blocks that overhang "
                "the tensor; compiled targets read 0 and drop the store there, which hides the bug")
        raise self.error(OutOfBoundsError, f"index {mem.name}[{', '.join(str(i) for i in key)}] is out of "
                                           f"bounds for {where} '{mem.name}' of shape {shape}", hint=hint)

    def _lane_access(self, mem: Mem, idx: list, mask):
        """(key of the in-range active lanes, their selector) for an element access inside
        T.Parallel iterations; key is None when no lane touches memory."""
        shape = self.lanes
        act = np.broadcast_to(True if mask is True else mask, shape)
        ib = [np.broadcast_to(np.asarray(i, np.int64), shape) for i in idx]
        inb = np.ones(shape, bool)
        for i, n in zip(ib, mem.data.shape):
            inb &= (i >= 0) & (i < n)
        oob = act & ~inb
        if (mem.on_chip or not self.lenient) and oob.any():
            pos = tuple(reversed(np.unravel_index(int(np.argmax(oob.T)), oob.T.shape)))
            self.out_of_bounds(mem, tuple(int(i[pos]) for i in ib))
        sel = act & inb
        return (tuple(i[sel] for i in ib) if sel.any() else None), sel

    def _lane_ids(self, sel) -> np.ndarray:
        return np.arange(int(np.prod(self.lanes)), dtype=np.int64).reshape(self.lanes)[sel] + 1

    def _check_lane_writes(self, mem: Mem, key: tuple, vals: np.ndarray, sel) -> None:
        flat = np.ravel_multi_index(key, mem.data.shape) if key else np.zeros(0, np.int64)
        if flat.size > 1:
            order = np.argsort(flat, kind="stable")
            f, v = flat[order], vals[order]
            dup = (f[1:] == f[:-1]) & (v[1:] != v[:-1])
            if v.dtype.kind == "f":
                dup &= ~(np.isnan(v[1:]) & np.isnan(v[:-1]))
            if dup.any():
                at = np.unravel_index(int(f[1:][dup][0]), mem.data.shape)
                raise self.error(RaceError, f"iterations of a T.Parallel loop write different values to "
                                            f"'{mem.name}[{', '.join(str(int(i)) for i in at)}]'",
                                 hint="iterations run at the same time on the GPU: give each its own "
                                      "element, or combine them with T.reduce_*")
        if not mem.on_chip:
            return
        ids = self._lane_ids(sel)
        writer = self._writer(mem)
        prev = writer[key]
        old = mem.data[key]
        bad = (prev != 0) & (prev != ids) & (old != vals)
        if bad.any():
            self._lane_race(mem, key, bad, "writes")
        writer[key] = ids

    def _writer(self, mem: Mem) -> np.ndarray:
        if mem.writer is None or mem.writer[0] != self.lanes:
            mem.writer = (self.lanes, np.zeros(mem.data.shape, np.int64))
        return mem.writer[1]

    def _lane_race(self, mem: Mem, key: tuple, bad, what: str):
        at = first_index(key, bad)
        raise self.error(RaceError, f"one iteration of a T.Parallel loop {what} "
                                    f"'{mem.name}[{', '.join(str(i) for i in at)}]', which another "
                                    f"iteration of the same loop wrote",
                         hint="iterations run at the same time on the GPU, with no barrier between "
                              "them: split the loop in two (consecutive T.Parallel loops are ordered)")

    def load(self, e: Load, mask):
        mem = self.mem[e.buffer.name]
        idx = [self.ev(i, mask) for i in e.indices]
        cd = compute_dtype(e.dtype)
        if not self.lanes:
            if mask is not True and not bool(mask):
                return np.zeros((), cd)
            key = tuple(int(i) for i in idx)
            if not self._in_bounds(mem, key):
                return np.zeros((), cd)
            return to_compute(mem.read(key, self.block, self.access_failure(mem)), e.dtype)
        key, sel = self._lane_access(mem, idx, mask)
        out = np.zeros(self.lanes, mem.data.dtype)
        if key is None:
            return out.astype(cd)
        vals = mem.read(key, self.block, self.access_failure(mem))
        if mem.writer is not None and mem.writer[0] == self.lanes:
            prev = mem.writer[1][key]
            bad = (prev != 0) & (prev != self._lane_ids(sel))
            if bad.any():
                self._lane_race(mem, key, bad, "reads")
        out[sel] = vals
        return out.astype(cd)

    # ---- expressions ----

    def ev(self, e: Expr, mask) -> Any:
        return getattr(self, "e_" + type(e).__name__)(e, mask)

    def e_Const(self, e: Const, mask):
        c = self.consts.get(e)
        if c is None:
            c = self.consts[e] = np.asarray(e.value, compute_dtype(e.dtype))
        return c

    def e_Var(self, e: Var, mask):
        try:
            return self.env[e]
        except KeyError:
            raise self.error(InterpError, f"variable '{e.name}' has no value here") from None

    def e_Load(self, e: Load, mask):
        return self.load(e, mask)

    def e_Cast(self, e: Cast, mask):
        return cast_value(self.ev(e.value, mask), e.value.dtype, e.dtype)

    def e_Select(self, e: Select, mask):
        c = np.asarray(self.ev(e.cond, mask))
        t = self.ev(e.t, _and(mask, c))
        f = self.ev(e.f, _and(mask, ~c))
        return np.where(c, t, f).astype(compute_dtype(e.dtype), copy=False)

    def e_UnOp(self, e: UnOp, mask):
        a = np.asarray(self.ev(e.a, mask))
        return np.logical_not(a) if e.op == "not" else np.invert(a)

    def e_Call(self, e: Call, mask):
        xs = [np.asarray(self.ev(a, mask)) for a in e.args]
        cd = compute_dtype(e.dtype)
        with np.errstate(all="ignore"):
            if e.op == "abs":
                r = np.where(xs[0] < 0, -xs[0], xs[0]) if e.dtype.is_int else np.abs(xs[0])
            elif e.op == "pow":
                r = np.power(xs[0], xs[1])
            else:
                r = _CALLS[e.op](xs[0])
        return np.asarray(r).astype(cd, copy=False)

    def e_BinOp(self, e: BinOp, mask):
        op = e.op
        if op in ("and", "or"):
            a = np.asarray(self.ev(e.a, mask))
            b = self.ev(e.b, _and(mask, a if op == "and" else ~a))
            return (a & b) if op == "and" else (a | b)
        a, b = np.asarray(self.ev(e.a, mask)), np.asarray(self.ev(e.b, mask))
        cd = compute_dtype(e.dtype)
        with np.errstate(all="ignore"):
            if op in _CMP:
                return _CMP[op](a, b)
            if op == "min":
                return np.where(a < b, a, b)
            if op == "max":
                return np.where(a > b, a, b)
            if op == "/":
                return np.asarray(a / b).astype(cd, copy=False)
            if op in ("//", "%"):
                return self._divide(op, a, b, mask, e).astype(cd, copy=False)
            r = np.asarray(_ARITH[op](a, b))
            if e.dtype.name == "int32" and op in ("+", "-", "*"):
                self._check_int32(e, a, b, r, mask)
            return r.astype(cd, copy=False)

    def _divide(self, op: str, a, b, mask, e: BinOp):
        if e.dtype.is_float:
            q = np.floor(a / b)
            return q if op == "//" else a - q * b
        # Every target gives numpy's answer (x // 0 == x % 0 == 0, MIN // -1 wraps); strict
        # mode reports a zero divisor, which is seldom meant.
        if self.strict and np.any(_and(mask, b == 0)):
            raise self.error(ArithmeticFault, f"integer division by zero in '{ir.expr_str(e)}'",
                             hint="guard the divisor (T.if_then_else / if) or use a float division")
        return np.asarray(np.floor_divide(a, b) if op == "//" else np.mod(a, b))

    def _check_int32(self, e: BinOp, a, b, r, mask):
        wide = _ARITH[e.op](a.astype(np.int64), b.astype(np.int64))
        bad = _and(mask, wide != r)
        if np.any(bad):
            w = int(np.broadcast_to(wide, np.broadcast_shapes(np.shape(wide), np.shape(bad)))[bad].flat[0]) \
                if np.ndim(bad) else int(wide)
            raise self.error(ArithmeticFault, f"int32 overflow: '{ir.expr_str(e)}' = {w} does not fit in int32",
                             hint="compute indices in 64 bits: tensors may have more than 2^31 "
                                  "elements (declare the scalar T.int64, or T.cast(x, \"int64\") first)")

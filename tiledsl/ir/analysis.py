"""Integer interval analysis: what range can an index expression take?

Used to drop bounds guards that can never fail (a tile that divides the tensor) and to pick
C's `/` over a floor-division helper when both sides are known non-negative.
"""
from __future__ import annotations

from typing import Mapping, Optional, Tuple

from .expr import BinOp, Cast, Const, Expr, Select, Var

Interval = Tuple[Optional[int], Optional[int]]  # inclusive; None means unbounded
UNBOUNDED: Interval = (None, None)


def bound(e: Expr, ranges: Mapping[Var, Interval]) -> Interval:
    """A conservative inclusive interval containing every value of integer expression `e`."""
    if isinstance(e, Const):
        if e.dtype.is_float:
            return UNBOUNDED
        return (int(e.value), int(e.value))
    if isinstance(e, Var):
        return ranges.get(e, UNBOUNDED)
    if isinstance(e, Cast) and e.dtype.is_int and e.value.dtype.is_int:
        return bound(e.value, ranges)
    if isinstance(e, Select):
        (a0, a1), (b0, b1) = bound(e.t, ranges), bound(e.f, ranges)
        return (_min(a0, b0), _max(a1, b1))
    if not isinstance(e, BinOp) or not e.dtype.is_int:
        return UNBOUNDED
    (a0, a1), (b0, b1) = bound(e.a, ranges), bound(e.b, ranges)
    op = e.op
    if op == "+":
        return (_add(a0, b0), _add(a1, b1))
    if op == "-":
        return (_sub(a0, b1), _sub(a1, b0))
    if op == "*":
        if None in (a0, a1, b0, b1):
            if a0 is not None and b0 is not None and a0 >= 0 and b0 >= 0:
                return (a0 * b0, None)
            return UNBOUNDED
        prods = [a0 * b0, a0 * b1, a1 * b0, a1 * b1]
        return (min(prods), max(prods))
    if op == "//" and b0 is not None and b0 == b1 and b0 > 0:
        return (None if a0 is None else a0 // b0, None if a1 is None else a1 // b0)
    if op == "%" and b0 is not None and b0 == b1 and b0 > 0:
        if a0 is not None and a1 is not None and a0 >= 0 and a1 < b0:
            return (a0, a1)
        return (0, b0 - 1)
    if op == "min":
        return (_min(a0, b0), _min2(a1, b1))
    if op == "max":
        return (_max2(a0, b0), _max(a1, b1))
    if op in ("&",) and a0 is not None and a0 >= 0 and b0 is not None and b0 >= 0:
        return (0, _min2(a1, b1))
    if op in ("^", "|") and a0 is not None and a0 >= 0 and b0 is not None and b0 >= 0 \
            and a1 is not None and b1 is not None:
        return (0, (1 << max(a1, b1).bit_length()) - 1)
    return UNBOUNDED


def loop_range(start: Expr, extent: Expr, ranges: Mapping[Var, Interval]) -> Interval:
    """The values a loop variable over `[start, start + extent)` can take."""
    lo, start_hi = bound(start, ranges)
    ext_hi = bound(extent, ranges)[1]
    return (lo, None if start_hi is None or ext_hi is None else start_hi + ext_hi - 1)


def _add(x, y): return None if x is None or y is None else x + y
def _sub(x, y): return None if x is None or y is None else x - y
def _min(x, y): return None if x is None or y is None else min(x, y)
def _max(x, y): return None if x is None or y is None else max(x, y)
def _min2(x, y): return y if x is None else x if y is None else min(x, y)
def _max2(x, y): return y if x is None else x if y is None else max(x, y)


def provably(cond: Expr, ranges: Mapping[Var, Interval]) -> Optional[bool]:
    """True / False when a comparison is decided by the ranges alone, else None."""
    if isinstance(cond, Const):
        return bool(cond.value)
    if not isinstance(cond, BinOp):
        return None
    if cond.op == "and":
        a, b = provably(cond.a, ranges), provably(cond.b, ranges)
        if a is False or b is False:
            return False
        return True if a and b else None
    if cond.op not in ("<", "<=", ">", ">="):
        return None
    lo, hi = bound(cond.a - cond.b, ranges) if cond.a.dtype.is_int else UNBOUNDED
    if cond.op == "<":
        return True if hi is not None and hi < 0 else False if lo is not None and lo >= 0 else None
    if cond.op == "<=":
        return True if hi is not None and hi <= 0 else False if lo is not None and lo > 0 else None
    if cond.op == ">":
        return True if lo is not None and lo > 0 else False if hi is not None and hi <= 0 else None
    return True if lo is not None and lo >= 0 else False if hi is not None and hi < 0 else None

"""Index simplification for layout expressions, driven by the index ranges.

Reshape, compose and repeat substitute one layout's expressions into another's and produce
`(i * 32 + j) // 32`-style terms; these rules fold them back (`-> i`) so that printed layouts
stay readable and generated addresses stay cheap. Every rule is exact for integer floor
division and modulo given the ranges; nothing here guesses.
"""
from __future__ import annotations

from typing import Mapping

from tiledsl.ir.analysis import Interval, bound
from tiledsl.ir.expr import (BinOp, Call, Cast, Const, Expr, Load, Select, UnOp, Var, binop, cast,
                             logical_not, select)
from tiledsl.ir.functor import ExprRewriter

__all__ = ["simplify", "domain_ranges", "subst"]


def subst(e: Expr, mapping: Mapping[Var, Expr]) -> Expr:
    """Simultaneous substitution of variables, refolding constants.

    `tiledsl.ir.substitute` re-applies the mapping to a node that folds into a `Var` (with
    `{i: 0, j: i}`, `i * 2 + j` becomes `i`, which is then mapped again to `0`), so layouts,
    whose index variables are renamed into each other all the time, use this instead.
    """
    if not mapping:
        return e
    memo: dict = {}

    def go(x: Expr) -> Expr:
        key = id(x)
        if key in memo:
            return memo[key][1]
        if isinstance(x, Var):
            out = mapping.get(x, x)
        elif isinstance(x, BinOp):
            out = binop(x.op, go(x.a), go(x.b))
        elif isinstance(x, Select):
            out = select(go(x.cond), go(x.t), go(x.f))
        elif isinstance(x, Cast):
            out = cast(go(x.value), x.dtype)
        elif isinstance(x, UnOp):
            a = go(x.a)
            out = logical_not(a) if x.op == "not" else UnOp(x.op, a, x.dtype)
        elif isinstance(x, Load):
            out = Load(x.buffer, tuple(go(i) for i in x.indices), x.dtype)
        elif isinstance(x, Call):
            out = Call(x.op, tuple(go(a) for a in x.args), x.dtype)
        else:
            out = x
        memo[key] = (x, out)  # keep x alive so its id is not reused during this call
        return out

    return go(e)


def domain_ranges(vars_: tuple, shape: tuple) -> dict:
    """The inclusive ranges `{var: (0, extent - 1)}` of a layout's index variables."""
    return {v: (0, int(n) - 1) for v, n in zip(vars_, shape)}


def _terms(e: Expr) -> list:
    """`e` as a list of `(expr, coeff)` with an `(None, const)` term for the constant."""
    if isinstance(e, Const) and e.dtype.is_int:
        return [(None, int(e.value))]
    if isinstance(e, BinOp) and e.op == "+":
        return _terms(e.a) + _terms(e.b)
    if isinstance(e, BinOp) and e.op == "*" and isinstance(e.b, Const) and e.b.dtype.is_int:
        return [(x, c * int(e.b.value)) for x, c in _terms(e.a)]
    return [(e, 1)]


def _build(terms: list) -> Expr:
    out: Expr = Const(0)
    const = 0
    for x, c in terms:
        if x is None:
            const += c
        elif c != 0:
            out = out + (x if c == 1 else x * c)
    return out + const if const else out


def _within(iv: Interval, lo: int, hi: int) -> bool:
    return iv[0] is not None and iv[1] is not None and iv[0] >= lo and iv[1] <= hi


def _merge_div_mod(e: Expr) -> Expr:
    """x % c * k + x // c * (c * k) == x * k (floor division and modulo recombine)."""
    terms = _collect(_terms(e))
    for p, (x, k) in enumerate(terms):
        if not (isinstance(x, BinOp) and x.op == "%" and isinstance(x.b, Const)):
            continue
        partner = (binop("//", x.a, x.b), k * int(x.b.value))
        if partner in terms:
            q = terms.index(partner)
            rest = [t for r, t in enumerate(terms) if r not in (p, q)]
            return _merge_div_mod(_build(rest + [(x.a, k)]))
    # One canonical sum: left-associated, like terms merged, the constant last.
    return _build(terms)


def _collect(terms: list) -> list:
    merged: dict = {}
    for x, k in terms:
        merged[x] = merged.get(x, 0) + k
    return [(x, k) for x, k in merged.items() if k != 0 or x is None]


def _xor_operands(e: Expr) -> list:
    if isinstance(e, BinOp) and e.op == "^":
        return _xor_operands(e.a) + _xor_operands(e.b)
    return [e]


def _cancel_xor(e: Expr) -> Expr:
    """y ^ y == 0: a swizzle composed with itself folds back to the identity."""
    ops = _xor_operands(e)
    kept: list = []
    for x in ops:
        if x in kept:
            kept.remove(x)
        else:
            kept.append(x)
    if len(kept) == len(ops):
        return e
    out: Expr = Const(0)
    for x in kept:
        out = x if isinstance(out, Const) and out.value == 0 else out ^ x
    return out


class _Simplifier(ExprRewriter):
    def __init__(self, ranges: Mapping[Var, Interval]):
        self.ranges = ranges

    def visit_BinOp(self, e: BinOp) -> Expr:
        if not e.dtype.is_int:
            return e
        if e.op == "+":
            return _merge_div_mod(e)
        if e.op == "^":
            return _cancel_xor(e)
        if e.op not in ("//", "%") or not isinstance(e.b, Const):
            return e
        c = int(e.b.value)
        if c <= 0:
            return e
        a = e.a
        if _within(bound(a, self.ranges), 0, c - 1):
            return Const(0) if e.op == "//" else a
        # Floor identities: (x // p) // c == x // (p*c); (x % p) % c == x % c when c | p.
        if isinstance(a, BinOp) and isinstance(a.b, Const) and int(a.b.value) > 0:
            p = int(a.b.value)
            if e.op == "//" and a.op == "//":
                return self.expr(binop("//", a.a, p * c))
            if e.op == "%" and a.op == "%" and p % c == 0:
                return self.expr(binop("%", a.a, c))
        # Split a sum into the part that is a multiple of c and a remainder that fits in [0, c).
        terms = _terms(a)
        whole = [(x, k // c) for x, k in terms if k % c == 0 and (x is not None or k != 0)]
        if whole:
            r = _build([(x, k) for x, k in terms if k % c != 0])
            if _within(bound(r, self.ranges), 0, c - 1):
                return _build(whole) if e.op == "//" else r
            # (w*c + r) // c == w + r // c and (w*c + r) % c == r % c, for any integer r.
            if e.op == "//":
                return _build(whole) + self.expr(binop("//", r, c))
            return self.expr(binop("%", r, c))
        return e


def simplify(e: Expr, ranges: Mapping[Var, Interval]) -> Expr:
    """Fold floor-division and modulo terms that the index ranges decide."""
    return _Simplifier(ranges).expr(e)

"""Index simplification for layout expressions, driven by the index ranges.

Reshape, compose and repeat substitute one layout's expressions into another's and produce
`(i * 32 + j) // 32`-style terms; these rules fold them back (`-> i`) so that printed layouts
stay readable and generated addresses stay cheap. Every rule is exact for integer floor
division and modulo given the ranges; nothing here guesses.
"""
from __future__ import annotations

from typing import Mapping

from tiledsl.ir.analysis import Interval, bound
from tiledsl.ir.expr import BinOp, Const, Expr, Var, binop
from tiledsl.ir.functor import ExprRewriter

__all__ = ["simplify", "domain_ranges"]


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
    terms = _terms(e)
    for p, (x, k) in enumerate(terms):
        if not (isinstance(x, BinOp) and x.op == "%" and isinstance(x.b, Const)):
            continue
        partner = (binop("//", x.a, x.b), k * int(x.b.value))
        if partner in terms:
            q = terms.index(partner)
            rest = [t for r, t in enumerate(terms) if r not in (p, q)]
            return _merge_div_mod(_build(rest + [(x.a, k)]))
    return e


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

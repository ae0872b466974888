"""C expressions for IR expressions: shared by the kernel body and the host code."""
from __future__ import annotations

import math
from typing import Dict

from ..ir import BinOp, Call, Cast, Const, Expr, Load, Select, UnOp, Var
from ..ir.analysis import bound
from .names import CNames, c_from_storage, c_to_storage, c_value_type

__all__ = ["CExpr"]

_F32_CALLS = {"exp": "expf({0})", "exp2": "exp2f({0})", "log": "logf({0})", "log2": "log2f({0})",
              "sqrt": "sqrtf({0})", "rsqrt": "(1.0f / sqrtf({0}))", "abs": "fabsf({0})",
              "tanh": "tanhf({0})", "sin": "sinf({0})", "cos": "cosf({0})", "floor": "floorf({0})",
              "ceil": "ceilf({0})", "pow": "powf({0}, {1})", "erf": "erff({0})",
              "sigmoid": "(1.0f / (1.0f + expf(-({0}))))"}
_F64_CALLS = {k: v.replace("f(", "(").replace("1.0f", "1.0") for k, v in _F32_CALLS.items()}


def _wrap(dt, text: str) -> str:
    """C computes 8- and 16-bit integers in int: an IR op of such a type wraps to it, as numpy
    does, before a comparison or shift can see the wider value."""
    return f"(({c_value_type(dt)}){text})" if dt.is_int and dt.bits < 32 else text


class CExpr:
    """Renders expressions with the kernel's C names; `ranges` (variable -> interval) lets
    integer division use C's `/` where the dividend is known non-negative and the divisor
    positive (elsewhere `tdsl_floordiv` gives numpy's answer, division by 0 and -1 included)."""

    def __init__(self, names: CNames):
        self.names = names
        self.ranges: Dict[Var, tuple] = {}

    def expr(self, e: Expr) -> str:
        return getattr(self, "e_" + type(e).__name__)(e)

    def e_Const(self, e: Const) -> str:
        dt = e.dtype
        if dt.is_bool:
            return "true" if e.value else "false"
        if dt.is_int:
            v = int(e.value)
            text = str(v) if -2**31 <= v < 2**31 else f"INT64_C({v})"
            return text if dt.name in ("int64", "int32") else f"(({c_value_type(dt)}){text})"
        v = float(e.value)
        if math.isinf(v):
            text = "INFINITY" if v > 0 else "(-INFINITY)"
        elif math.isnan(v):
            text = "NAN"
        else:
            text = repr(v) + ("" if dt.name == "float64" else "f")
        return text if dt.name != "float64" or not math.isinf(v) else f"((double){text})"

    def e_Var(self, e: Var) -> str:
        return self.names.var(e)

    def e_Load(self, e: Load) -> str:
        return c_from_storage(e.dtype, f"{self.names.buffer(e.buffer)}[{self.expr(e.indices[0])}]")

    def e_Cast(self, e: Cast) -> str:
        v = self.expr(e.value)
        if e.dtype.is_narrow_float:  # round to the type: to its stored form and back
            return c_from_storage(e.dtype, c_to_storage(e.dtype, f"(float)({v})"))
        if e.dtype.is_bool:
            return f"(({v}) != 0)"
        return f"(({c_value_type(e.dtype)})({v}))"

    def e_Select(self, e: Select) -> str:
        return f"({self.expr(e.cond)} ? {self.expr(e.t)} : {self.expr(e.f)})"

    def e_UnOp(self, e: UnOp) -> str:
        return f"(!{self.expr(e.a)})" if e.op == "not" else _wrap(e.dtype, f"(~{self.expr(e.a)})")

    def e_Call(self, e: Call) -> str:
        table = _F64_CALLS if e.dtype.name == "float64" else _F32_CALLS
        args = [self.expr(a) for a in e.args]
        if e.op == "abs" and e.dtype.is_int:
            return f"(({args[0]}) < 0 ? -({args[0]}) : ({args[0]}))"
        return table[e.op].format(*args)

    def e_BinOp(self, e: BinOp) -> str:
        a, b = self.expr(e.a), self.expr(e.b)
        op = e.op
        if op in ("min", "max"):
            return f"tdsl_{op}<{c_value_type(e.dtype)}>({a}, {b})"
        if op == "and":
            return f"({a} && {b})"
        if op == "or":
            return f"({a} || {b})"
        if op in ("//", "%"):
            if e.dtype.is_float:
                return f"floor({a} / {b})" if op == "//" else f"({a} - floor({a} / {b}) * {b})"
            if self._nonneg(e.a) and self._positive(e.b):  # C's / is floor and cannot trap
                return f"({a} {'/' if op == '//' else '%'} {b})"
            fn = "tdsl_floordiv" if op == "//" else "tdsl_floormod"
            return f"{fn}<{c_value_type(e.dtype)}>({a}, {b})"
        if op in ("+", "-", "*", "<<"):
            return _wrap(e.dtype, f"({a} {op} {b})")
        return f"({a} {op} {b})"

    def _nonneg(self, e: Expr) -> bool:
        lo, _ = bound(e, self.ranges)
        return lo is not None and lo >= 0

    def _positive(self, e: Expr) -> bool:
        lo, _ = bound(e, self.ranges)
        return lo is not None and lo >= 1

"""Expressions of the IR: immutable values compared by structure.

Python operators build nodes (`i * 64 + j`, `i // 4`, `i ^ j`, `i < n`), folding constants as
they go, so layouts can be written as plain Python lambdas over `Var`s. `==` stays structural
equality (it is how passes notice that nothing changed); use `eq(a, b)` to build a comparison.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from .dtype import DType, bool_, dtype as as_dtype, float32, int64, promote

if TYPE_CHECKING:
    from .buffer import Buffer

__all__ = ["Expr", "Const", "Var", "BinOp", "UnOp", "Call", "Cast", "Select", "Load",
           "const", "convert", "binop", "eq", "ne", "logical_and", "logical_or", "logical_not",
           "min_", "max_", "select", "cast", "call", "ExprLike", "is_const", "INDEX"]

INDEX = int64  # every index and loop variable is 64-bit: tensors may exceed 2^31 elements.

ARITH_OPS = ("+", "-", "*", "/", "//", "%", "min", "max")
BIT_OPS = ("&", "|", "^", "<<", ">>")
CMP_OPS = ("<", "<=", ">", ">=", "==", "!=")
LOGIC_OPS = ("and", "or")
CALL_OPS = ("exp", "exp2", "log", "log2", "sqrt", "rsqrt", "abs", "tanh", "sin", "cos",
            "floor", "ceil", "pow", "sigmoid", "erf")


class Expr:
    """Base of all expression nodes. Subclasses are frozen dataclasses with a `dtype`."""

    __slots__ = ()
    dtype: DType

    # Arithmetic builds IR (constant-folded); see module docstring for `==`.
    def __add__(self, o): return binop("+", self, o)
    def __radd__(self, o): return binop("+", o, self)
    def __sub__(self, o): return binop("-", self, o)
    def __rsub__(self, o): return binop("-", o, self)
    def __mul__(self, o): return binop("*", self, o)
    def __rmul__(self, o): return binop("*", o, self)
    def __truediv__(self, o): return binop("/", self, o)
    def __rtruediv__(self, o): return binop("/", o, self)
    def __floordiv__(self, o): return binop("//", self, o)
    def __rfloordiv__(self, o): return binop("//", o, self)
    def __mod__(self, o): return binop("%", self, o)
    def __rmod__(self, o): return binop("%", o, self)
    def __xor__(self, o): return binop("^", self, o)
    def __rxor__(self, o): return binop("^", o, self)
    def __and__(self, o): return binop("&", self, o)
    def __rand__(self, o): return binop("&", o, self)
    def __or__(self, o): return binop("|", self, o)
    def __ror__(self, o): return binop("|", o, self)
    def __lshift__(self, o): return binop("<<", self, o)
    def __rshift__(self, o): return binop(">>", self, o)
    def __lt__(self, o): return binop("<", self, o)
    def __le__(self, o): return binop("<=", self, o)
    def __gt__(self, o): return binop(">", self, o)
    def __ge__(self, o): return binop(">=", self, o)
    def __neg__(self): return binop("-", const(0, self.dtype), self)

    def __bool__(self):
        raise TypeError(f"the truth value of IR expression {self} is only known at run time")

    def __str__(self) -> str:
        from .printer import expr_str
        return expr_str(self)


@dataclass(frozen=True, repr=False)
class Const(Expr):
    value: Union[int, float, bool]
    dtype: DType = INDEX

    def __repr__(self): return f"Const({self.value!r}, {self.dtype})"


@dataclass(frozen=True, repr=False)
class Var(Expr):
    name: str
    dtype: DType = INDEX

    def __repr__(self): return f"Var({self.name!r}, {self.dtype})"


@dataclass(frozen=True, repr=False)
class BinOp(Expr):
    op: str
    a: Expr
    b: Expr
    dtype: DType = field(default=INDEX)

    def __repr__(self): return f"BinOp({self.op!r}, {self.a!r}, {self.b!r})"


@dataclass(frozen=True, repr=False)
class UnOp(Expr):
    op: str  # "not" or "~"
    a: Expr
    dtype: DType = INDEX

    def __repr__(self): return f"UnOp({self.op!r}, {self.a!r})"


@dataclass(frozen=True, repr=False)
class Call(Expr):
    """A math intrinsic (`exp`, `sqrt`, ...) applied elementwise."""
    op: str
    args: tuple
    dtype: DType = float32

    def __repr__(self): return f"Call({self.op!r}, {self.args!r})"


@dataclass(frozen=True, repr=False)
class Cast(Expr):
    value: Expr
    dtype: DType = float32

    def __repr__(self): return f"Cast({self.value!r}, {self.dtype})"


@dataclass(frozen=True, repr=False)
class Select(Expr):
    """`cond ? t : f`; only the chosen side is evaluated (so it may guard a load)."""
    cond: Expr
    t: Expr
    f: Expr
    dtype: DType = float32

    def __repr__(self): return f"Select({self.cond!r}, {self.t!r}, {self.f!r})"


@dataclass(frozen=True, repr=False)
class Load(Expr):
    buffer: "Buffer"
    indices: tuple
    dtype: DType = float32

    def __repr__(self): return f"Load({self.buffer.name}, {self.indices!r})"


ExprLike = Union[Expr, int, float, bool]


def const(value: Union[int, float, bool], dt: Any = None) -> Const:
    if dt is None:
        dt = bool_ if isinstance(value, bool) else INDEX if isinstance(value, int) else float32
    dt = as_dtype(dt)
    if dt.is_bool:
        value = bool(value)
    elif dt.is_int:  # wrapped into the type's range, as C converts (`x - 8` on uint8 is `x + 248`)
        value = int(value) % (1 << dt.bits)
        if dt.kind == "int" and value >= 1 << (dt.bits - 1):
            value -= 1 << dt.bits
    elif dt.kind == "float8":  # the value the type can hold (a float8 constant is stored, not computed)
        import numpy as np
        value = float(np.float32(value).astype(dt.numpy).astype(np.float32))
    else:
        value = float(value)
    return Const(value, dt)


def convert(value: Any, like: DType | None = None) -> Expr:
    """Turn a Python number into a `Const` (of type `like` where it fits)."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, (bool, int, float)) or hasattr(value, "__index__") or hasattr(value, "__float__"):
        if isinstance(value, bool):
            return const(value, like if like is not None and like.is_bool else bool_)
        if like is not None and not like.is_bool:
            if isinstance(value, float) and like.is_int:
                return const(value, float32)
            return const(value, like)
        if hasattr(value, "__index__"):
            return const(int(value))
        return const(float(value), float32)
    raise TypeError(f"cannot use {type(value).__name__} value {value!r} in an IR expression")


def is_const(e: Any, value: Any = None) -> bool:
    return isinstance(e, Const) and (value is None or e.value == value)


def _fold(op: str, x, y, dt: DType):
    if op == "+": r = x + y
    elif op == "-": r = x - y
    elif op == "*": r = x * y
    elif op == "/": r = x / y
    elif op == "//": r = x // y if dt.is_int else math.floor(x / y)
    elif op == "%": r = x % y
    elif op == "min": r = min(x, y)
    elif op == "max": r = max(x, y)
    elif op == "&": r = x & y
    elif op == "|": r = x | y
    elif op == "^": r = x ^ y
    elif op == "<<": r = x << y
    elif op == ">>": r = x >> y
    elif op == "<": return x < y
    elif op == "<=": return x <= y
    elif op == ">": return x > y
    elif op == ">=": return x >= y
    elif op == "==": return x == y
    elif op == "!=": return x != y
    elif op == "and": return bool(x and y)
    elif op == "or": return bool(x or y)
    else: raise ValueError(op)
    return r


def binop(op: str, a: ExprLike, b: ExprLike) -> Expr:
    """Build `a op b` with type promotion and local simplification."""
    if not isinstance(a, Expr) and not isinstance(b, Expr):
        a = convert(a)
    if not isinstance(a, Expr):
        a = convert(a, b.dtype)
    if not isinstance(b, Expr):
        b = convert(b, a.dtype)
    if op in LOGIC_OPS:
        dt = bool_
    elif op in CMP_OPS:
        dt = bool_
    else:
        dt = promote(a.dtype, b.dtype)
        if op == "/" and dt.is_int:
            raise TypeError(f"'/' of integers {a} and {b}: use '//' for integer division")
    if isinstance(a, Const) and isinstance(b, Const):
        if op in ("//", "%") and b.value == 0:
            raise ZeroDivisionError(f"{a} {op} {b}")
        if op == "/" and b.value == 0:
            raise ZeroDivisionError(f"{a} / {b}")
        return const(_fold(op, a.value, b.value, dt), dt)
    if op == "+":
        if is_const(b, 0) and dt == a.dtype: return a
        if is_const(a, 0) and dt == b.dtype: return b
        # Reassociate (x + c1) + c2 so edge conditions fold.
        if isinstance(b, Const) and isinstance(a, BinOp) and a.op == "+" and isinstance(a.b, Const):
            return binop("+", a.a, a.b.value + b.value)
    elif op == "-":
        if is_const(b, 0) and dt == a.dtype: return a
        if a == b and dt.is_int: return const(0, dt)
        if dt.is_int:
            diff = _linear_diff(a, b)
            if diff is not None:  # (i*16 + 16) - i*16 == 16: slice extents become constants
                return const(diff, dt)
        if isinstance(b, Const) and dt.is_int:
            return binop("+", a, -b.value)
    elif op == "*":
        if is_const(b, 1) and dt == a.dtype: return a
        if is_const(a, 1) and dt == b.dtype: return b
        if dt.is_int and (is_const(a, 0) or is_const(b, 0)): return const(0, dt)
        if isinstance(a, Const) and not isinstance(b, Const):
            a, b = b, a  # constants on the right: one canonical form
    elif op == "//" and dt.is_int:
        if is_const(b, 1): return a
    elif op == "%" and dt.is_int:
        if is_const(b, 1): return const(0, dt)
    elif op == "and":
        if is_const(a): return b if a.value else const(False)
        if is_const(b): return a if b.value else const(False)
    elif op == "or":
        if is_const(a): return const(True) if a.value else b
        if is_const(b): return const(True) if b.value else a
    if op not in CMP_OPS and op not in LOGIC_OPS:
        a, b = _cast_to(a, dt), _cast_to(b, dt)
    elif op in CMP_OPS:
        ct = promote(a.dtype, b.dtype)
        a, b = _cast_to(a, ct), _cast_to(b, ct)
    return BinOp(op, a, b, dt)


def _linear(e: Expr):
    """e as ({term: coefficient}, constant) when it is a sum of integer terms times constants."""
    if isinstance(e, Const) and e.dtype.is_int:
        return {}, e.value
    if isinstance(e, BinOp) and e.dtype.is_int and e.op in ("+", "-"):
        la, lb = _linear(e.a), _linear(e.b)
        if la is None or lb is None:
            return None
        sign = 1 if e.op == "+" else -1
        terms = dict(la[0])
        for t, c in lb[0].items():
            terms[t] = terms.get(t, 0) + sign * c
        return terms, la[1] + sign * lb[1]
    if isinstance(e, BinOp) and e.dtype.is_int and e.op == "*" and isinstance(e.b, Const):
        la = _linear(e.a)
        if la is None:
            return None
        return {t: c * e.b.value for t, c in la[0].items()}, la[1] * e.b.value
    if not e.dtype.is_int:
        return None
    return {e: 1}, 0


def _linear_diff(a: Expr, b: Expr):
    """a - b as an int when the two differ by a constant, else None."""
    la, lb = _linear(a), _linear(b)
    if la is None or lb is None:
        return None
    for t in set(la[0]) | set(lb[0]):
        if la[0].get(t, 0) != lb[0].get(t, 0):
            return None
    return la[1] - lb[1]


def _cast_to(e: Expr, dt: DType) -> Expr:
    return e if e.dtype == dt else cast(e, dt)


def eq(a: ExprLike, b: ExprLike) -> Expr: return binop("==", a, b)
def ne(a: ExprLike, b: ExprLike) -> Expr: return binop("!=", a, b)
def logical_and(a: ExprLike, b: ExprLike) -> Expr: return binop("and", a, b)
def logical_or(a: ExprLike, b: ExprLike) -> Expr: return binop("or", a, b)
def min_(a: ExprLike, b: ExprLike) -> Expr: return binop("min", a, b)
def max_(a: ExprLike, b: ExprLike) -> Expr: return binop("max", a, b)


def logical_not(a: ExprLike) -> Expr:
    a = convert(a)
    if isinstance(a, Const):
        return const(not a.value)
    return UnOp("not", cast(a, bool_) if not a.dtype.is_bool else a, bool_)


def cast(value: ExprLike, dt: Any) -> Expr:
    dt = as_dtype(dt)
    value = convert(value, dt)
    if value.dtype == dt:
        return value
    if isinstance(value, Const):
        return const(value.value, dt)
    return Cast(value, dt)


def select(cond: ExprLike, t: ExprLike, f: ExprLike) -> Expr:
    cond = convert(cond)
    if not isinstance(t, Expr) and isinstance(f, Expr):
        t = convert(t, f.dtype)
    t = convert(t)
    f = convert(f, t.dtype)
    dt = promote(t.dtype, f.dtype)
    t, f = _cast_to(t, dt), _cast_to(f, dt)
    if isinstance(cond, Const):
        return t if cond.value else f
    if t == f:
        return t
    return Select(cond if cond.dtype.is_bool else cast(cond, bool_), t, f, dt)


def call(op: str, *args: ExprLike) -> Expr:
    """A math intrinsic. Integer arguments are computed in float32, as in TileLang."""
    if op not in CALL_OPS:
        raise ValueError(f"unknown intrinsic {op!r}")
    xs = [convert(a) for a in args]
    if op == "abs" and xs[0].dtype.is_int:
        return Call(op, tuple(xs), xs[0].dtype)
    dt = xs[0].dtype if xs[0].dtype.is_float else float32
    for x in xs[1:]:
        dt = promote(dt, x.dtype)
    return Call(op, tuple(_cast_to(x, dt) for x in xs), dt)

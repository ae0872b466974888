"""Fast evaluation of index expressions, on Python ints or on numpy arrays.

`substitute` rebuilds and refolds the whole tree per point, which is far too slow for the
brute-force checks layouts rely on (bijectivity, inverses, bank conflicts) and for Hypothesis
loops. Instead an expression tuple is rendered once to Python source and `eval`-ed into a
lambda; the numpy flavour of that lambda evaluates a whole domain in one call.

Layout tables (see `Layout.inverse`) are reached through `Load`s of buffers whose values are
passed in `tables`; any other `Load` is an error: a layout is a pure function of its indices.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Mapping, Sequence

import numpy as np

from tiledsl.ir.expr import BinOp, Call, Cast, Const, Expr, Load, Select, UnOp, Var

__all__ = ["compile_exprs", "eval_scalar", "eval_vector"]

_PY_OPS = {"+", "-", "*", "/", "//", "%", "&", "|", "^", "<<", ">>",
           "<", "<=", ">", ">=", "==", "!="}


def _render(e: Expr, names: Mapping[Var, str], vector: bool, tables: frozenset) -> str:
    if isinstance(e, Const):
        return repr(e.value)
    if isinstance(e, Var):
        try:
            return names[e]
        except KeyError:
            raise ValueError(f"index expression uses unbound variable {e.name!r}") from None
    if isinstance(e, BinOp):
        a = _render(e.a, names, vector, tables)
        b = _render(e.b, names, vector, tables)
        if e.op in _PY_OPS:
            return f"({a} {e.op} {b})"
        if e.op in ("min", "max"):
            return f"_np.{e.op}imum({a}, {b})" if vector else f"{e.op}({a}, {b})"
        if e.op in ("and", "or"):
            return f"_np.logical_{e.op}({a}, {b})" if vector else f"({a} {e.op} {b})"
        raise ValueError(f"cannot evaluate operator {e.op!r} in a layout")
    if isinstance(e, Select):
        c = _render(e.cond, names, vector, tables)
        t = _render(e.t, names, vector, tables)
        f = _render(e.f, names, vector, tables)
        return f"_np.where({c}, {t}, {f})" if vector else f"({t} if {c} else {f})"
    if isinstance(e, Cast):
        v = _render(e.value, names, vector, tables)
        if e.dtype.is_int:
            return f"_as_int({v})" if vector else f"int({v})"
        if e.dtype.is_bool:
            return f"_as_bool({v})" if vector else f"bool({v})"
        return f"_as_float({v})" if vector else f"float({v})"
    if isinstance(e, UnOp):
        a = _render(e.a, names, vector, tables)
        if e.op == "not":
            return f"_np.logical_not({a})" if vector else f"(not {a})"
        return f"(~{a})"
    if isinstance(e, Load):
        name = e.buffer.name
        if name not in tables:
            raise ValueError(f"layout reads buffer {name!r}, which is not one of its tables")
        # Tables are 1-D: a multi-dimensional index is flattened row-major.
        flat = "0"
        for idx, ext in zip(e.indices, e.buffer.shape):
            flat = f"({flat} * {ext.value} + {_render(idx, names, vector, tables)})"
        return f"_t_{name}[{flat}]"
    if isinstance(e, Call):
        raise ValueError(f"math intrinsic {e.op!r} cannot appear in a layout")
    raise TypeError(f"cannot evaluate {type(e).__name__}")


def _as_int(x): return np.asarray(x).astype(np.int64)
def _as_bool(x): return np.asarray(x).astype(bool)
def _as_float(x): return np.asarray(x).astype(np.float64)


@lru_cache(maxsize=4096)
def compile_exprs(exprs: tuple, params: tuple, vector: bool = False,
                  tables: tuple = ()) -> Callable:
    """A function `f(*values_of_params) -> tuple` computing `exprs`.

    `tables` is a tuple of `(buffer_name, values)` pairs that `Load`s may read. With
    `vector=True` the arguments may be numpy int64 arrays (broadcast together).
    """
    names = {v: f"_a{k}" for k, v in enumerate(params)}
    table_names = frozenset(n for n, _ in tables)
    body = ", ".join(_render(e, names, vector, table_names) for e in exprs)
    src = f"lambda {', '.join(names.values())}: ({body}{',' if len(exprs) == 1 else ''})"
    env: dict = {"_np": np, "_as_int": _as_int, "_as_bool": _as_bool, "_as_float": _as_float}
    for n, values in tables:
        env[f"_t_{n}"] = np.asarray(values, dtype=np.int64) if vector else tuple(values)
    return eval(src, env)  # noqa: S307 - the source is rendered from IR nodes only


def eval_scalar(exprs: Sequence[Expr], params: Sequence[Var], values: Sequence[int],
                tables: tuple = ()) -> tuple:
    """Evaluate `exprs` at one point given as Python ints."""
    fn = compile_exprs(tuple(exprs), tuple(params), False, tables)
    return tuple(int(x) for x in fn(*(int(v) for v in values)))


def eval_vector(exprs: Sequence[Expr], params: Sequence[Var], arrays: Sequence,
                tables: tuple = ()) -> tuple:
    """Evaluate `exprs` on numpy arrays; every result is an int64 array of the common shape."""
    fn = compile_exprs(tuple(exprs), tuple(params), True, tables)
    arrays = [np.asarray(a, dtype=np.int64) for a in arrays]
    shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
    return tuple(np.broadcast_to(np.asarray(r, dtype=np.int64), shape) for r in fn(*arrays))

"""How IR values live in numpy: storage and compute dtypes, casts, C-compatible arithmetic.

The CPU target stores 16-bit floats as 16-bit patterns and computes in float; the interpreter
does the same (a float16 / bfloat16 expression is a float32 array until a cast or a store
rounds it), so the two agree bit for bit wherever the C compiler does not reorder arithmetic.
"""
from __future__ import annotations

import numpy as np

from ..ir import DType

__all__ = ["storage_dtype", "compute_dtype", "to_compute", "cast_value", "format_value", "atomic_combine"]


def storage_dtype(dt: DType) -> np.dtype:
    """The numpy dtype of a buffer's elements."""
    return dt.numpy


def compute_dtype(dt: DType) -> np.dtype:
    """The numpy dtype expressions of IR type `dt` are computed in."""
    if dt.is_narrow_float:
        return np.dtype(np.float32)
    return dt.numpy


def to_compute(x, dt: DType) -> np.ndarray:
    """Elements read from a buffer of type `dt`, as computed values."""
    return np.asarray(x).astype(compute_dtype(dt), copy=False)


def cast_value(x: np.ndarray, src: DType, dst: DType) -> np.ndarray:
    """IR `Cast`: round to nearest even into narrow floats, truncate floats into integers,
    wrap integers, and `!= 0` into bool (as the generated C does)."""
    x = np.asarray(x)
    if dst.is_bool:
        return x != 0
    if dst.is_narrow_float:
        with np.errstate(all="ignore"):
            return x.astype(np.float32).astype(dst.numpy).astype(np.float32)
    if dst.is_int and src.is_float:
        with np.errstate(invalid="ignore", over="ignore"):
            return np.trunc(x).astype(dst.numpy)
    return x.astype(compute_dtype(dst))


def atomic_combine(op: str, old: np.ndarray, value: np.ndarray, dt: DType) -> np.ndarray:
    """The stored result of `T.atomic_{op}` on elements holding `old` (storage values) with
    computed `value`s, combined as the generated code does (`old > v ? old : v` for max)."""
    o = to_compute(old, dt)
    v = np.asarray(value).astype(o.dtype, copy=False)
    with np.errstate(all="ignore"):
        if op == "add":
            new = o + v
        else:
            new = np.where(o > v if op == "max" else o < v, o, v)
    return cast_value(new, dt, dt).astype(dt.numpy, copy=False)


def format_value(v, dt: DType) -> str:
    """A printed value, formatted as the CPU target's printf formats it."""
    if dt.is_bool:
        return "True" if bool(v) else "False"
    if dt.is_int:
        return str(int(v))
    f = float(v)
    text = format(f, ".17g" if dt.name == "float64" else ".9g")
    return text

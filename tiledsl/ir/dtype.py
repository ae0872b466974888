"""Scalar data types of the IR.

A `DType` is a value (frozen, hashable); there is one per name, looked up with
`dtype("float32")`, which also accepts numpy dtypes, torch dtypes and `DType`s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DType", "dtype", "float16", "bfloat16", "float32", "float64", "float8_e4m3", "float8_e5m2",
           "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool_"]

# DLPack type codes (dlpack.h: kDLInt, kDLUInt, kDLFloat, kDLBfloat, kDLBool, kDLFloat8_e4m3fn,
# kDLFloat8_e5m2).
_DL_INT, _DL_UINT, _DL_FLOAT, _DL_BFLOAT, _DL_BOOL = 0, 1, 2, 4, 6
_DL_FLOAT8 = {"float8_e4m3": 10, "float8_e5m2": 12}

# Narrow float types numpy only knows through ml_dtypes; they travel as same-width unsigned views.
_ML_DTYPES = {"bfloat16": "bfloat16", "float8_e4m3": "float8_e4m3fn", "float8_e5m2": "float8_e5m2"}


@dataclass(frozen=True)
class DType:
    """A scalar type: `kind` is 'int', 'uint', 'float', 'bfloat', 'float8' or 'bool'.

    float8_e4m3 (4 exponent bits, 3 mantissa bits, no infinity, max 448; ml_dtypes'
    float8_e4m3fn) and float8_e5m2 (max 57344, with infinity) are storage types: arithmetic on
    them is float32, and storing into them rounds to nearest even."""

    name: str
    kind: str
    bits: int

    @property
    def is_float(self) -> bool:
        return self.kind in ("float", "bfloat", "float8")

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def is_bool(self) -> bool:
        return self.kind == "bool"

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    @property
    def dlpack_code(self) -> int:
        if self.kind == "float8":
            return _DL_FLOAT8[self.name]
        return {"int": _DL_INT, "uint": _DL_UINT, "float": _DL_FLOAT,
                "bfloat": _DL_BFLOAT, "bool": _DL_BOOL}[self.kind]

    @property
    def numpy_view(self) -> bool:
        """numpy holds it through ml_dtypes, which DLPack cannot carry: numpy arrays of it pass
        as their same-width unsigned view (bfloat16, float8)."""
        return self.name in _ML_DTYPES

    @property
    def is_narrow_float(self) -> bool:
        """Stored in 8 or 16 bits, computed in float32 (float16, bfloat16, float8_*)."""
        return self.is_float and self.bits < 32

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype holding values of this type (ml_dtypes for bfloat16 and float8)."""
        if self.name in _ML_DTYPES:
            import ml_dtypes
            return np.dtype(getattr(ml_dtypes, _ML_DTYPES[self.name]))
        return np.dtype("bool" if self.is_bool else self.name)

    def __call__(self, value):
        """`T.float32(0)`: a constant of this type (as in TileLang)."""
        from .expr import cast
        return cast(value, self)

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__


_ALL = {d.name: d for d in [
    DType("bool", "bool", 8),
    DType("int8", "int", 8), DType("int16", "int", 16),
    DType("int32", "int", 32), DType("int64", "int", 64),
    DType("uint8", "uint", 8), DType("uint16", "uint", 16),
    DType("uint32", "uint", 32), DType("uint64", "uint", 64),
    DType("float16", "float", 16), DType("bfloat16", "bfloat", 16),
    DType("float32", "float", 32), DType("float64", "float", 64),
    DType("float8_e4m3", "float8", 8), DType("float8_e5m2", "float8", 8),
]}
_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "bf16": "bfloat16",
            "fp16": "float16", "fp32": "float32", "fp64": "float64", "int": "int32",
            "float8_e4m3fn": "float8_e4m3", "fp8_e4m3": "float8_e4m3", "fp8_e5m2": "float8_e5m2"}

bool_ = _ALL["bool"]
int8, int16, int32, int64 = (_ALL[n] for n in ("int8", "int16", "int32", "int64"))
uint8, uint16, uint32, uint64 = (_ALL[n] for n in ("uint8", "uint16", "uint32", "uint64"))
float16, bfloat16, float32, float64 = (_ALL[n] for n in ("float16", "bfloat16", "float32", "float64"))
float8_e4m3, float8_e5m2 = _ALL["float8_e4m3"], _ALL["float8_e5m2"]


def numpy_view_dtypes() -> dict:
    """numpy dtype -> DType for the types numpy holds through ml_dtypes (see `numpy_view`)."""
    return {d.numpy: d for d in _ALL.values() if d.numpy_view}


def dtype(value: Any) -> DType:
    """Normalise a dtype given as a string, numpy / torch dtype or `DType`.

    >>> dtype("float32") is dtype(np.float32)
    True
    """
    if isinstance(value, DType):
        return value
    if isinstance(value, str):
        name = _ALIASES.get(value, value)
        if name in _ALL:
            return _ALL[name]
        raise TypeError(f"unknown dtype {value!r}; expected one of {sorted(_ALL)}")
    text = str(value)
    if text.startswith("torch."):
        return dtype(text[len("torch."):])
    try:
        np_name = np.dtype(value).name
    except TypeError:
        raise TypeError(f"unknown dtype {value!r}") from None
    return dtype(np_name)


def promote(a: DType, b: DType) -> DType:
    """The type of a binary arithmetic result (floats win, then the wider type)."""
    if "float8" in (a.kind, b.kind):  # float8 is storage only: its arithmetic is float32 (or wider)
        return float64 if float64 in (a, b) else float32
    if a == b:
        return a
    if a.is_float != b.is_float:
        return a if a.is_float else b
    if a.is_bool or b.is_bool:
        return b if a.is_bool else a
    if a.bits != b.bits:
        return a if a.bits > b.bits else b
    # Same width, different kind: float16 vs bfloat16 meet in float32; int vs uint in int.
    if a.is_float:
        return float32
    return a if a.kind == "int" else b

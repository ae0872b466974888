"""C identifiers for IR names, and C types for IR dtypes."""
from __future__ import annotations

import re

from ..ir import DType, Var

__all__ = ["CNames", "c_storage_type", "c_value_type"]

_KEYWORDS = set("""alignas alignof and asm auto bool break case catch char class const constexpr
continue default delete do double else enum explicit extern false float for friend goto if inline
int long mutable namespace new noexcept not nullptr operator or private protected public register
return short signed sizeof static struct switch template this throw true try typedef typename
union unsigned using virtual void volatile while xor main result args num_args self stream
INFINITY NAN""".split())
# C library functions and macros the generated code calls: a kernel variable of the same name
# would shadow them ("'exp' cannot be used as a function").
_KEYWORDS |= set("""exp expf exp2 exp2f log logf log2 log2f sqrt sqrtf fabs fabsf tanh tanhf sin sinf
cos cosf floor floorf ceil ceilf pow powf erf erff isinf isnan memcpy memset printf fflush stdout
snprintf vsnprintf free abort malloc posix_memalign va_start va_end va_list std omp_get_thread_num
INT64_C UINT64_C size_t uintptr_t int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t
uint64_t""".split())


class CNames:
    """A stable, collision-free C name for every variable and buffer of one kernel."""

    def __init__(self):
        self.by_key: dict = {}
        self.taken: set = set()

    def _name(self, key, base: str) -> str:
        if key in self.by_key:
            return self.by_key[key]
        name = re.sub(r"[^0-9A-Za-z_]", "_", base).replace("__", "_").strip("_") or "v"
        if name[0].isdigit() or name in _KEYWORDS or name.startswith("tdsl") or name.startswith("_"):
            name = "v_" + name
        candidate, n = name, 1
        while candidate in self.taken:
            candidate = f"{name}_{n}"
            n += 1
        self.taken.add(candidate)
        self.by_key[key] = candidate
        return candidate

    def var(self, v: Var) -> str:
        return self._name(("var", v.name), v.name)

    def buffer(self, b) -> str:
        return self._name(("buf", b.name), b.name)


_INT_TYPES = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
              "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t", "uint64": "uint64_t"}


def c_storage_type(dt: DType) -> str:
    """How elements are stored in memory."""
    if dt.name in ("float16", "bfloat16"):
        return "uint16_t"
    if dt.kind == "float8":
        return "uint8_t"
    return c_value_type(dt)


def c_value_type(dt: DType) -> str:
    """How values are computed (16-bit floats are computed in float)."""
    if dt.name in ("float16", "bfloat16", "float32") or dt.kind == "float8":
        return "float"
    if dt.name == "float64":
        return "double"
    if dt.is_bool:
        return "bool"
    return _INT_TYPES[dt.name]


# The prelude's conversions between a narrow float's stored bits and the float it is computed in.
_FROM_STORAGE = {"float16": "tdsl_h2f", "bfloat16": "tdsl_bf2f",
                 "float8_e4m3": "tdsl_e4m3_to_f", "float8_e5m2": "tdsl_e5m2_to_f"}
_TO_STORAGE = {"float16": "tdsl_f2h", "bfloat16": "tdsl_f2bf",
               "float8_e4m3": "tdsl_f_to_e4m3", "float8_e5m2": "tdsl_f_to_e5m2"}


def c_from_storage(dt: DType, stored: str) -> str:
    """The C value of an element of `dt` whose stored form is `stored`."""
    fn = _FROM_STORAGE.get(dt.name)
    return f"{fn}({stored})" if fn else stored


def c_to_storage(dt: DType, value: str) -> str:
    """The stored form of the C value `value` as an element of `dt` (narrow floats round)."""
    fn = _TO_STORAGE.get(dt.name)
    return f"{fn}({value})" if fn else value

"""The `T.` surface: names and meanings follow TileLang.

Inside a `@T.prim_func` these functions are never called: the frontend recognises them by
identity and builds IR (see `frontend.py`). Outside, the pure ones (`ceildiv`, `max`, `exp`,
...) work on Python numbers and on IR expressions, and the statement-like ones raise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .. import ir
from ..ir import dtype as _dtype
from ..ir.dtype import DType

__all__ = [
    "Tensor", "Buffer", "Kernel", "alloc_shared", "alloc_fragment", "alloc_local", "alloc_var",
    "annotate_layout", "copy", "gemm", "clear", "fill", "print", "reduce_max", "reduce_min", "reduce_sum", "reduce_abssum",
    "reduce_absmax", "cumsum", "atomic_add", "atomic_max", "atomic_min", "use_swizzle", "macro",
    "Parallel", "Pipelined", "serial", "unroll", "vectorized", "ceildiv",
    "max", "min", "clamp", "exp", "exp2", "log", "log2", "sqrt", "rsqrt", "abs", "tanh", "sigmoid",
    "cast", "if_then_else", "infinity", "nan", "dynamic", "symbolic", "GemmWarpPolicy",
    "float16", "bfloat16", "float32", "float64", "float8_e4m3", "float8_e5m2", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool",
]

# dtype objects double as scalar-parameter annotations: `def f(n: T.int32)`.
float16, bfloat16, float32, float64 = (_dtype(n) for n in ("float16", "bfloat16", "float32", "float64"))
float8_e4m3, float8_e5m2 = _dtype("float8_e4m3"), _dtype("float8_e5m2")
int8, int16, int32, int64 = (_dtype(n) for n in ("int8", "int16", "int32", "int64"))
uint8, uint16, uint32, uint64 = (_dtype(n) for n in ("uint8", "uint16", "uint32", "uint64"))
bool = _dtype("bool")  # noqa: A001 - TileLang's name

# Functions that only mean something inside a prim_func, mapped to the frontend's handler name.
STATEMENTS: dict[Callable, str] = {}


def _statement(handler: str):
    def deco(fn):
        def outside(*args, **kwargs):
            raise RuntimeError(f"T.{outside.__name__} can only be used inside a @T.prim_func "
                               f"(or a @T.macro called from one)")
        outside.__name__ = fn.__name__
        outside.__qualname__ = fn.__name__
        outside.__doc__ = fn.__doc__
        STATEMENTS[outside] = handler
        return outside
    return deco


@dataclass(frozen=True)
class Tensor:
    """Annotation of a global tensor parameter: `A: T.Tensor((M, K), "float16")`."""

    shape: tuple
    dtype: DType

    def __init__(self, shape: Sequence[Any], dtype: Any = "float32"):
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "dtype", _dtype(dtype))


Buffer = Tensor


def dynamic(name: str, dtype: Any = "int64") -> ir.Var:
    """A symbolic dimension: `M = T.dynamic("M")`, bound from the arguments at call time."""
    return ir.Var(name, _dtype(dtype))


symbolic = dynamic


class GemmWarpPolicy:
    """How a block's warps are tiled over the C tile (TileLang's names)."""
    Square = "square"
    FullRow = "full_row"
    FullCol = "full_col"


@_statement("kernel")
def Kernel(*grid, threads: int = 128):
    """`with T.Kernel(gx, gy, threads=128) as (bx, by):` a grid of blocks."""


@_statement("alloc_shared")
def alloc_shared(shape, dtype, scope: str = "shared"):
    """A tile shared by the block's threads (the CPU: per-worker scratch)."""


@_statement("alloc_fragment")
def alloc_fragment(shape, dtype):
    """A tile held in the block's registers, spread over threads by its Fragment layout."""


@_statement("alloc_local")
def alloc_local(shape, dtype):
    """A per-thread array."""


@_statement("alloc_var")
def alloc_var(dtype, init=None):
    """A mutable scalar: `acc = T.alloc_var("float32")`."""


@_statement("annotate_layout")
def annotate_layout(layouts: dict):
    """`T.annotate_layout({A_s: tiledsl.layout.swizzle_128b((64, 64), 16)})`: fix the layout
    of on-chip buffers; layout inference respects it (and fails if another source disagrees)."""


@_statement("copy")
def copy(src, dst):
    """Copy a region: `T.copy(A[by * 64, k * 32], A_s)`; out-of-range reads give 0."""


@_statement("gemm")
def gemm(A, B, C, transpose_A: "bool" = False, transpose_B: "bool" = False,
         policy: str = GemmWarpPolicy.Square, clear_accum: "bool" = False, k_pack: int = 1,
         wg_wait: int = 0):
    """`C += A @ B` on tiles (A, B shared or fragment; C fragment)."""


@_statement("print")
def print(obj, msg: str = ""):  # noqa: A001 - TileLang's name
    """Print a run-time value (once per block and loop iteration) or every element of a
    buffer, prefixed by `msg` and the block / loop indices; works on every target."""


@_statement("fill")
def fill(buffer, value):
    """Set every element of a tile to `value`."""


@_statement("clear")
def clear(buffer):
    """Set every element of a tile to zero."""


def _reduce(kind: str):
    @_statement("reduce")
    def reduce(src, dst, dim: int = -1, clear: "bool" = True):
        pass
    reduce.__doc__ = f"`dst[...] = {kind} of src along dim` (combined with dst unless clear)."
    STATEMENTS[reduce] = "reduce_" + kind
    return reduce


reduce_max, reduce_min, reduce_sum = _reduce("max"), _reduce("min"), _reduce("sum")
reduce_abssum, reduce_absmax = _reduce("abssum"), _reduce("absmax")
for _f, _n in ((reduce_max, "reduce_max"), (reduce_min, "reduce_min"), (reduce_sum, "reduce_sum"),
               (reduce_abssum, "reduce_abssum"), (reduce_absmax, "reduce_absmax")):
    _f.__name__ = _f.__qualname__ = _n


@_statement("cumsum")
def cumsum(src, dst=None, dim: int = 0, reverse: "bool" = False):
    """`dst[..., i, ...] = sum(src[..., :i + 1, ...])` along `dim` (from the end when reverse);
    on-chip tiles of one shape, in place when dst is omitted."""


def _atomic(op: str):
    @_statement(f"atomic_{op}")
    def fn(dst, value, memory_order=None):
        pass
    fn.__name__ = fn.__qualname__ = f"atomic_{op}"
    fn.__doc__ = (f"`T.atomic_{op}(C[i, j], v)`: C[i, j] = {op}(C[i, j], v) as one indivisible step, so "
                  f"blocks (or GPU threads) may update one element concurrently; "
                  f"`T.atomic_{op}(C[by * 64, bx * 64], C_f)` does it for every element of a tile.")
    return fn


atomic_add, atomic_max, atomic_min = (_atomic(op) for op in ("add", "max", "min"))


@_statement("use_swizzle")
def use_swizzle(panel_size: int = 8, order: str = "row", enable: "bool" = True):
    """Visit the blocks of a 2-D grid panel by panel (`panel_size` block rows, walked column by
    column, alternating direction) instead of row by row, so that blocks running at the same
    time share operand tiles in cache. Changes which (bx, by) a block gets, not the results."""


class Macro:
    """A Python helper whose body is expanded into the kernel that calls it (`@T.macro`)."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.__name__ = getattr(fn, "__name__", "macro")
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"T.macro '{self.__name__}' can only be called inside a @T.prim_func")

    def __repr__(self) -> str:
        return f"<T.macro {self.__name__}>"


def macro(fn: Callable) -> Macro:
    """Decorate a helper whose statements are expanded, at each call, into the calling kernel:

        @T.macro
        def online_update(S, m, l):
            ...   # T.* statements over the caller's tiles

    Arguments are the caller's tiles, run-time values and Python values; names inside resolve
    where the helper is defined. A final `return value` makes the call an expression (its statements run first)."""
    return Macro(fn)


@_statement("loop_parallel")
def Parallel(*extents):
    """`for i, j in T.Parallel(64, 64):` elementwise over a tile (the GPU splits it over threads)."""


@_statement("loop_pipelined")
def Pipelined(*args, num_stages: int = 2, order=None, stage=None, group=None):
    """`for k in T.Pipelined(n, num_stages=3):` a loop whose copies overlap with compute."""


@_statement("loop_serial")
def serial(*args):
    """`for i in T.serial(n)` / `T.serial(start, stop[, step])`: a sequential loop."""


@_statement("loop_unroll")
def unroll(*args):
    """A sequential loop the compiler is asked to unroll."""


@_statement("loop_vectorized")
def vectorized(*args):
    """A loop the compiler is asked to vectorise."""


# ---- pure functions: Python numbers in, Python numbers out; IR in, IR out ----

def _is_ir(*xs) -> "bool":
    return any(isinstance(x, ir.Expr) for x in xs)


def ceildiv(a, b):
    """`ceildiv(1000, 64) == 16`."""
    if _is_ir(a, b):
        return (ir.convert(a) + b - 1) // b
    return -(-a // b)


def max(a, b):  # noqa: A001 - TileLang's name
    return ir.max_(a, b) if _is_ir(a, b) else (a if a >= b else b)


def min(a, b):  # noqa: A001
    return ir.min_(a, b) if _is_ir(a, b) else (a if a <= b else b)


def clamp(x, lo, hi):
    """`T.min(T.max(x, lo), hi)`."""
    return min(max(x, lo), hi)


def _math(op: str, py: Callable[[float], float]):
    def fn(x):
        return ir.call(op, x) if _is_ir(x) else py(x)
    fn.__name__ = fn.__qualname__ = op
    fn.__doc__ = f"Elementwise {op}."
    return fn


exp = _math("exp", math.exp)
exp2 = _math("exp2", lambda x: 2.0 ** x)
log = _math("log", math.log)
log2 = _math("log2", math.log2)
sqrt = _math("sqrt", math.sqrt)
rsqrt = _math("rsqrt", lambda x: 1.0 / math.sqrt(x))
tanh = _math("tanh", math.tanh)
sigmoid = _math("sigmoid", lambda x: 1.0 / (1.0 + math.exp(-x)))


def abs(x):  # noqa: A001
    return ir.call("abs", x) if _is_ir(x) else (x if x >= 0 else -x)


def cast(x, dtype):
    """Convert to `dtype` (rounding to nearest for narrower floats)."""
    return ir.cast(x, dtype)


def if_then_else(cond, t, f):
    """`cond ? t : f`; only the chosen side is evaluated (it may guard a load)."""
    if not _is_ir(cond, t, f):
        return t if cond else f
    return ir.select(cond, t, f)


def nan(dtype: Any = "float32"):
    """A quiet NaN of a float dtype."""
    return ir.const(math.nan, dtype)


def infinity(dtype: Any = "float32"):
    """Positive infinity of a float dtype (`-T.infinity(dt)` for the identity of max)."""
    return ir.const(math.inf, dtype)

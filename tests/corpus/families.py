"""Kernel families the fuzzer draws from, each described by a frozen spec whose repr is the
Python that rebuilds it: a failing Hypothesis example becomes a corpus file by writing
`CASE = <the spec's repr>.case()` (see README.md and add_case.py).

Shapes are symbolic (`T.dynamic`), so one compiled kernel per configuration serves every
shape the fuzzer draws; the configuration (tiles, dtypes, stages, swizzle, threads) is what
selects a kernel.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import ml_dtypes
import numpy as np

import tiledsl
import tiledsl.language as T
from tiledsl.layout import swizzle

from . import Case

__all__ = ["GemmSpec", "RowSpec", "CopySpec", "DivSpec", "compiled", "gemm_kernel", "row_kernel",
           "copy_kernel", "div_kernel"]

NUMPY = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16,
         "float64": np.float64, "int8": np.int8, "int32": np.int32}
ACCUM = {"float32": "float32", "float16": "float32", "bfloat16": "float32", "float64": "float64",
         "int8": "int32", "int32": "int32"}
UNIT = {"float32": 2.0 ** -24, "float64": 2.0 ** -53, "int32": 0.0}


def _swizzled(shape, dtype: str):
    """The widest XOR swizzle whose rows fit the tile, or None."""
    bits = np.dtype(NUMPY[dtype]).itemsize * 8
    for width in (128, 64, 32):
        if shape[1] * bits % (width * 8) == 0:
            return swizzle(shape, bits, width)
    return None


def _swizzles(A_s, B_s, dtype: str) -> dict:
    out = {b: _swizzled(b.shape, dtype) for b in (A_s, B_s)}
    return {b: lay for b, lay in out.items() if lay is not None}


@functools.lru_cache(maxsize=None)
def gemm_kernel(block_M: int, block_N: int, block_K: int, dtype: str, trans_b: bool,
                num_stages: int, swizzle_tiles: bool, threads: int, trans_a: bool = False,
                shape: tuple = ()):
    """C = op(A) @ op(B) over symbolic M, N, K (or the static `shape` (M, N, K))."""
    M, N, K = shape or (T.dynamic("M"), T.dynamic("N"), T.dynamic("K"))
    acc = ACCUM[dtype]
    a_shape = (K, M) if trans_a else (M, K)
    as_shape = (block_K, block_M) if trans_a else (block_M, block_K)
    b_shape = (N, K) if trans_b else (K, N)
    bs_shape = (block_N, block_K) if trans_b else (block_K, block_N)

    @T.prim_func
    def gemm(A: T.Tensor(a_shape, dtype), B: T.Tensor(b_shape, dtype), C: T.Tensor((M, N), acc)):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=threads) as (bx, by):
            A_s = T.alloc_shared(as_shape, dtype)
            B_s = T.alloc_shared(bs_shape, dtype)
            C_f = T.alloc_fragment((block_M, block_N), acc)
            if swizzle_tiles:
                T.annotate_layout(_swizzles(A_s, B_s, dtype))
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=num_stages):
                if trans_a:
                    T.copy(A[k * block_K, by * block_M], A_s)
                else:
                    T.copy(A[by * block_M, k * block_K], A_s)
                if trans_b:
                    T.copy(B[bx * block_N, k * block_K], B_s)
                else:
                    T.copy(B[k * block_K, bx * block_N], B_s)
                T.gemm(A_s, B_s, C_f, transpose_A=trans_a, transpose_B=trans_b)
            T.copy(C_f, C[by * block_M, bx * block_N])
    return gemm


@functools.lru_cache(maxsize=None)
def row_kernel(block_M: int, block_N: int, dtype: str, kind: str):
    """Y = f(X) elementwise and R = the `kind` reduction of f(X) along each row, over symbolic
    M, N. f computes in X's own dtype: x * alpha + 1 for floats; for integers
    v = x * 3 - 7, then (v >> 1) + (v > 0), which wraps in 8 bits for int8. The row is walked
    in block_N-wide chunks (also copied into a tile, which must agree with the elements read
    directly) and the ragged last chunk is masked off."""
    M, N = T.dynamic("M"), T.dynamic("N")
    acc = ACCUM[dtype]
    is_int = dtype.startswith("int")
    identity = 0 if kind != "max" else (-2 ** 31 if is_int else -T.infinity(acc))

    @T.prim_func
    def rows(X: T.Tensor((M, N), dtype), alpha: T.float32, Y: T.Tensor((M, N), dtype),
             R: T.Tensor((M,), acc)):
        with T.Kernel(T.ceildiv(M, block_M)) as bx:
            t = T.alloc_fragment((block_M, block_N), acc)
            r = T.alloc_fragment((block_M,), acc)
            T.fill(r, identity)
            for k in T.serial(T.ceildiv(N, block_N)):
                T.copy(X[bx * block_M, k * block_N], t)
                for i, j in T.Parallel(block_M, block_N):
                    x = X[bx * block_M + i, k * block_N + j]
                    if is_int:  # inline, not through a variable: the 8-bit wrap is the IR's
                        v = ((x * 3 - 7) >> 1) + T.if_then_else(x * 3 - 7 > 0, 1, 0)
                    else:
                        v = x * alpha + 1.0
                    Y[bx * block_M + i, k * block_N + j] = T.cast(v, dtype)
                    if k * block_N + j < N:
                        t[i, j] = T.cast(v, acc) + (t[i, j] - T.cast(x, acc))
                    else:
                        t[i, j] = identity
                if kind == "sum":
                    T.reduce_sum(t, r, dim=1, clear=False)
                elif kind == "max":
                    T.reduce_max(t, r, dim=1, clear=False)
                else:
                    T.reduce_absmax(t, r, dim=1, clear=False)
            T.copy(r, R[bx * block_M])
    return rows


@functools.lru_cache(maxsize=None)
def compiled(target: str, family: str, config: tuple):
    """One kernel per (target, family, configuration), reused for every drawn shape."""
    build = {"gemm": gemm_kernel, "rows": row_kernel, "copy": copy_kernel, "div": div_kernel}[family]
    out_idx = {"gemm": [-1], "rows": [2, 3], "copy": [], "div": [2, 3]}[family]
    return tiledsl.compile(build(*config), out_idx=out_idx, target=target, name=f"fuzz_{family}")


def _data(rng, shape, dtype: str, exact: bool):
    if dtype.startswith("int"):
        lo, hi = (-100, 100) if dtype == "int32" else (-128, 128)
        return rng.integers(lo, hi, shape).astype(NUMPY[dtype])
    if exact:  # small integers: every product and sum below is exact in every float type
        return rng.integers(-4, 5, shape).astype(NUMPY[dtype])
    return rng.standard_normal(shape).astype(NUMPY[dtype])


@dataclass(frozen=True)
class GemmSpec:
    block_M: int = 16
    block_N: int = 16
    block_K: int = 8
    dtype: str = "float32"
    trans_b: bool = False
    num_stages: int = 2
    swizzle_tiles: bool = False
    threads: int = 128
    M: int = 16
    N: int = 16
    K: int = 16
    seed: int = 0
    exact: bool = False
    trans_a: bool = False
    static: bool = False  # M, N, K compiled in (one kernel per shape) rather than symbolic

    @property
    def config(self) -> tuple:
        return (self.block_M, self.block_N, self.block_K, self.dtype, self.trans_b, self.num_stages,
                self.swizzle_tiles, self.threads, self.trans_a,
                (self.M, self.N, self.K) if self.static else ())

    def with_config(self, **kw) -> "GemmSpec":
        return replace(self, **kw)

    def inputs(self, rng=None) -> tuple:
        rng = rng if rng is not None else np.random.default_rng(self.seed)
        a = _data(rng, (self.K, self.M) if self.trans_a else (self.M, self.K), self.dtype, self.exact)
        b = _data(rng, (self.N, self.K) if self.trans_b else (self.K, self.N), self.dtype, self.exact)
        return a, b

    def reference(self, a, b) -> np.ndarray:
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        c = (a64.T if self.trans_a else a64) @ (b64.T if self.trans_b else b64)
        return c.astype(NUMPY[ACCUM[self.dtype]])

    def tolerance(self, a, b) -> np.ndarray:
        """A bound on the accumulation error of any summation order (inputs are exact)."""
        a64, b64 = np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64))
        scale = (a64.T if self.trans_a else a64) @ (b64.T if self.trans_b else b64)
        return (self.K + 2) * UNIT[ACCUM[self.dtype]] * scale + 1e-30

    def kernel(self, target: str):
        return compiled(target, "gemm", self.config)

    def case(self) -> Case:
        return Case("gemm_spec", lambda: gemm_kernel(*self.config),
                    lambda rng: self.inputs(), self.reference, (-1,),
                    rtol=1e-5 if self.dtype != "float64" else 1e-12,
                    atol=(1e-5 if self.dtype != "float64" else 1e-12) * max(self.K, 1),
                    exact=self.exact or self.dtype == "int8", seed=self.seed, note=repr(self))


@dataclass(frozen=True)
class RowSpec:
    block_M: int = 4
    block_N: int = 16
    dtype: str = "float32"
    kind: str = "sum"
    M: int = 8
    N: int = 16
    alpha: float = 0.5
    seed: int = 0

    @property
    def config(self) -> tuple:
        return (self.block_M, self.block_N, self.dtype, self.kind)

    def inputs(self, rng=None) -> tuple:
        rng = rng if rng is not None else np.random.default_rng(self.seed)
        if self.dtype == "int8":  # the whole range: f wraps
            return rng.integers(-128, 128, (self.M, self.N)).astype(np.int8), self.alpha
        return _data(rng, (self.M, self.N), self.dtype, False), self.alpha

    def reference(self, x, alpha) -> tuple:
        acc = NUMPY[ACCUM[self.dtype]]
        if self.dtype.startswith("int"):
            w = x * x.dtype.type(3) - x.dtype.type(7)  # wraps in x's dtype, as the kernel does
            v = (w >> 1) + (w > 0).astype(x.dtype)
        else:
            v = x.astype(np.float32) * np.float32(alpha) + np.float32(1)
        y = v.astype(NUMPY[self.dtype])
        v64 = v.astype(np.float64)
        if self.kind == "sum":
            r = v64.sum(axis=1)
        elif self.kind == "max":
            r = v64.max(axis=1) if self.N else np.full(self.M, -np.inf)
        else:
            r = np.abs(v64).max(axis=1) if self.N else np.zeros(self.M)
        return y, r.astype(acc)

    def kernel(self, target: str):
        return compiled(target, "rows", self.config)

    def case(self) -> Case:
        return Case("rows_spec", lambda: row_kernel(*self.config),
                    lambda rng: self.inputs(), self.reference, (2, 3), rtol=2e-3, atol=1e-3 * self.N + 1e-3,
                    exact=self.dtype.startswith("int"), seed=self.seed, note=repr(self))


@functools.lru_cache(maxsize=None)
def copy_kernel(tile_r: int, tile_c: int, src: str, dst: str):
    """A window of X (rows r0.., columns c0.. of every batch, starts that may be negative or
    past the end) into a tile, converted into a second tile, written to Y at (r1, c1): reads
    outside X give 0 and writes outside Y are dropped."""
    B, R, C = T.dynamic("B"), T.dynamic("R"), T.dynamic("C")
    R2, C2 = T.dynamic("R2"), T.dynamic("C2")

    @T.prim_func
    def window(X: T.Tensor((B, R, C), src), r0: T.int32, c0: T.int32, r1: T.int32, c1: T.int32,
               Y: T.Tensor((B, R2, C2), dst)):
        with T.Kernel(B) as b:
            t = T.alloc_shared((tile_r, tile_c), src)
            u = T.alloc_fragment((tile_r, tile_c), dst)
            T.copy(X[b, r0:r0 + tile_r, c0:c0 + tile_c], t)
            T.copy(t, u)
            T.copy(u, Y[b, r1, c1])
    return window


@dataclass(frozen=True)
class CopySpec:
    tile_r: int = 8
    tile_c: int = 16
    src: str = "float32"
    dst: str = "float32"
    B: int = 2
    R: int = 10
    C: int = 20
    R2: int = 12
    C2: int = 9
    r0: int = 0
    c0: int = 0
    r1: int = 0
    c1: int = 0
    seed: int = 0

    @property
    def config(self) -> tuple:
        return (self.tile_r, self.tile_c, self.src, self.dst)

    def inputs(self, rng=None) -> tuple:
        rng = rng if rng is not None else np.random.default_rng(self.seed)
        x = _data(rng, (self.B, self.R, self.C), self.src, False)
        y = np.full((self.B, self.R2, self.C2), 7, NUMPY[self.dst])  # what the copy leaves alone
        return x, self.r0, self.c0, self.r1, self.c1, y

    def reference(self, x, r0, c0, r1, c1, y) -> np.ndarray:
        tr, tc = self.tile_r, self.tile_c
        tile = np.zeros((self.B, tr, tc), x.dtype)
        i0, i1 = max(0, -r0), min(tr, self.R - r0)
        j0, j1 = max(0, -c0), min(tc, self.C - c0)
        if i0 < i1 and j0 < j1:
            tile[:, i0:i1, j0:j1] = x[:, r0 + i0:r0 + i1, c0 + j0:c0 + j1]
        out = y.copy()
        i0, i1 = max(0, -r1), min(tr, self.R2 - r1)
        j0, j1 = max(0, -c1), min(tc, self.C2 - c1)
        if i0 < i1 and j0 < j1:
            out[:, r1 + i0:r1 + i1, c1 + j0:c1 + j1] = tile[:, i0:i1, j0:j1].astype(NUMPY[self.dst])
        return out

    def kernel(self, target: str):
        return compiled(target, "copy", self.config)

    def case(self) -> Case:
        def inputs(rng):
            return self.inputs()
        return Case("copy_spec", lambda: copy_kernel(*self.config), inputs,
                    lambda *a: self.reference(*a), (), exact=True, seed=self.seed, note=repr(self),
                    outputs=(5,))


@functools.lru_cache(maxsize=None)
def div_kernel(dtype: str, block: int):
    """Q = A // B and R = A % B elementwise, the divisor a tensor (so no constant folds it)."""
    N = T.dynamic("N")

    @T.prim_func
    def divide(A: T.Tensor((N,), dtype), B: T.Tensor((N,), dtype), Q: T.Tensor((N,), dtype),
               R: T.Tensor((N,), dtype)):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            for i in T.Parallel(block):
                Q[bx * block + i] = A[bx * block + i] // B[bx * block + i]
                R[bx * block + i] = A[bx * block + i] % B[bx * block + i]
    return divide


@dataclass(frozen=True)
class DivSpec:
    """Integer // and % over the whole range of a dtype, edges (MIN, -1, 0, 1, MAX) drawn often:
    every target must give numpy's answer, MIN // -1 (which traps in x86's idiv) and x // 0 == 0
    included."""
    dtype: str = "int32"
    block: int = 16
    N: int = 16
    edges: float = 0.5  # the share of operands drawn from the edge values
    seed: int = 0

    @property
    def config(self) -> tuple:
        return (self.dtype, self.block)

    def inputs(self, rng=None) -> tuple:
        rng = rng if rng is not None else np.random.default_rng(self.seed)
        info = np.iinfo(self.dtype)
        edge = np.array([v for v in (info.min, info.min + 1, -2, -1, 0, 1, 2, info.max - 1, info.max)
                         if info.min <= v <= info.max], self.dtype)

        def draw():
            wide = rng.integers(info.min, info.max, self.N, dtype=self.dtype, endpoint=True)
            return np.where(rng.random(self.N) < self.edges, rng.choice(edge, self.N), wide)
        return draw(), draw()

    def reference(self, a, b) -> tuple:
        with np.errstate(all="ignore"):  # numpy warns on // 0 and MIN // -1, then gives 0 / wraps
            return np.floor_divide(a, b), np.mod(a, b)

    def kernel(self, target: str):
        return compiled(target, "div", self.config)

    def case(self) -> Case:
        return Case("div_spec", lambda: div_kernel(*self.config), lambda rng: self.inputs(),
                    self.reference, (2, 3), exact=True, seed=self.seed, note=repr(self))

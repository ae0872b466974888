"""Language extensions end to end against numpy: T.atomic_add / max / min (one element, also
from a T.Parallel loop, and a whole tile into a region), T.cumsum, T.clamp, T.use_swizzle,
@T.macro, float8_e4m3 / float8_e5m2 storage, and int4 unpacking with bit operations.

Every kernel runs on the CPU and in the interpreter, and atomics, cumsum and float8 also on
the CUDA emulator. Compiles are cached per (kernel, target) so that parametrizations share
them: each distinct C++ build costs about a second.
"""
import functools

import ml_dtypes
import numpy as np
import pytest

import tiledsl
import tiledsl.language as T
from tiledsl.errors import FrontendError, TileDSLError, TypeCheckError

EMU = "cuda -emulate"
TARGETS = ["cpu", "interp"]
WITH_EMU = TARGETS + [EMU]
SCALE = 3.0  # read by the macro `_scaled_add`: a macro's names resolve in its own module


def _line(marker: str) -> int:
    with open(__file__) as f:
        hits = [n for n, text in enumerate(f, 1) if text.rstrip().endswith("# !" + marker)]
    assert len(hits) == 1, marker
    return hits[0]


@functools.cache
def _kernel(maker, args: tuple, target: str, out_idx: tuple = ()):
    """`maker(*args)` compiled for `target`, once per test session."""
    return tiledsl.compile(maker(*args), out_idx=list(out_idx), target=target)


def _rejects(cls, fragment: str, marker: str, build):
    with pytest.raises(cls) as info:
        build()
    err = info.value
    assert fragment in err.message, err.message
    assert err.span is not None and err.span.line == _line(marker), str(err)
    return err


# ---------------------------------------------------------------- atomics: one element

def histogram(N, bins, dtype, block=64):
    @T.prim_func
    def main(X: T.Tensor((N,), "int32"), W: T.Tensor((N,), dtype), H: T.Tensor((bins,), dtype)):
        with T.Kernel(T.ceildiv(N, block), threads=32) as bx:
            for i in T.Parallel(block):
                if bx * block + i < N:
                    T.atomic_add(H[X[bx * block + i]], W[bx * block + i])
    return main


@pytest.mark.parametrize("dtype", ["float32", "int32", "float16"])
@pytest.mark.parametrize("target", WITH_EMU)
def test_atomic_add_histogram(target, dtype):
    """Many iterations of one T.Parallel loop, and many blocks, hit one bin."""
    rng = np.random.default_rng(0)
    N, bins = 1000, 7
    x = rng.integers(0, bins, N).astype(np.int32)
    x[:100] = 3  # one crowded bin
    # every partial sum is exact in any order (float16: integers below 2048), so the order of
    # the updates cannot show
    w = {"float32": rng.integers(-40, 41, N) / 4, "int32": rng.integers(-40, 41, N),
         "float16": rng.integers(-3, 4, N)}[dtype].astype(dtype)
    h = np.arange(bins).astype(dtype) * 10  # atomics add to what the tensor holds
    ref = h.copy()
    np.add.at(ref, x, w)
    assert _kernel(histogram, (N, bins, dtype), target)(x, w, h) is None
    np.testing.assert_array_equal(h, ref)


def scatter_minmax(N, bins, block=64):
    @T.prim_func
    def main(X: T.Tensor((N,), "int32"), V: T.Tensor((N,), "float32"), I: T.Tensor((N,), "int32"),
             Fmax: T.Tensor((bins,), "float32"), Fmin: T.Tensor((bins,), "float32"),
             Imax: T.Tensor((bins,), "int32"), Imin: T.Tensor((bins,), "int32")):
        with T.Kernel(T.ceildiv(N, block), threads=32) as bx:
            for i in T.Parallel(block):
                g = bx * block + i
                if g < N:
                    T.atomic_max(Fmax[X[g]], V[g])
                    T.atomic_min(Fmin[X[g]], V[g])
                    T.atomic_max(Imax[X[g]], I[g])
                    T.atomic_min(Imin[X[g]], I[g])
    return main


@pytest.mark.parametrize("target", WITH_EMU)
def test_atomic_max_min_scatter(target):
    rng = np.random.default_rng(1)
    N, bins = 777, 9
    x = rng.integers(0, bins - 1, N).astype(np.int32)  # the last bin gets nothing
    v = rng.standard_normal(N).astype(np.float32)
    iv = rng.integers(-1000, 1000, N).astype(np.int32)
    fmax = np.full(bins, -np.inf, np.float32)
    fmin = np.full(bins, np.inf, np.float32)
    fmax[2] = 0.5            # a starting value that some updates do not beat
    fmax[4] = np.nan         # `old > v ? old : v`: the first update replaces a NaN
    fmin[5] = np.nan
    imax = np.full(bins, -5, np.int32)
    imin = np.full(bins, 5, np.int32)
    ref = [fmax.copy(), fmin.copy(), imax.copy(), imin.copy()]
    np.fmax.at(ref[0], x, v)
    np.fmin.at(ref[1], x, v)
    np.maximum.at(ref[2], x, iv)
    np.minimum.at(ref[3], x, iv)
    _kernel(scatter_minmax, (N, bins), target)(x, v, iv, fmax, fmin, imax, imin)
    for got, want in zip((fmax, fmin, imax, imin), ref):
        np.testing.assert_array_equal(got, want)
    assert fmax[-1] == -np.inf and fmin[-1] == np.inf


def shared_histogram(N, bins, block=64):
    """Per-block counts in a shared tile (atomics from the block's threads), then the tile
    added into the global histogram."""
    @T.prim_func
    def main(X: T.Tensor((N,), "int32"), H: T.Tensor((bins,), "int32")):
        with T.Kernel(T.ceildiv(N, block), threads=32) as bx:
            s = T.alloc_shared((bins,), "int32")
            T.clear(s)
            for i in T.Parallel(block):
                if bx * block + i < N:
                    T.atomic_add(s[X[bx * block + i]], 1)
            T.atomic_add(H[0], s)
    return main


@pytest.mark.parametrize("target", WITH_EMU)
def test_atomic_add_into_shared_tile(target):
    rng = np.random.default_rng(12)
    N, bins = 999, 11
    x = rng.integers(0, bins, N).astype(np.int32)
    h = np.full(bins, 2, np.int32)
    _kernel(shared_histogram, (N, bins), target)(x, h)
    np.testing.assert_array_equal(h, 2 + np.bincount(x, minlength=bins))


# ---------------------------------------------------------------- atomics: a tile into a region

def splitk_gemm(M, N, K, splits, bm=16, bn=16, bk=8):
    chunk = T.ceildiv(T.ceildiv(K, splits), bk) * bk

    @T.prim_func
    def main(A: T.Tensor((M, K), "float32"), B: T.Tensor((K, N), "float32"), C: T.Tensor((M, N), "float32")):
        with T.Kernel(T.ceildiv(N, bn), T.ceildiv(M, bm), splits, threads=64) as (bx, by, bz):
            A_s = T.alloc_shared((bm, bk), "float32")
            B_s = T.alloc_shared((bk, bn), "float32")
            C_f = T.alloc_fragment((bm, bn), "float32")
            T.clear(C_f)
            for k in T.serial(chunk // bk):
                T.copy(A[by * bm, bz * chunk + k * bk], A_s)
                T.copy(B[bz * chunk + k * bk, bx * bn], B_s)
                T.gemm(A_s, B_s, C_f)
            T.atomic_add(C[by * bm, bx * bn], C_f)
    return main


@pytest.mark.parametrize("target", WITH_EMU)
def test_atomic_add_tile_split_k_gemm(target):
    """The K splits of one C tile meet in C; rows past C's ragged edge are dropped (the canary
    rows around C would change)."""
    rng = np.random.default_rng(2)
    M, N, K = 37, 29, 45
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    buf = np.full((M + 2, N), 7.0, np.float32)
    c = buf[1:-1]
    c[...] = 1.0
    _kernel(splitk_gemm, (M, N, K, 3), target)(a, b, c)
    np.testing.assert_allclose(c, 1.0 + a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
    assert (buf[0] == 7).all() and (buf[-1] == 7).all()


def tile_max_min(Z, M, N, bm=8, bn=16):
    @T.prim_func
    def main(X: T.Tensor((Z, M, N), "float32"), Mx: T.Tensor((M, N), "float32"), Mn: T.Tensor((M, N), "float32")):
        with T.Kernel(T.ceildiv(N, bn), T.ceildiv(M, bm), Z, threads=32) as (bx, by, bz):
            S = T.alloc_shared((bm, bn), "float32")
            F = T.alloc_fragment((bm, bn), "float32")
            T.copy(X[bz, by * bm, bx * bn], S)
            T.copy(S, F)
            T.atomic_max(Mx[by * bm, bx * bn], S)
            T.atomic_min(Mn[by * bm, bx * bn], F)
    return main


@pytest.mark.parametrize("target", WITH_EMU)
def test_atomic_max_min_tile(target):
    rng = np.random.default_rng(3)
    Z, M, N = 5, 19, 21
    x = rng.standard_normal((Z, M, N)).astype(np.float32)
    mx = np.full((M, N), -np.inf, np.float32)
    mn = np.full((M, N), 0.25, np.float32)
    _kernel(tile_max_min, (Z, M, N), target)(x, mx, mn)
    np.testing.assert_array_equal(mx, x.max(axis=0))
    np.testing.assert_array_equal(mn, np.minimum(x.min(axis=0), 0.25))


def test_atomic_errors():
    with pytest.raises(TypeCheckError, match="fragment buffer"):
        @T.prim_func
        def on_fragment(A: T.Tensor((8,), "float32")):
            with T.Kernel(1) as bx:
                f = T.alloc_fragment((8,), "float32")
                T.clear(f)
                for i in T.Parallel(8):
                    T.atomic_add(f[i], A[i])
    with pytest.raises(TypeCheckError, match="local buffer"):
        @T.prim_func
        def on_local(A: T.Tensor((8,), "float32")):
            with T.Kernel(1) as bx:
                loc = T.alloc_local((1,), "float32")
                T.atomic_max(loc[0], A[0])
    with pytest.raises(TileDSLError, match="inside a T.Parallel loop"):
        @T.prim_func
        def tile_in_parallel(C: T.Tensor((8, 8), "float32")):
            with T.Kernel(1) as bx:
                f = T.alloc_fragment((8, 8), "float32")
                T.clear(f)
                for i in T.Parallel(8):
                    T.atomic_add(C[0, 0], f)
    with pytest.raises(TypeCheckError, match="must be one element"):
        @T.prim_func
        def scalar_into_region(C: T.Tensor((8, 8), "float32")):
            with T.Kernel(1) as bx:
                T.atomic_add(C, 1.0)
    with pytest.raises(TypeCheckError, match="return_prev"):
        @T.prim_func
        def return_prev(C: T.Tensor((8,), "float32")):
            with T.Kernel(1) as bx:
                T.atomic_add(C[0], 1.0, return_prev=True)


def test_atomic_error_points_at_the_line():
    err = _rejects(TypeCheckError, "fragment", "atomic_line", lambda: T.prim_func(_atomic_on_fragment))
    assert err.hint


def _atomic_on_fragment(A: T.Tensor((8,), "float32")):
    with T.Kernel(1) as bx:
        f = T.alloc_fragment((8,), "float32")
        T.clear(f)
        for i in T.Parallel(8):
            T.atomic_min(f[i], A[i])  # !atomic_line


# ---------------------------------------------------------------- T.cumsum, T.clamp

def cumsum_tiles(M, N, dim, reverse, dtype, scope, in_place, bm=8, bn=16):
    @T.prim_func
    def main(X: T.Tensor((M, N), dtype), Y: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(N, bn), T.ceildiv(M, bm), threads=32) as (bx, by):
            if scope == "shared":
                s = T.alloc_shared((bm, bn), dtype)
            else:
                s = T.alloc_fragment((bm, bn), dtype)
            d = T.alloc_fragment((bm, bn), dtype)
            T.copy(X[by * bm, bx * bn], s)
            if in_place:
                T.cumsum(s, dim=dim, reverse=reverse)
                T.copy(s, Y[by * bm, bx * bn])
            else:
                T.cumsum(s, d, dim, reverse)
                T.copy(d, Y[by * bm, bx * bn])
    return main


def _cumsum_ref(x, dim, reverse, bm=8, bn=16):
    """Inclusive sums within each (bm, bn) tile, in float32 for 16-bit floats, each output rounded."""
    M, N = x.shape
    acc = np.float32 if x.dtype.kind == "f" or x.dtype == ml_dtypes.bfloat16 else x.dtype
    pad = np.zeros((-(-M // bm) * bm, -(-N // bn) * bn), acc)  # the tile past the edge reads 0
    pad[:M, :N] = x.astype(acc)
    tiles = pad.reshape(pad.shape[0] // bm, bm, pad.shape[1] // bn, bn)
    axis = 1 if dim % 2 == 0 else 3
    if reverse:
        tiles = np.flip(tiles, axis)
    out = np.cumsum(tiles, axis=axis, dtype=acc)  # numpy's cumsum adds in order, like the kernel
    if reverse:
        out = np.flip(out, axis)
    return out.reshape(pad.shape)[:M, :N].astype(x.dtype)


CUMSUM_CASES = [  # dim, reverse, dtype, scope, in_place
    (0, False, "float32", "fragment", True),
    (1, True, "float32", "shared", False),
    (1, False, "float16", "fragment", False),
    (-1, True, "bfloat16", "shared", True),
    (0, True, "int32", "shared", True),
]


@pytest.mark.parametrize("case", CUMSUM_CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("target", WITH_EMU)
def test_cumsum(target, case, request):
    dim, reverse, dtype, scope, in_place = case
    rng = np.random.default_rng(4)
    M, N = 21, 37
    if dtype == "int32":
        x = rng.integers(-2**20, 2**20, (M, N)).astype(np.int32)
    else:
        x = (rng.standard_normal((M, N)) * 3).astype(np.float32).astype(np.dtype(getattr(ml_dtypes, dtype, dtype)))
    args = (M, N, dim, reverse, dtype, scope, in_place)
    y = _kernel(cumsum_tiles, args, target, (-1,))(x)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, _cumsum_ref(x, dim, reverse))


def test_cumsum_errors():
    with pytest.raises(TypeCheckError, match="must be a shared or fragment tile"):
        @T.prim_func
        def on_global(A: T.Tensor((8,), "float32")):
            with T.Kernel(1) as bx:
                T.cumsum(A)
    with pytest.raises(TypeCheckError, match="need one shape"):
        @T.prim_func
        def shapes(A: T.Tensor((8,), "float32")):
            with T.Kernel(1) as bx:
                s = T.alloc_shared((8, 4), "float32")
                d = T.alloc_fragment((4, 8), "float32")
                T.clear(s)
                T.cumsum(s, d)
    for dim in (2, -3):
        with pytest.raises(TypeCheckError, match="out of range"):
            @T.prim_func
            def bad_dim(A: T.Tensor((8,), "float32")):
                with T.Kernel(1) as bx:
                    s = T.alloc_shared((8, 4), "float32")
                    T.clear(s)
                    T.cumsum(s, dim=dim)
    err = _rejects(TypeCheckError, "need one shape", "cumsum_line", lambda: T.prim_func(_cumsum_shapes))
    assert "'s'" in err.message and "'d'" in err.message


def _cumsum_shapes(A: T.Tensor((8,), "float32")):
    with T.Kernel(1) as bx:
        s = T.alloc_fragment((8, 4), "float32")
        d = T.alloc_fragment((8, 2), "float32")
        T.clear(s)
        T.cumsum(s, d, dim=1)  # !cumsum_line


def clamp_kernel(N, block=32):
    @T.prim_func
    def main(X: T.Tensor((N,), "float32"), I: T.Tensor((N,), "int32"), lo: T.float32, hi: T.float32,
             Y: T.Tensor((N,), "float32"), J: T.Tensor((N,), "int32")):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            for i in T.Parallel(block):
                if bx * block + i < N:
                    Y[bx * block + i] = T.clamp(X[bx * block + i], lo, hi)
                    J[bx * block + i] = T.clamp(I[bx * block + i], -3, 4)
    return main


@pytest.mark.parametrize("target", TARGETS)
def test_clamp(target):
    rng = np.random.default_rng(5)
    N = 101
    x = (rng.standard_normal(N) * 2).astype(np.float32)
    iv = rng.integers(-10, 10, N).astype(np.int32)
    k = _kernel(clamp_kernel, (N,), target, (-2, -1))
    for lo, hi in ((-0.5, 1.25), (0.0, 0.0)):
        y, j = k(x, iv, lo, hi)
        np.testing.assert_array_equal(y, np.clip(x, np.float32(lo), np.float32(hi)))
        np.testing.assert_array_equal(j, np.clip(iv, -3, 4))
    assert T.clamp(7, 0, 3) == 3 and T.clamp(-1.5, -1.0, 1.0) == -1.0 and T.clamp(2, 0, 3) == 2


# ---------------------------------------------------------------- T.use_swizzle

def swizzled_copy(panel, order, bm=2, bn=3):
    """Each block copies input tile (by, bx) to output tile (by, bx) and records who it was."""
    M, N, GY, GX = T.dynamic("M"), T.dynamic("N"), T.dynamic("GY"), T.dynamic("GX")

    @T.prim_func
    def main(A: T.Tensor((M, N), "float32"), B: T.Tensor((M, N), "float32"),
             Count: T.Tensor((GY, GX), "int32"), Who: T.Tensor((GY, GX, 2), "int32")):
        with T.Kernel(T.ceildiv(N, bn), T.ceildiv(M, bm), threads=32) as (bx, by):
            t = T.alloc_fragment((bm, bn), "float32")
            T.copy(A[by * bm, bx * bn], t)  # bx, by used before the swizzle: it applies anyway
            T.use_swizzle(panel, order=order)
            T.copy(t, B[by * bm, bx * bn])
            T.atomic_add(Count[by, bx], 1)
            Who[by, bx, 0] = bx
            Who[by, bx, 1] = by
    return main


@functools.cache
def _swizzled_copy(panel, order, target):
    return _kernel(swizzled_copy, (panel, order), target)


@pytest.mark.parametrize("order", ["row", "col"])
@pytest.mark.parametrize("panel", [1, 2, 3, 8, 100])
@pytest.mark.parametrize("target", TARGETS)
def test_use_swizzle_visits_every_block_once(target, panel, order):
    k = _swizzled_copy(panel, order, target)
    rng = np.random.default_rng(6)
    for gx, gy in ((1, 1), (5, 3), (7, 16), (16, 7)):
        M, N = 2 * gy - (gy > 1), 3 * gx - (gx > 1)  # ragged last tiles
        a = rng.standard_normal((M, N)).astype(np.float32)
        b = np.zeros_like(a)
        count = np.zeros((gy, gx), np.int32)
        who = np.full((gy, gx, 2), -1, np.int32)
        k(a, b, count, who)
        np.testing.assert_array_equal(count, 1)
        np.testing.assert_array_equal(b, a)
        np.testing.assert_array_equal(who[..., 0], np.broadcast_to(np.arange(gx), (gy, gx)))
        np.testing.assert_array_equal(who[..., 1], np.broadcast_to(np.arange(gy)[:, None], (gy, gx)))


def swizzled_3d(gx, gy, gz, panel, order):
    @T.prim_func
    def main(W: T.Tensor((gz, gy, gx, 3), "int32")):
        with T.Kernel(gx, gy, gz) as (bx, by, bz):
            T.use_swizzle(panel, order)
            W[bz, by, bx, 0] = W[bz, by, bx, 0] + 1
            W[bz, by, bx, 1] = bx * 100 + by
            W[bz, by, bx, 2] = bz
    return main


@pytest.mark.parametrize("target", TARGETS)
def test_use_swizzle_3d_grid_keeps_bz(target):
    for gx, gy, gz, panel, order in ((5, 3, 2, 2, "row"), (4, 7, 3, 3, "col")):
        w = np.zeros((gz, gy, gx, 3), np.int32)
        _kernel(swizzled_3d, (gx, gy, gz, panel, order), target)(w)
        z, y, x = np.meshgrid(np.arange(gz), np.arange(gy), np.arange(gx), indexing="ij")
        np.testing.assert_array_equal(w, np.stack([np.ones_like(x), x * 100 + y, z], axis=-1))


def swizzled_gemm(M, N, K, order, panel=2, bm=16, bn=16, bk=16):
    @T.prim_func
    def main(A: T.Tensor((M, K), "float32"), B: T.Tensor((K, N), "float32"), C: T.Tensor((M, N), "float32")):
        with T.Kernel(T.ceildiv(N, bn), T.ceildiv(M, bm), threads=64) as (bx, by):
            T.use_swizzle(panel_size=panel, order=order)
            A_s = T.alloc_shared((bm, bk), "float32")
            B_s = T.alloc_shared((bk, bn), "float32")
            C_f = T.alloc_fragment((bm, bn), "float32")
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, bk), num_stages=2):
                T.copy(A[by * bm, k * bk], A_s)
                T.copy(B[k * bk, bx * bn], B_s)
                T.gemm(A_s, B_s, C_f)
            T.copy(C_f, C[by * bm, bx * bn])
    return main


@pytest.mark.parametrize("order", ["row", "col"])
@pytest.mark.parametrize("target", TARGETS)
def test_use_swizzle_gemm(target, order):
    rng = np.random.default_rng(7)
    M, N, K = 70, 83, 37  # a 6 x 5 grid: panels of 2 leave a ragged last panel
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    c = _kernel(swizzled_gemm, (M, N, K, order), target, (-1,))(a, b)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


def swizzled_1d(N, block=16):
    @T.prim_func
    def main(A: T.Tensor((N,), "float32"), B: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            T.use_swizzle(4)
            for i in T.Parallel(block):
                if bx * block + i < N:
                    B[bx * block + i] = A[bx * block + i] + T.cast(bx, "float32")
    return main


@pytest.mark.parametrize("target", TARGETS)
def test_use_swizzle_leaves_a_1d_grid_alone(target):
    a = np.arange(50, dtype=np.float32)
    b = _kernel(swizzled_1d, (50,), target, (-1,))(a)
    np.testing.assert_array_equal(b, a + np.arange(50) // 16)


def test_use_swizzle_errors():
    with pytest.raises(FrontendError, match="inside a T.Parallel loop"):
        @T.prim_func
        def in_parallel(A: T.Tensor((8, 8), "float32")):
            with T.Kernel(2, 2) as (bx, by):
                for i in T.Parallel(8):
                    T.use_swizzle(2)
                    A[bx, i] = 0.0
    with pytest.raises(TileDSLError, match="already has one"):
        @T.prim_func
        def twice(A: T.Tensor((8, 8), "float32")):
            with T.Kernel(2, 2) as (bx, by):
                T.use_swizzle(2)
                T.use_swizzle(4)
                A[bx, by] = 0.0
    for panel in (0, -1, 2.5, True):
        with pytest.raises(TypeCheckError, match="panel_size must be a positive integer"):
            @T.prim_func
            def bad_panel(A: T.Tensor((8, 8), "float32")):
                with T.Kernel(2, 2) as (bx, by):
                    T.use_swizzle(panel)
                    A[bx, by] = 0.0
    with pytest.raises(TypeCheckError, match="order must be"):
        @T.prim_func
        def bad_order(A: T.Tensor((8, 8), "float32")):
            with T.Kernel(2, 2) as (bx, by):
                T.use_swizzle(2, order="diagonal")
                A[bx, by] = 0.0
    _rejects(TileDSLError, "already has one", "swizzle_line", lambda: T.prim_func(_swizzle_twice))


def _swizzle_twice(A: T.Tensor((8, 8), "float32")):
    with T.Kernel(2, 2) as (bx, by):
        T.use_swizzle(2, order="col")
        T.use_swizzle(2)  # !swizzle_line
        A[bx, by] = 0.0


# ---------------------------------------------------------------- @T.macro

@T.macro
def _scaled_add(dst, src, bm, bn, alpha):
    """Statements over the caller's tiles; SCALE is this module's."""
    for i, j in T.Parallel(bm, bn):
        dst[i, j] = dst[i, j] + src[i, j] * alpha * SCALE


@T.macro
def _square(x):
    return x * x


@T.macro
def _soft_clip(x, hi):
    y = _square(x)  # a macro calling a macro
    return T.min(y, hi)


@T.macro
def _row_sums(t, out, row0, bm, n, m):
    s = T.alloc_fragment((bm,), "float32")
    T.reduce_sum(t, s, dim=1)
    for i in T.Parallel(bm):
        if row0 + i < m:
            out[row0 + i] = s[i]
    return bm * n  # a Python value: the call is a Python number


def _make_shift(offset):
    @T.macro
    def shift(t, bm, bn):
        for i, j in T.Parallel(bm, bn):
            t[i, j] = t[i, j] + offset  # the closure's offset, not the caller's
    return shift


def macro_kernel(M, N, bm=8):
    shift = _make_shift(100.0)

    @T.prim_func
    def main(X: T.Tensor((M, N), "float32"), alpha: T.float32, hi: T.float32,
             Y: T.Tensor((M, N), "float32"), R: T.Tensor((M,), "float32")):
        with T.Kernel(T.ceildiv(M, bm)) as bx:
            offset, SCALE = -1.0, -1.0  # noqa: F841 - names the macros must not see
            t = T.alloc_fragment((bm, N), "float32")
            u = T.alloc_fragment((bm, N), "float32")
            T.copy(X[bx * bm, 0], t)
            T.copy(X[bx * bm, 0], u)
            _scaled_add(t, u, bm, N, alpha)  # t = x + 3 alpha x
            shift(t, bm, N)
            elems = _row_sums(t, R, bx * bm, bm, N, M)
            for i, j in T.Parallel(bm, N):
                v = _soft_clip(t[i, j], hi)  # statements and a value: only `v = macro(...)` places both
                t[i, j] = v + elems
            T.copy(t, Y[bx * bm, 0])
    return main


@pytest.mark.parametrize("target", TARGETS)
def test_macros(target):
    rng = np.random.default_rng(8)
    M, N, alpha, hi = 19, 24, 0.5, 1.0e4
    x = rng.standard_normal((M, N)).astype(np.float32)
    y, r = _kernel(macro_kernel, (M, N), target, (-2, -1))(x, alpha, hi)
    t = x + x * np.float32(alpha) * np.float32(SCALE) + np.float32(100.0)
    np.testing.assert_allclose(r, t.sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(y, np.minimum(t * t, hi) + 8 * N, rtol=1e-6)


@T.macro
def _bad_copy(dst, src):
    T.copy(src, dst)  # !macro_line


def test_macro_error_points_into_the_macro():
    def build():
        @T.prim_func
        def main(A: T.Tensor((16,), "float32"), B: T.Tensor((16,), "float32")):
            with T.Kernel(1) as bx:
                s = T.alloc_shared((8, 2), "float32")
                _bad_copy(s, A)
                T.copy(s[0, 0], B[0])
    with pytest.raises(TileDSLError) as info:
        build()
    err = info.value
    assert err.span is not None and err.span.line == _line("macro_line"), str(err)
    assert err.span.file == __file__


@pytest.mark.parametrize("target", TARGETS)
def test_macro_with_statements_inside_an_expression(target):
    """The macro's statements are placed before the statement whose expression calls it."""
    @T.prim_func
    def main(A: T.Tensor((8,), "float32"), B: T.Tensor((8,), "float32")):
        with T.Kernel(1) as bx:
            for i in T.Parallel(8):
                B[i] = _soft_clip(A[i], 2.0) + 1.0
    a = np.linspace(-2, 2, 8).astype(np.float32)
    b = tiledsl.compile(main, out_idx=[-1], target=target)(a)
    np.testing.assert_allclose(b, np.minimum(a * a, 2.0) + 1.0, rtol=1e-6)


def test_macro_arguments_and_calls_outside():
    with pytest.raises(TypeCheckError, match="_square"):
        @T.prim_func
        def wrong_arity(A: T.Tensor((8,), "float32")):
            with T.Kernel(1) as bx:
                for i in T.Parallel(8):
                    A[i] = _square(A[i], 2.0)
    with pytest.raises(RuntimeError, match="inside a @T.prim_func"):
        _square(2.0)
    with pytest.raises(RuntimeError, match="inside a @T.prim_func"):
        T.atomic_add(None, 1.0)


# ---------------------------------------------------------------- float8

F8 = {"float8_e4m3": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2}


def f8_decode(N, f8, block=1024):
    @T.prim_func
    def main(X: T.Tensor((N,), f8), Y: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(N, block), threads=128) as bx:
            for i in T.Parallel(block):
                if bx * block + i < N:
                    Y[bx * block + i] = X[bx * block + i]
    return main


def f8_encode(N, f8, block=1024):
    """Two roundings to float8: a store into a float8 tensor, and T.cast (widened back)."""
    @T.prim_func
    def main(X: T.Tensor((N,), "float32"), Y: T.Tensor((N,), f8), Z: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(N, block), threads=128) as bx:
            for i in T.Parallel(block):
                if bx * block + i < N:
                    Y[bx * block + i] = X[bx * block + i]
                    Z[bx * block + i] = T.cast(T.cast(X[bx * block + i], f8), "float32")
    return main


def _encode_inputs(f8) -> np.ndarray:
    """Every float16 value, then the edges of `f8`: max, the ties at and past it, overflow,
    infinities, NaN, subnormals and the ties between them, and signed zero."""
    every_half = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    fi = ml_dtypes.finfo(F8[f8])
    mx, tiny = float(fi.max), float(fi.smallest_subnormal)
    edges = [448, 464, 480, 496, 57344, 61440, 65536, 1e30, mx, mx * 1.0625, np.inf, np.nan,
             tiny, tiny / 2, tiny * 1.5, tiny * 2.5, tiny / 2 * 1.0001, tiny / 2 * 0.9999, 0.0,
             float(fi.smallest_normal), float(fi.smallest_normal) * (1 + float(fi.eps) / 2)]
    edges += [np.nextafter(np.float32(v), np.float32(np.inf)) for v in (448, 464, 57344, 61440, tiny / 2)]
    edges = np.array(edges, np.float32)
    return np.concatenate([every_half, edges, -edges])


def _same_bits(got, want):
    got, want = np.asarray(got), np.asarray(want)
    nan = np.isnan(want.astype(np.float32))
    np.testing.assert_array_equal(np.isnan(got.astype(np.float32)), nan)
    np.testing.assert_array_equal(got.view(np.uint8)[~nan], want.view(np.uint8)[~nan])


@pytest.mark.parametrize("f8", sorted(F8))
@pytest.mark.parametrize("target", WITH_EMU)
def test_float8_decodes_every_code(target, f8):
    codes = np.arange(256, dtype=np.uint8).view(F8[f8])
    y = _kernel(f8_decode, (256, f8), target, (-1,))(codes)
    want = codes.astype(np.float32)
    assert y.dtype == np.float32
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(y), nan)
    np.testing.assert_array_equal(y[~nan].view(np.uint32), want[~nan].view(np.uint32))  # -0.0 too


@pytest.mark.parametrize("f8", sorted(F8))
@pytest.mark.parametrize("target", WITH_EMU)
def test_float8_rounds_like_ml_dtypes(target, f8):
    x = _encode_inputs(f8)
    y, z = _kernel(f8_encode, (x.size, f8), target, (-2, -1))(x)
    assert y.dtype == F8[f8]
    with np.errstate(invalid="ignore"):  # ml_dtypes warns on the NaN and the values past max
        want = x.astype(F8[f8])
    _same_bits(y, want)
    _same_bits(z.astype(F8[f8]), want)
    np.testing.assert_array_equal(np.isnan(z), np.isnan(want.astype(np.float32)))


def f8_gemm(M, N, K, tile_dtype, bm=16, bn=16, bk=16):
    @T.prim_func
    def main(A: T.Tensor((M, K), "float8_e4m3"), B: T.Tensor((K, N), "float8_e5m2"),
             C: T.Tensor((M, N), "float32")):
        with T.Kernel(T.ceildiv(N, bn), T.ceildiv(M, bm), threads=64) as (bx, by):
            A_s = T.alloc_shared((bm, bk), tile_dtype)
            B_s = T.alloc_shared((bk, bn), tile_dtype)
            C_f = T.alloc_fragment((bm, bn), "float32")
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, bk), num_stages=2):
                T.copy(A[by * bm, k * bk], A_s)
                T.copy(B[k * bk, bx * bn], B_s)
                T.gemm(A_s, B_s, C_f)
            T.copy(C_f, C[by * bm, bx * bn])
    return main


@pytest.mark.parametrize("tile_dtype", ["float32", "float16"])
@pytest.mark.parametrize("target", WITH_EMU)
def test_float8_gemm(target, tile_dtype):
    """fp8 operands dequantised into float32 / float16 tiles (both exact), accumulated in float32."""
    rng = np.random.default_rng(9)
    M, N, K = 35, 27, 41
    a = (rng.standard_normal((M, K)) * 8).astype(ml_dtypes.float8_e4m3fn)
    b = rng.standard_normal((K, N)).astype(ml_dtypes.float8_e5m2)
    c = _kernel(f8_gemm, (M, N, K, tile_dtype), target, (-1,))(a, b)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(c, ref, rtol=1e-5, atol=1e-4)


def f8_arith(N, block=32):
    @T.prim_func
    def main(A: T.Tensor((N,), "float8_e4m3"), B: T.Tensor((N,), "float8_e5m2"),
             C: T.Tensor((N,), "float32"), D: T.Tensor((N,), "float8_e4m3")):
        with T.Kernel(T.ceildiv(N, block), threads=32) as bx:
            for i in T.Parallel(block):
                g = bx * block + i
                if g < N:
                    C[g] = A[g] * B[g] + A[g] / 3.0
                    D[g] = A[g] * B[g]
    return main


@pytest.mark.parametrize("target", WITH_EMU)
def test_float8_arithmetic_is_float32(target):
    rng = np.random.default_rng(10)
    N = 75
    a = (rng.standard_normal(N) * 4).astype(ml_dtypes.float8_e4m3fn)
    b = (rng.standard_normal(N) * 4).astype(ml_dtypes.float8_e5m2)
    c, d = _kernel(f8_arith, (N,), target, (-2, -1))(a, b)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    np.testing.assert_array_equal(c, a32 * b32 + a32 / np.float32(3.0))
    assert d.dtype == ml_dtypes.float8_e4m3fn
    _same_bits(d, (a32 * b32).astype(ml_dtypes.float8_e4m3fn))  # one rounding, from float32


@pytest.mark.parametrize("target", TARGETS)
def test_float8_parameter_rejects_uint8(target):
    k = _kernel(f8_decode, (256, "float8_e4m3"), target, (-1,))
    with pytest.raises(TypeError, match=r"main.*'X'|'X'.*main") as info:
        k(np.arange(256, dtype=np.uint8))
    assert "float8" in str(info.value)


# ---------------------------------------------------------------- int4 packed in bytes, bit ops

def int4_unpack(M, K, bm=8, bk=16):
    """Bytes hold two signed int4 values, low nibble first; also packs them back."""
    Kp = K // 2

    @T.prim_func
    def main(P: T.Tensor((M, Kp), "uint8"), Y: T.Tensor((M, K), "float32"), Q: T.Tensor((M, Kp), "uint8"),
             S: T.Tensor((M, Kp), "int8")):
        with T.Kernel(T.ceildiv(K, bk), T.ceildiv(M, bm), threads=32) as (bx, by):
            for i, j in T.Parallel(bm, bk):
                r, c = by * bm + i, bx * bk + j
                if r < M and c < K:
                    byte = T.cast(P[r, c // 2], "int32")
                    nib = (byte >> ((c % 2) * 4)) & 15
                    Y[r, c] = T.cast((nib ^ 8) - 8, "float32")
            for i, j in T.Parallel(bm, bk // 2):
                r, c = by * bm + i, bx * (bk // 2) + j
                if r < M and c < Kp:
                    lo = T.cast(P[r, c], "int32") & 15
                    hi = T.cast(P[r, c], "int32") >> 4
                    Q[r, c] = T.cast(lo << 4 | hi, "uint8")  # nibbles swapped
                    S[r, c] = T.cast(P[r, c], "int8") >> 4  # arithmetic shift: the high nibble, signed
    return main


@pytest.mark.parametrize("target", TARGETS)
def test_int4_unpack(target):
    rng = np.random.default_rng(11)
    M, K = 13, 2 * 256 + 10  # every byte value, ragged in both dimensions
    p = np.concatenate([np.tile(np.arange(256, dtype=np.uint8), (M, 1)),
                        rng.integers(0, 256, (M, 5)).astype(np.uint8)], axis=1)
    y, q, s = _kernel(int4_unpack, (M, K), target, (1, 2, 3))(p)
    lo = (p & 15).astype(np.int8)
    hi = (p >> 4).astype(np.int8)
    signed = lambda n: np.where(n >= 8, n - 16, n)  # noqa: E731
    want = np.stack([signed(lo), signed(hi)], axis=-1).reshape(M, K).astype(np.float32)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(q, (p << 4) | (p >> 4))
    np.testing.assert_array_equal(s, p.view(np.int8) >> 4)


# ---------------------------------------------------------------- printed IR

def test_printed_ir_shows_atomics_and_cumsum():
    text = tiledsl.ir.func_str(splitk_gemm(37, 29, 45, 3))
    assert "T.atomic_add(C[" in text
    text = tiledsl.ir.func_str(scatter_minmax(10, 3))
    assert "T.atomic_max(Fmax[" in text and "T.atomic_min(Imin[" in text
    text = tiledsl.ir.func_str(cumsum_tiles(21, 37, 1, True, "float32", "shared", False))
    assert "T.cumsum(s, d, dim=1, reverse=True)" in text, text


@pytest.mark.parametrize("target", TARGETS)
def test_integer_constants_wrap_into_their_type(target):
    """`P[j] - 8` on uint8 is `P[j] + 248` (a constant takes its type's range, as C converts)."""
    @T.prim_func
    def main(P: T.Tensor((16,), "uint8"), O: T.Tensor((16,), "uint8"), Q: T.Tensor((16,), "int8")):
        with T.Kernel(1) as bx:
            for j in T.Parallel(16):
                O[j] = P[j] - 8
                Q[j] = T.cast(P[j], "int8") + 200
    p = np.arange(16, dtype=np.uint8) * 16
    o, q = tiledsl.compile(main, out_idx=[1, 2], target=target)(p)
    np.testing.assert_array_equal(o, p - np.uint8(8))
    np.testing.assert_array_equal(q, p.astype(np.int8) + np.int8(-56))


@pytest.mark.parametrize("target", TARGETS)
def test_atomic_add_into_float8(target):
    """The old element is widened from float8 and the sum rounded back, as a plain store does."""
    @T.prim_func
    def main(X: T.Tensor((8,), "float32"), Y: T.Tensor((2,), "float8_e4m3")):
        with T.Kernel(1) as bx:
            for i in T.Parallel(8):
                T.atomic_add(Y[i % 2], X[i])
    y = np.zeros(2, ml_dtypes.float8_e4m3fn)
    tiledsl.compile(main, out_idx=[], target=target)(np.arange(8, dtype=np.float32), y)
    np.testing.assert_array_equal(y.astype(np.float32), [12.0, 16.0])

"""T.gemm end to end on the CPU: every transpose combination, several tile shapes, ragged
sizes (tiles that do not divide the matrix, K=1, M=1, N=1), float32 / float64 / float16 /
bfloat16 and a relu epilogue, all against a float64 numpy reference.

Tolerances are error bounds, not fudge factors: a K-term dot product accumulated in a type
with unit roundoff u is within about K*u*(|A| @ |B|) of the exact value, and rounding the
result to the output type adds u_out*|C|. A kernel that accumulated float64 in float32, or
float16 in float16, fails these bounds by orders of magnitude.
"""

import ml_dtypes
import numpy as np
import pytest

import tiledsl
import tiledsl.language as T

# Unit roundoff (round to nearest) of each type: 2**-precision.
_U = {"float64": 2.0 ** -53, "float32": 2.0 ** -24, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}
# Half the smallest positive value each output type can hold (the absolute rounding error
# near zero, where the relative bound stops holding).
_TINY = {"float64": 0.0, "float32": 2.0 ** -150, "float16": 2.0 ** -25, "bfloat16": 2.0 ** -134}


@tiledsl.jit(out_idx=[-1])
def gemm(M, N, K, block_M=64, block_N=64, block_K=32, trans_A=False, trans_B=False,
         dtype="float32", accum_dtype="float32", relu=False):
    a_shape = (K, M) if trans_A else (M, K)
    b_shape = (N, K) if trans_B else (K, N)
    a_tile = (block_K, block_M) if trans_A else (block_M, block_K)
    b_tile = (block_N, block_K) if trans_B else (block_K, block_N)

    @T.prim_func
    def main(A: T.Tensor(a_shape, dtype), B: T.Tensor(b_shape, dtype), C: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=128) as (bx, by):
            A_s = T.alloc_shared(a_tile, dtype)
            B_s = T.alloc_shared(b_tile, dtype)
            C_f = T.alloc_fragment((block_M, block_N), accum_dtype)
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                if trans_A:
                    T.copy(A[k * block_K, by * block_M], A_s)
                else:
                    T.copy(A[by * block_M, k * block_K], A_s)
                if trans_B:
                    T.copy(B[bx * block_N, k * block_K], B_s)
                else:
                    T.copy(B[k * block_K, bx * block_N], B_s)
                T.gemm(A_s, B_s, C_f, transpose_A=trans_A, transpose_B=trans_B)
            if relu:
                for i, j in T.Parallel(block_M, block_N):
                    C_f[i, j] = T.max(C_f[i, j], 0)
            T.copy(C_f, C[by * block_M, bx * block_N])
    return main


def _np_dtype(name: str):
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def _operands(M, N, K, trans_A, trans_B, dtype, seed):
    """Random A, B in the kernel's storage layout, with values exactly representable in dtype."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.0, 1.0, (K, M) if trans_A else (M, K)).astype(_np_dtype(dtype))
    b = rng.uniform(-1.0, 1.0, (N, K) if trans_B else (K, N)).astype(_np_dtype(dtype))
    return a, b


def _check(c, a, b, trans_A, trans_B, dtype, accum_dtype, relu=False):
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    a64 = a64.T if trans_A else a64
    b64 = b64.T if trans_B else b64
    K = a64.shape[1]
    ref = a64 @ b64
    scale = np.abs(a64) @ np.abs(b64)
    if relu:
        ref = np.maximum(ref, 0.0)  # 1-Lipschitz: the same error bound holds after it
    assert c.dtype == _np_dtype(dtype)
    assert c.shape == ref.shape
    c64 = c.astype(np.float64)
    assert np.all(np.isfinite(c64))
    u_acc = _U[accum_dtype]
    tol = 2 * (K + 1) * u_acc * scale + _U[dtype] * np.abs(ref) + _TINY[dtype]
    err = np.abs(c64 - ref)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert np.all(err <= tol), (f"C{worst}: got {c64[worst]!r}, want {ref[worst]!r} "
                                f"(|err| {err[worst]:.3g} > tol {tol[worst]:.3g})")


TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]
TILES = [(64, 64, 32), (32, 16, 8), (16, 64, 16)]


def _ids(v):
    if isinstance(v, tuple) and all(isinstance(x, bool) for x in v):
        return "".join("T" if x else "N" for x in v)
    if isinstance(v, tuple):
        return "x".join(str(x) for x in v)
    return str(v)


@pytest.mark.parametrize("tiles", TILES, ids=_ids)
@pytest.mark.parametrize("trans", TRANSPOSES, ids=_ids)
def test_transposes_and_tiles_ragged(trans, tiles):
    """70 x 45 x 83 is divided by none of the tile shapes in any dimension."""
    M, N, K = 70, 45, 83
    ta, tb = trans
    k = gemm(M, N, K, *tiles, trans_A=ta, trans_B=tb)
    a, b = _operands(M, N, K, ta, tb, "float32", seed=1)
    _check(k(a, b), a, b, ta, tb, "float32", "float32")


@pytest.mark.parametrize("tiles", TILES, ids=_ids)
def test_1000_cube(tiles):
    M = N = K = 1000
    k = gemm(M, N, K, *tiles)
    a, b = _operands(M, N, K, False, False, "float32", seed=2)
    _check(k(a, b), a, b, False, False, "float32", "float32")


def test_1000_cube_both_transposed():
    M = N = K = 1000
    k = gemm(M, N, K, 64, 64, 32, trans_A=True, trans_B=True)
    a, b = _operands(M, N, K, True, True, "float32", seed=3)
    _check(k(a, b), a, b, True, True, "float32", "float32")


RAGGED = [(1, 7, 130), (17, 33, 65), (40, 50, 1), (1, 64, 48), (33, 1, 20)]


@pytest.mark.parametrize("tiles", [(32, 16, 8), (64, 64, 32)], ids=_ids)
@pytest.mark.parametrize("size", RAGGED, ids=_ids)
def test_ragged_sizes(size, tiles):
    """Matrices smaller than one tile, K=1 (one partial K tile), M=1 and N=1."""
    M, N, K = size
    trans_B = size == (17, 33, 65)  # one transposed case among the ragged ones
    k = gemm(M, N, K, *tiles, trans_B=trans_B)
    a, b = _operands(M, N, K, False, trans_B, "float32", seed=4)
    _check(k(a, b), a, b, False, trans_B, "float32", "float32")


DTYPES = [("float64", "float64"), ("float16", "float32"), ("bfloat16", "float32")]


@pytest.mark.parametrize("trans", [(False, False), (True, True)], ids=_ids)
@pytest.mark.parametrize("dtype,accum", DTYPES, ids=[d for d, _ in DTYPES])
def test_dtypes(dtype, accum, trans):
    M, N, K = 17, 33, 65
    ta, tb = trans
    k = gemm(M, N, K, 32, 16, 8, trans_A=ta, trans_B=tb, dtype=dtype, accum_dtype=accum)
    a, b = _operands(M, N, K, ta, tb, dtype, seed=5)
    _check(k(a, b), a, b, ta, tb, dtype, accum)


def test_float64_is_accumulated_in_float64():
    """Terms that cancel exactly in float64 but not in float32: 1 + 2**-30 - 1 = 2**-30."""
    k = gemm(1, 1, 3, 16, 16, 16, dtype="float64", accum_dtype="float64")
    a = np.ones((1, 3))
    b = np.array([[1.0], [2.0 ** -30], [-1.0]])
    assert k(a, b)[0, 0] == 2.0 ** -30


def test_half_inputs_accumulate_in_float32():
    """2048 + 1 + 1 + ... stays 2048 in float16 (1 is half its ulp there, a tie to even);
    in float32 it reaches 2048 + 64, which float16 holds exactly."""
    K = 65
    k = gemm(1, 1, K, 16, 16, 16, dtype="float16", accum_dtype="float32")
    a = np.ones((1, K), np.float16)
    b = np.ones((K, 1), np.float16)
    b[0, 0] = 2048.0
    assert float(k(a, b)[0, 0]) == 2048.0 + 64


@pytest.mark.parametrize("dtype,accum", [("float32", "float32"), ("float16", "float32")],
                         ids=["float32", "float16"])
def test_relu_epilogue(dtype, accum):
    M, N, K = 100, 70, 50
    k = gemm(M, N, K, 64, 64, 32, dtype=dtype, accum_dtype=accum, relu=True)
    a, b = _operands(M, N, K, False, False, dtype, seed=6)
    c = k(a, b)
    assert (c.astype(np.float64) >= 0).all()
    assert (c == 0).any() and (c > 0).any()  # the epilogue really clipped something
    _check(c, a, b, False, False, dtype, accum, relu=True)


def test_explicit_output_and_reuse():
    """Passing every argument (output included) fills it in place and returns None; the kernel
    object is reused by the factory for the same arguments."""
    M, N, K = 17, 33, 65
    k = gemm(M, N, K, 32, 16, 8)
    assert gemm(M, N, K, 32, 16, 8) is k
    a, b = _operands(M, N, K, False, False, "float32", seed=7)
    c = np.full((M, N), np.nan, np.float32)
    assert k(a, b, c) is None
    _check(c, a, b, False, False, "float32", "float32")
    # A second call starts from a cleared accumulator, not from the previous result.
    assert k(a, b, c) is None
    _check(c, a, b, False, False, "float32", "float32")

"""Non-GEMM kernels end to end on the CPU, against numpy: elementwise with a scalar
parameter, math intrinsics, integer arithmetic, row softmax, reductions along each axis,
T.fill, sliced copies of a 3-D tensor, run-time if/else, local scalars, range loops,
Python-level loops and helper functions.
"""

import ml_dtypes
import numpy as np
import pytest

import tiledsl
import tiledsl.language as T



# ---------------------------------------------------------------- elementwise, scalar parameter

@tiledsl.jit(out_idx=[-1])
def scale_add_1d(N, block=128, dtype="float32"):
    @T.prim_func
    def main(A: T.Tensor((N,), dtype), B: T.Tensor((N,), dtype), alpha: T.float32,
             C: T.Tensor((N,), dtype)):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            for i in T.Parallel(block):
                C[bx * block + i] = A[bx * block + i] * alpha + B[bx * block + i]
    return main


@tiledsl.jit(out_idx=[-1])
def scale_add_2d(M, N, block_M=16, block_N=32):
    @T.prim_func
    def main(A: T.Tensor((M, N), "float32"), B: T.Tensor((M, N), "float32"), alpha: T.float32,
             C: T.Tensor((M, N), "float32")):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M)) as (bx, by):
            for i, j in T.Parallel(block_M, block_N):
                C[by * block_M + i, bx * block_N + j] = (
                    A[by * block_M + i, bx * block_N + j] * alpha + B[by * block_M + i, bx * block_N + j])
    return main


@pytest.mark.parametrize("N", [1, 127, 1037])
def test_scale_add_1d(N):
    rng = np.random.default_rng(1234)
    k = scale_add_1d(N)
    a = rng.standard_normal(N).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    for alpha in (2.5, 0.0, -1.25, 3, np.float32(0.5)):
        c = k(a, b, alpha)
        assert c.shape == (N,) and c.dtype == np.float32
        np.testing.assert_allclose(c, a * np.float32(alpha) + b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(33, 17), (1, 100), (64, 64)], ids=str)
def test_scale_add_2d(shape):
    rng = np.random.default_rng(1234)
    k = scale_add_2d(*shape)
    a = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape).astype(np.float32)
    c = k(a, b, -0.75)
    np.testing.assert_allclose(c, a * np.float32(-0.75) + b, rtol=1e-6, atol=1e-6)
    # Explicit output: rows and columns past the ragged edge of a tile are not written
    # elsewhere (a canary around the output would be overwritten by an unguarded store).
    buf = np.full((shape[0] + 2, shape[1]), 123.0, np.float32)
    out = buf[1:-1]
    assert k(a, b, 2.0, out) is None
    np.testing.assert_allclose(out, a * 2 + b, rtol=1e-6, atol=1e-6)
    assert (buf[0] == 123.0).all() and (buf[-1] == 123.0).all()


def test_scale_add_bfloat16():
    rng = np.random.default_rng(1234)
    N = 300
    k = scale_add_1d(N, dtype="bfloat16")
    a = rng.standard_normal(N).astype(ml_dtypes.bfloat16)
    b = rng.standard_normal(N).astype(ml_dtypes.bfloat16)
    c = k(a, b, 1.5)
    assert c.dtype == ml_dtypes.bfloat16
    ref = a.astype(np.float32) * 1.5 + b.astype(np.float32)  # computed in float, rounded once
    np.testing.assert_array_equal(c, ref.astype(ml_dtypes.bfloat16))


# ---------------------------------------------------------------- math intrinsics, casts

@tiledsl.jit(out_idx=[1, 2, 3])
def math_ops(M, N, block_M=8, block_N=16):
    @T.prim_func
    def main(X: T.Tensor((M, N), "float32"), Y: T.Tensor((M, N), "float32"),
             Z: T.Tensor((M, N), "int32"), W: T.Tensor((M, N), "float16")):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M)) as (bx, by):
            for i, j in T.Parallel(block_M, block_N):
                x = X[by * block_M + i, bx * block_N + j]
                # sqrt only on the branch where x > 0: if_then_else must not evaluate the other.
                Y[by * block_M + i, bx * block_N + j] = T.if_then_else(
                    x > 0, T.exp(-x) * T.sqrt(x), T.min(T.abs(x), 0.5))
                Z[by * block_M + i, bx * block_N + j] = T.cast(x * 10.0, "int32")
                W[by * block_M + i, bx * block_N + j] = T.cast(x, "float16")
    return main


@pytest.mark.parametrize("shape", [(19, 45), (1, 7)], ids=str)
def test_math_ops(shape):
    rng = np.random.default_rng(1234)
    k = math_ops(*shape)
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    x.flat[0] = 0.0
    y, z, w = k(x)
    with np.errstate(invalid="ignore"):
        ref = np.where(x > 0, np.exp(-x) * np.sqrt(x), np.minimum(np.abs(x), 0.5))
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-7)
    assert z.dtype == np.int32
    np.testing.assert_array_equal(z, (x * np.float32(10)).astype(np.int32))  # truncation
    assert w.dtype == np.float16
    np.testing.assert_array_equal(w, x.astype(np.float16))  # round to nearest even


@tiledsl.jit(out_idx=[1])
def int_ops(N):
    @T.prim_func
    def main(A: T.Tensor((N,), "int32"), B: T.Tensor((4, N), "int32")):
        with T.Kernel(1) as bx:
            for i in T.Parallel(N):
                B[0, i] = A[i] // 3
                B[1, i] = A[i] % 3
                B[2, i] = T.abs(A[i])
                B[3, i] = T.max(A[i], -2) * 2
    return main


def test_integer_ops_use_python_semantics():
    """`//` and `%` floor like Python and numpy (C truncates toward zero)."""
    a = np.arange(-7, 8).astype(np.int32)
    b = int_ops(a.size)(a)
    np.testing.assert_array_equal(b, np.stack([a // 3, a % 3, np.abs(a), np.maximum(a, -2) * 2]))


# ---------------------------------------------------------------- softmax, reductions, fill

@tiledsl.jit(out_idx=[-1])
def softmax(M, N, block_M=8, dtype="float32"):
    @T.prim_func
    def main(X: T.Tensor((M, N), dtype), Y: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(M, block_M)) as bx:
            x_f = T.alloc_fragment((block_M, N), "float32")
            m_f = T.alloc_fragment((block_M,), "float32")
            s_f = T.alloc_fragment((block_M,), "float32")
            T.copy(X[bx * block_M, 0], x_f)
            T.reduce_max(x_f, m_f, dim=1)
            for i, j in T.Parallel(block_M, N):
                x_f[i, j] = T.exp(x_f[i, j] - m_f[i])
            T.reduce_sum(x_f, s_f, dim=1)
            for i, j in T.Parallel(block_M, N):
                x_f[i, j] = x_f[i, j] / s_f[i]
            T.copy(x_f, Y[bx * block_M, 0])
    return main


def _softmax_ref(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("M,N", [(21, 37), (3, 2), (64, 128)])
def test_softmax(M, N):
    rng = np.random.default_rng(1234)
    k = softmax(M, N)
    x = (rng.standard_normal((M, N)) * 4).astype(np.float32)
    x[0, :] += 80.0  # would overflow exp without the max subtraction
    y = k(x)
    np.testing.assert_allclose(y, _softmax_ref(x), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_softmax_float16_io():
    rng = np.random.default_rng(1234)
    M, N = 13, 50
    k = softmax(M, N, dtype="float16")
    x = (rng.standard_normal((M, N)) * 3).astype(np.float16)
    y = k(x)
    assert y.dtype == np.float16
    ref = _softmax_ref(x)
    # computed in float32, rounded once to float16 (unit roundoff 2**-11)
    assert np.all(np.abs(y.astype(np.float64) - ref) <= 2.0 ** -11 * ref + 2.0 ** -24 + 1e-6 * ref)


@tiledsl.jit(out_idx=[-1])
def column_copy(M, block_M=8):
    @T.prim_func
    def main(X: T.Tensor((M, 1), "float32"), Y: T.Tensor((M, 1), "float32")):
        with T.Kernel(T.ceildiv(M, block_M)) as bx:
            t = T.alloc_fragment((block_M, 1), "float32")
            T.copy(X[bx * block_M, 0], t)
            for i, j in T.Parallel(block_M, 1):
                t[i, j] = t[i, j] + 1.0
            T.copy(t, Y[bx * block_M, 0])
    return main


def test_copy_tile_with_a_unit_dimension():
    """A start point `X[r, 0]` copied into an (8, 1) tile is the 8 x 1 column block at (r, 0),
    dimension by dimension (as the tile's rank equals the tensor's), not a row of 8."""
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((20, 1)).astype(np.float32)
    np.testing.assert_array_equal(column_copy(20)(x), x + 1)


@tiledsl.jit(out_idx=[1, 2])
def reductions(M, N):
    @T.prim_func
    def main(X: T.Tensor((M, N), "float32"), R0: T.Tensor((5, N), "float32"),
             R1: T.Tensor((M, 5), "float32")):
        with T.Kernel(1) as bx:
            x = T.alloc_fragment((M, N), "float32")
            cols = T.alloc_fragment((5, N), "float32")
            rows = T.alloc_shared((M, 5), "float32")
            col = T.alloc_fragment((N,), "float32")
            row = T.alloc_fragment((M,), "float32")
            T.copy(X, x)
            # dim=0: one value per column
            T.reduce_sum(x, col, dim=0)
            T.copy(col, cols[0, 0])
            T.reduce_max(x, col, dim=0)
            T.copy(col, cols[1, 0])
            T.reduce_min(x, col, dim=0)
            T.copy(col, cols[2, 0])
            T.reduce_absmax(x, col, dim=0)
            T.copy(col, cols[3, 0])
            # clear=False combines with what is there: col (= absmax) + sum over dim 0
            T.reduce_sum(x, col, dim=0, clear=False)
            T.copy(col, cols[4, 0])
            # dim=1 (and dim=-1): one value per row
            T.reduce_sum(x, row, dim=1)
            T.copy(row, rows[0:M, 0])
            T.reduce_max(x, row, dim=-1)
            T.copy(row, rows[0:M, 1])
            T.reduce_min(x, row, dim=1)
            T.copy(row, rows[0:M, 2])
            T.reduce_abssum(x, row, dim=1)
            T.copy(row, rows[0:M, 3])
            T.reduce_max(x, row, dim=1, clear=False)  # max(abssum, max) = abssum
            T.copy(row, rows[0:M, 4])
            T.copy(cols, R0)
            T.copy(rows, R1)
    return main


def test_reductions_along_each_axis():
    rng = np.random.default_rng(1234)
    M, N = 7, 13
    x = rng.standard_normal((M, N)).astype(np.float32)
    r0, r1 = reductions(M, N)(x)
    want0 = np.stack([x.sum(0), x.max(0), x.min(0), np.abs(x).max(0), np.abs(x).max(0) + x.sum(0)])
    want1 = np.stack([x.sum(1), x.max(1), x.min(1), np.abs(x).sum(1), np.abs(x).sum(1)], axis=1)
    np.testing.assert_allclose(r0, want0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r1, want1, rtol=1e-5, atol=1e-5)


@tiledsl.jit(out_idx=[-1])
def fills(M, N, block_M=8):
    @T.prim_func
    def main(v: T.float32, Y: T.Tensor((M, N), "float32")):
        with T.Kernel(T.ceildiv(M, block_M)) as bx:
            t = T.alloc_fragment((block_M, N), "float32")
            T.fill(t, v)
            T.fill(t[2:4, 1:3], -1.0)
            T.fill(t[5, 0:N], T.infinity("float32"))
            T.copy(t, Y[bx * block_M, 0])
    return main


def test_fill():
    M, N = 20, 6
    y = fills(M, N)(0.25)
    want = np.full((8, N), 0.25, np.float32)
    want[2:4, 1:3] = -1.0
    want[5, :] = np.inf
    np.testing.assert_array_equal(y, np.tile(want, (3, 1))[:M])


# ---------------------------------------------------------------- sliced copies of 3-D tensors

@tiledsl.jit(out_idx=[-1])
def slice3d(B, S, D, block=16):
    @T.prim_func
    def main(X: T.Tensor((B, S, D), "float32"), Y: T.Tensor((B, S, D), "float32")):
        with T.Kernel(T.ceildiv(S, block), B) as (i, b):
            X_s = T.alloc_shared((block, D), "float32")
            T.copy(X[b, i * block:(i + 1) * block, :], X_s)
            for r, c in T.Parallel(block, D):
                X_s[r, c] = X_s[r, c] * 2.0 + r
            T.copy(X_s, Y[b, i * block:(i + 1) * block, :])
    return main


@pytest.mark.parametrize("shape", [(3, 48, 5), (2, 40, 3)], ids=str)
def test_slice_copy_3d(shape):
    """(2, 40, 3): the last 16-row slice hangs over the end of the tensor."""
    rng = np.random.default_rng(1234)
    x = rng.standard_normal(shape).astype(np.float32)
    y = slice3d(*shape)(x)
    rows = (np.arange(shape[1]) % 16).astype(np.float32)
    np.testing.assert_allclose(y, x * 2 + rows[None, :, None], rtol=1e-6)


@tiledsl.jit(out_idx=[-1])
def transpose_last2(B, S, D):
    @T.prim_func
    def main(X: T.Tensor((B, S, D), "float32"), Y: T.Tensor((B, D, S), "float32")):
        with T.Kernel(B) as b:
            t = T.alloc_shared((S, D), "float32")
            u = T.alloc_fragment((D, S), "float32")
            T.copy(X[b, :, :], t)
            for i, j in T.Parallel(D, S):
                u[i, j] = t[j, i]
            T.copy(u, Y[b, 0:D, 0:S])
    return main


def test_whole_slice_copy_and_transpose():
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(transpose_last2(3, 5, 4)(x), x.transpose(0, 2, 1))


# ---------------------------------------------------------------- control flow and scalars

def sq(x):
    return x * x


def clamp01(x):
    return T.min(T.max(x, 0.0), 1.0)


SCALES = (1.0, 2.0, 3.0)


@tiledsl.jit(out_idx=[-1])
def control(N, block=16):
    @T.prim_func
    def main(X: T.Tensor((N,), "float32"), Y: T.Tensor((N, 6), "float32")):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            for i in T.Parallel(block):
                x = X[bx * block + i]
                # if / else on a run-time value
                if x > 0.5:
                    Y[bx * block + i, 0] = 1.0
                elif x > 0.25:
                    Y[bx * block + i, 0] = 0.0
                else:
                    Y[bx * block + i, 0] = -1.0
                # a mutable scalar updated in a range(...) loop, through a Python helper
                acc = T.alloc_var("float32")
                for r in range(3):
                    acc += sq(x) + r
                Y[bx * block + i, 1] = acc
                # a Python loop over a tuple, unrolled when the kernel is parsed
                t = T.float32(0)
                for s in SCALES:
                    t += x * s
                Y[bx * block + i, 2] = t
                # helper composing T functions; reassigning a scalar in a branch
                v = clamp01(x * 3.0 - 1.0)
                if x < 0.1:
                    v = v + 10.0
                Y[bx * block + i, 3] = v
                # range with start, stop and a step, and a negative step
                p = T.alloc_var("float32")
                for r in range(2, 11, 3):  # 2, 5, 8
                    p += r * x
                for r in range(4, 0, -2):  # 4, 2
                    p -= r
                Y[bx * block + i, 4] = p
                # a conditional expression picked at parse time (block is a Python int)
                Y[bx * block + i, 5] = x * 2.0 if block > 8 else x
    return main


def test_control_flow_and_scalars():
    rng = np.random.default_rng(1234)
    N = 37
    x = rng.uniform(0, 1, N).astype(np.float32)
    x[:4] = [0.05, 0.3, 0.6, 0.25]
    y = control(N)(x)
    np.testing.assert_array_equal(y[:, 0], np.where(x > 0.5, 1.0, np.where(x > 0.25, 0.0, -1.0)))
    np.testing.assert_allclose(y[:, 1], 3 * x * x + 3, rtol=1e-6)
    np.testing.assert_allclose(y[:, 2], 6 * x, rtol=1e-6)
    np.testing.assert_allclose(y[:, 3], np.clip(x * 3 - 1, 0, 1) + np.where(x < 0.1, 10, 0),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y[:, 4], 15 * x - 6, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[:, 5], 2 * x, rtol=1e-6)


@tiledsl.jit(out_idx=[-1])
def row_dot(M, N, block=8):
    @T.prim_func
    def main(X: T.Tensor((M, N), "float32"), W: T.Tensor((N,), "float32"), Y: T.Tensor((M, 2), "float32")):
        with T.Kernel(T.ceildiv(M, block)) as bx:
            for i in T.Parallel(block):
                acc = T.alloc_var("float32")
                for k in T.serial(N):
                    acc += X[bx * block + i, k] * W[k]
                Y[bx * block + i, 0] = acc
                s = T.float32(0)
                for k in T.serial(1, N):  # starts at 1: skips column 0
                    s = s + X[bx * block + i, k]
                Y[bx * block + i, 1] = s
    return main


def test_local_scalars_in_serial_loops():
    rng = np.random.default_rng(1234)
    M, N = 19, 23
    x = rng.standard_normal((M, N)).astype(np.float32)
    w = rng.standard_normal(N).astype(np.float32)
    y = row_dot(M, N)(x, w)
    np.testing.assert_allclose(y[:, 0], x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y[:, 1], x[:, 1:].sum(axis=1), rtol=1e-5, atol=1e-5)


@tiledsl.jit(out_idx=[-1])
def python_float_accumulator(M, N, block=8, typed=False):
    @T.prim_func
    def main(X: T.Tensor((M, N), "float32"), Y: T.Tensor((M,), "float32")):
        with T.Kernel(T.ceildiv(M, block)) as bx:
            for i in T.Parallel(block):
                s = T.float32(0) if typed else 0.0
                for k in T.serial(N):
                    s += X[bx * block + i, k]  # !python-float-accumulate
                Y[bx * block + i] = s
    return main


def test_python_float_accumulator_is_an_error_not_a_silent_zero():
    """`s = 0.0` then `s += ...` in a loop: a Python number cannot carry a run-time sum across
    iterations; the frontend says so at the `+=` line instead of silently restarting."""
    with pytest.raises(tiledsl.FrontendError, match="cannot accumulate a run-time value") as info:
        python_float_accumulator(10, 7)
    assert "s = T.alloc_var" in str(info.value)
    assert "s += X[bx * block + i, k]" in str(info.value)


def test_typed_scalar_accumulator():
    """`s = T.float32(0)` is a run-time variable: `s += ...` in a T.serial loop is a running sum."""
    rng = np.random.default_rng(1234)
    M, N = 10, 7
    x = rng.standard_normal((M, N)).astype(np.float32)
    y = python_float_accumulator(M, N, typed=True)(x)
    np.testing.assert_allclose(y, x.sum(axis=1), rtol=1e-5, atol=1e-5)

"""The generated C++ host wrapper rejects bad arguments with a Python TypeError / ValueError
that names the kernel and the parameter, before the kernel body runs; the same checks hold
when the raw TVM-FFI function is called without the Python wrapper."""

import re

import ml_dtypes
import numpy as np
import pytest

import tiledsl
import tiledsl.language as T


@tiledsl.jit(out_idx=[-1])
def matmul(M, N, K, block_M=32, block_N=32, block_K=32, dtype="float32"):
    @T.prim_func
    def main(A: T.Tensor((M, K), dtype), B: T.Tensor((K, N), dtype), C: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=128) as (bx, by):
            A_s = T.alloc_shared((block_M, block_K), dtype)
            B_s = T.alloc_shared((block_K, block_N), dtype)
            C_f = T.alloc_fragment((block_M, block_N), "float32")
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                T.copy(A[by * block_M, k * block_K], A_s)
                T.copy(B[k * block_K, bx * block_N], B_s)
                T.gemm(A_s, B_s, C_f)
            T.copy(C_f, C[by * block_M, bx * block_N])
    return main


@tiledsl.jit(out_idx=[-1])
def scale_add(N, block=64):
    @T.prim_func
    def main(A: T.Tensor((N,), "float32"), alpha: T.float32, n: T.int32, C: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            for i in T.Parallel(block):
                C[bx * block + i] = A[bx * block + i] * alpha + n
    return main


@tiledsl.jit(out_idx=[-1])
def dyn_add(block=16):
    N = T.dynamic("N")

    @T.prim_func
    def main(A: T.Tensor((N, 3), "float32"), B: T.Tensor((N, 3), "float32"), C: T.Tensor((N, 3), "float32")):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            for i, j in T.Parallel(block, 3):
                C[bx * block + i, j] = A[bx * block + i, j] + B[bx * block + i, j]
    return main


S = 64  # square, so that an output can alias an input of the same shape


@pytest.fixture(scope="module")
def mm():
    return matmul(S, S, S)


@pytest.fixture(scope="module")
def sa():
    return scale_add(100)


@pytest.fixture(scope="module")
def ab():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((S, S)).astype(np.float32),
            rng.standard_normal((S, S)).astype(np.float32))


def _raises(exc, message):
    return pytest.raises(exc, match="^" + re.escape(message) + "$")


def test_good_call_works(mm, ab):
    a, b = ab
    np.testing.assert_allclose(mm(a, b), a @ b, rtol=1e-4, atol=1e-4)


def test_wrong_dtype(mm, ab):
    a, b = ab
    with _raises(TypeError, "matmul: argument 'A' expects float32, got float64"):
        mm(a.astype(np.float64), b)
    with _raises(TypeError, "matmul: argument 'B' expects float32, got int32"):
        mm(a, b.astype(np.int32))
    with _raises(TypeError, "matmul: argument 'B' expects float32, got float16"):
        mm(a, b.astype(np.float16))
    with _raises(TypeError, "matmul: argument 'A' expects float32, got bfloat16"):
        mm(a.astype(ml_dtypes.bfloat16), b)
    with _raises(TypeError, "matmul: argument 'C' expects float32, got float64"):
        mm(a, b, np.empty((S, S), np.float64))


def test_wrong_dtype_bfloat16_kernel(ab):
    k = matmul(S, S, S, dtype="bfloat16")
    a, b = (x.astype(ml_dtypes.bfloat16) for x in ab)
    c = k(a, b)
    assert c.dtype == ml_dtypes.bfloat16
    with _raises(TypeError, "matmul: argument 'A' expects bfloat16, got float32"):
        k(ab[0], b)
    # numpy's bfloat16 travels as its uint16 view; a genuine uint16 array is still refused
    with _raises(TypeError, "matmul: argument 'B' expects bfloat16, got uint16"):
        k(a, b.view(np.uint16))
    with _raises(TypeError, "matmul: argument 'B' expects bfloat16, got float16"):
        k(a, b.astype(np.float16))


def test_wrong_shape(mm, ab):
    a, b = ab
    with _raises(ValueError, "matmul: argument 'A' expects shape (64, 64), got (63, 64)"):
        mm(a[:63], b)
    with _raises(ValueError, "matmul: argument 'B' expects shape (64, 64), got (64, 32)"):
        mm(a, np.ascontiguousarray(b[:, :32]))
    with _raises(ValueError, "matmul: argument 'C' expects shape (64, 64), got (64, 65)"):
        mm(a, b, np.empty((S, S + 1), np.float32))


def test_wrong_shape_1d(sa):
    a = np.ones(99, np.float32)
    with _raises(ValueError, "scale_add: argument 'A' expects shape (100,), got (99,)"):
        sa(a, 1.0, 0)


def test_wrong_shape_symbolic_dimension():
    k = dyn_add()
    a = np.ones((50, 3), np.float32)
    np.testing.assert_array_equal(k(a, a.copy()), 2 * a)
    np.testing.assert_array_equal(k(a[:7], a[:7].copy()), 2 * a[:7])  # N is bound per call
    with _raises(ValueError, "dyn_add: argument 'B' expects shape (N, 3) = (50, 3), got (49, 3)"):
        k(a, np.ones((49, 3), np.float32))
    with _raises(ValueError, "dyn_add: argument 'A' expects shape (N, 3) = (50, 3), got (50, 4)"):
        k(np.ones((50, 4), np.float32), a)


def test_zero_size_symbolic_dimension():
    """N = 0 is a valid size: nothing to do, an empty result (not a contiguity error)."""
    k = dyn_add()
    a = np.ones((0, 3), np.float32)
    c = k(a, a.copy())
    assert c.shape == (0, 3)


def test_wrong_ndim(mm, ab):
    a, b = ab
    with _raises(ValueError, "matmul: argument 'A' expects 2 dimensions, got 3"):
        mm(a[None], b)
    with _raises(ValueError, "matmul: argument 'B' expects 2 dimensions, got 1"):
        mm(a, b.reshape(-1))


def test_non_contiguous(mm, ab):
    a, b = ab
    with _raises(ValueError, "matmul: argument 'A' must be contiguous (row-major); got strides (1, 64) "
                             "(in elements)"):
        mm(a.T, b)
    wide = np.ones((S, 2 * S), np.float32)
    with _raises(ValueError, "matmul: argument 'B' must be contiguous (row-major); got strides (128, 2) "
                             "(in elements)"):
        mm(a, wide[:, ::2])
    with _raises(ValueError, "matmul: argument 'C' must be contiguous (row-major); got strides (128, 1) "
                             "(in elements)"):
        mm(a, b, wide[:, :S])
    with _raises(ValueError, "matmul: argument 'A' must be contiguous (row-major); got strides (-64, 1) "
                             "(in elements)"):
        mm(a[::-1], b)


def test_not_a_tensor(mm, ab):
    a, b = ab
    with _raises(TypeError, "matmul: argument 'A' expects a tensor, got int"):
        mm(3, b)
    with _raises(TypeError, "matmul: argument 'B' expects a tensor, got list"):
        mm(a, b.tolist())
    with _raises(TypeError, "matmul: argument 'A' expects a tensor, got None"):
        mm(None, b)
    with _raises(TypeError, "matmul: argument 'B' expects a tensor, got float"):
        mm(a, 1.5)


def test_wrong_number_of_arguments(mm, ab, sa):
    a, b = ab
    with _raises(TypeError, "matmul: expects 2 arguments (A, B), got 1"):
        mm(a)
    with _raises(TypeError, "matmul: expects 2 arguments (A, B), got 4"):
        mm(a, b, np.empty((S, S), np.float32), a)
    with _raises(TypeError, "matmul: expects 2 arguments (A, B), got 0"):
        mm()
    with _raises(TypeError, "scale_add: expects 3 arguments (A, alpha, n), got 2"):
        sa(np.ones(100, np.float32), 1.0)


def test_read_only_array(mm, ab):
    a, b = ab
    ro = a.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"^matmul: argument 'A' is a read-only numpy array"):
        mm(ro, b)
    c = np.empty((S, S), np.float32)
    c.flags.writeable = False
    with pytest.raises(ValueError, match=r"^matmul: argument 'C' is a read-only numpy array "
                                         r"\(is written by the kernel\)"):
        mm(a, b, c)


def test_output_aliasing_an_input(mm, ab):
    a, b = ab
    a0 = a.copy()
    with _raises(ValueError, "matmul: argument 'C' is written by the kernel and overlaps argument 'A' "
                             "in memory"):
        mm(a, b, a)
    with _raises(ValueError, "matmul: argument 'C' is written by the kernel and overlaps argument 'B' "
                             "in memory"):
        mm(a, b, b)
    # partial overlap: C starts one row into a buffer whose first rows are A
    buf = np.zeros((2 * S, S), np.float32)
    buf[:S] = a
    with _raises(ValueError, "matmul: argument 'C' is written by the kernel and overlaps argument 'A' "
                             "in memory"):
        mm(buf[:S], b, buf[1:S + 1])
    np.testing.assert_array_equal(a, a0)  # rejected before anything ran
    # adjacent but disjoint is fine
    assert mm(buf[:S], b, buf[S:]) is None
    np.testing.assert_allclose(buf[S:], a @ b, rtol=1e-4, atol=1e-4)
    # two inputs may share memory: only written arguments are checked
    np.testing.assert_allclose(mm(a, a), a @ a, rtol=1e-4, atol=1e-4)


def test_wrong_scalar_type(sa):
    a = np.arange(100, dtype=np.float32)
    np.testing.assert_array_equal(sa(a, 2.0, 3), a * 2 + 3)
    np.testing.assert_array_equal(sa(a, 2, 3), a * 2 + 3)  # an int is a valid float32 scalar
    with _raises(TypeError, "scale_add: argument 'alpha' expects a float32 scalar, got str"):
        sa(a, "2.0", 3)
    with _raises(TypeError, "scale_add: argument 'alpha' expects a float32 scalar, got None"):
        sa(a, None, 3)
    with _raises(TypeError, "scale_add: argument 'n' expects an integer (int32), got float"):
        sa(a, 2.0, 3.5)
    with _raises(ValueError, "scale_add: argument 'n' = 4294967296 does not fit in int32"):
        sa(a, 2.0, 2 ** 32)
    with pytest.raises(TypeError, match=r"^scale_add: argument 'alpha' expects a float32 scalar, got "):
        sa(a, np.ones(3, np.float32), 3)  # a tensor where a scalar belongs
    with pytest.raises(TypeError, match=r"^scale_add: argument 'n' expects an integer \(int32\), got "):
        sa(a, 2.0, np.ones(2, np.int32))


def test_no_write_before_checks(mm, ab):
    """Every argument is checked before the body runs: a bad last argument leaves the output
    untouched."""
    a, b = ab
    c = np.full((S, S), 7.0, np.float32)
    with pytest.raises(ValueError):
        mm(a, b[:, :32].copy(), c)
    assert (c == 7.0).all()


def test_raw_ffi_function_checks(mm, ab, sa):
    """`k._fn` is the library's exported function itself: the checks are in C, not Python."""
    a, b = ab
    c = np.empty((S, S), np.float32)
    mm._fn(a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-4, atol=1e-4)
    with _raises(TypeError, "matmul: argument 'A' expects float32, got float64"):
        mm._fn(a.astype(np.float64), b, c)
    with _raises(ValueError, "matmul: argument 'B' expects shape (64, 64), got (64, 63)"):
        mm._fn(a, np.ones((S, S - 1), np.float32), c)
    with _raises(ValueError, "matmul: argument 'A' expects 2 dimensions, got 1"):
        mm._fn(a.reshape(-1), b, c)
    with _raises(ValueError, "matmul: argument 'A' must be contiguous (row-major); got strides (1, 64) "
                             "(in elements)"):
        mm._fn(a.T, b, c)
    with _raises(TypeError, "matmul: argument 'C' expects a tensor, got int"):
        mm._fn(a, b, 0)
    with _raises(TypeError, "matmul: expects 3 arguments (A, B, C), got 2"):
        mm._fn(a, b)
    with _raises(ValueError, "matmul: argument 'C' is written by the kernel and overlaps argument 'B' "
                             "in memory"):
        mm._fn(a, b, b)
    with _raises(TypeError, "scale_add: argument 'alpha' expects a float32 scalar, got str"):
        sa._fn(np.ones(100, np.float32), "x", 1, np.empty(100, np.float32))

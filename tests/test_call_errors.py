"""Bad arguments at call time, on the compiled CPU kernel and on the interpreter: each is a
`TypeError` / `ValueError` naming the kernel and the parameter, with the same text on both
targets, and never a crash. And index arithmetic is 64-bit: a kernel touching the last rows
of a tensor of more than 2^31 elements (mapped lazily, so it costs a few pages)."""
import re

import ml_dtypes
import numpy as np
import pytest

import tiledsl
import tiledsl.language as T
from corpus.families import gemm_kernel

TARGETS = ["cpu", "interp"]


def matmul(M, N, K, dtype="float32"):
    return gemm_kernel(16, 16, 16, dtype, False, 2, False, 128, shape=(M, N, K))


@T.prim_func
def scale(X: T.Tensor((32,), "float32"), alpha: T.float32, n: T.int32, Y: T.Tensor((32,), "float32")):
    with T.Kernel(2) as bx:
        for i in T.Parallel(16):
            Y[bx * 16 + i] = X[bx * 16 + i] * alpha + n


N = T.dynamic("N")


@T.prim_func
def rows(X: T.Tensor((N, 3), "float32"), Y: T.Tensor((N, 3), "float32")):
    with T.Kernel(T.ceildiv(N, 4)) as bx:
        for i, j in T.Parallel(4, 3):
            Y[bx * 4 + i, j] = X[bx * 4 + i, j] * 2.0


@pytest.fixture(scope="module")
def kernels():
    out = {}
    for t in TARGETS:
        out[t] = dict(mm=tiledsl.compile(matmul(32, 32, 32), [-1], t, name="mm"),
                      bf=tiledsl.compile(matmul(16, 16, 16, "bfloat16"), [-1], t, name="mm_bf16"),
                      scale=tiledsl.compile(scale, [-1], t), rows=tiledsl.compile(rows, [-1], t))
    return out


def _f32(*shape):
    return np.ones(shape, np.float32)


class _OnGpu:
    """A tensor that says it lives on a GPU (as a cupy array would)."""
    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, *args, **kwargs):
        raise BufferError("this test tensor has no data")


SQ = _f32(32, 32)
T32 = np.ones((32, 64), np.float32)[:, ::2]  # right shape, not contiguous
RO = _f32(32, 32)
RO.flags.writeable = False

# (kernel, args, exception, message after "<kernel>: ")
CASES = {
    "dtype": ("mm", (SQ.astype(np.float64), SQ), TypeError, "argument 'A' expects float32, got float64"),
    "dtype_int": ("mm", (SQ, SQ.astype(np.int32)), TypeError, "argument 'B' expects float32, got int32"),
    "bfloat16_expected": ("bf", (_f32(16, 16), _f32(16, 16)), TypeError,
                          "argument 'A' expects bfloat16, got float32"),
    "bfloat16_given": ("mm", (SQ.astype(ml_dtypes.bfloat16), SQ), TypeError,
                       "argument 'A' expects float32, got bfloat16"),
    "uint16_for_bfloat16": ("bf", (np.ones((16, 16), np.uint16), _f32(16, 16)), TypeError,
                            "argument 'A' expects bfloat16, got uint16"),
    "shape": ("mm", (SQ, _f32(32, 16)), ValueError, "argument 'B' expects shape (32, 32), got (32, 16)"),
    "shape_1d": ("scale", (_f32(31), 1.0, 2), ValueError, "argument 'X' expects shape (32,), got (31,)"),
    "ndim": ("mm", (_f32(32), SQ), ValueError, "argument 'A' expects 2 dimensions, got 1"),
    "symbolic_shape": ("rows", (_f32(5, 3), _f32(6, 3)), ValueError,
                       "argument 'Y' expects shape (N, 3) = (5, 3), got (6, 3)"),
    "non_contiguous": ("mm", (T32, SQ), ValueError,
                       "argument 'A' must be contiguous (row-major); got strides (64, 2) (in elements)"),
    "not_a_tensor": ("mm", ([[1.0]], SQ), TypeError, "argument 'A' expects a tensor, got list"),
    "none": ("mm", (None, SQ), TypeError, "argument 'A' expects a tensor, got None"),
    "read_only": ("mm", (RO, SQ), ValueError, "argument 'A' is a read-only numpy array (is an input); "
                  "DLPack cannot pass read-only memory: pass a writable array, e.g. np.array(x)"),
    "scalar_type": ("scale", (_f32(32), "2", 3), TypeError, "argument 'alpha' expects a float32 scalar, got str"),
    "int_given_float": ("scale", (_f32(32), 2.0, 3.5), TypeError,
                        "argument 'n' expects an integer (int32), got float"),
    "int_range": ("scale", (_f32(32), 2.0, 2 ** 40), ValueError,
                  "argument 'n' = 1099511627776 does not fit in int32"),
    "tensor_for_scalar": ("scale", (_f32(32), _f32(1), 3), TypeError,
                          "argument 'alpha' expects a float32 scalar, got tensor"),
    "missing": ("mm", (SQ,), TypeError, "expects 2 arguments (A, B), got 1"),
    "extra": ("mm", (SQ, SQ, SQ, SQ), TypeError, "expects 2 arguments (A, B), got 4"),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", list(CASES))
def test_bad_argument(kernels, target, case):
    kname, args, exc, message = CASES[case]
    k = kernels[target][kname]
    with pytest.raises(exc) as info:
        k(*args)
    assert str(info.value) == f"{k.name}: {message}"


@pytest.mark.parametrize("target", TARGETS)
def test_transposed_view_is_not_contiguous(kernels, target):
    """A transposed square matrix has the right shape: only its strides give it away."""
    k = kernels[target]["mm"]
    with pytest.raises(ValueError, match=re.escape("'A' must be contiguous (row-major); got strides (1, 32)")):
        k(SQ.T, SQ)


@pytest.mark.parametrize("target", TARGETS)
def test_keyword_mistakes(kernels, target):
    k = kernels[target]["mm"]
    with pytest.raises(TypeError, match="^mm: unexpected argument 'X'; parameters are A, B$"):
        k(SQ, X=SQ)
    with pytest.raises(TypeError, match="^mm: argument 'A' given twice$"):
        k(SQ, A=SQ)
    with pytest.raises(TypeError, match="^mm: missing argument 'B'$"):
        k(A=SQ)
    np.testing.assert_allclose(k(B=SQ, A=SQ), SQ @ SQ)


@pytest.mark.parametrize("target", TARGETS)
def test_output_aliasing_an_input(kernels, target):
    k = kernels[target]["mm"]
    a = np.ones((32, 32), np.float32)
    with pytest.raises(ValueError, match="^mm: argument 'C' is written by the kernel and overlaps argument 'A' in memory$"):
        k(a, SQ, a)
    big = np.ones((64, 32), np.float32)
    with pytest.raises(ValueError, match="overlaps argument 'B'"):
        k(SQ, big[16:48], big[:32])
    out = np.zeros((32, 32), np.float32)
    assert k(a, SQ, out) is None and out[0, 0] == 32


@pytest.mark.parametrize("target", TARGETS)
def test_output_is_not_written_when_arguments_are_wrong(kernels, target):
    k = kernels[target]["scale"]
    out = np.full(32, 5.0, np.float32)
    with pytest.raises(ValueError):
        k(_f32(32), 1.0, 2 ** 40, out)
    assert (out == 5.0).all()


def test_tensor_on_another_device_interp():
    k = tiledsl.compile(scale, [-1], "interp")
    with pytest.raises(ValueError, match="^scale: argument 'X' expects a cpu tensor, got one on cuda:0$"):
        k(_OnGpu(), 1.0, 2)


@pytest.mark.parametrize("target", [
    "interp",
    pytest.param("cpu", marks=pytest.mark.xfail(strict=True, raises=BufferError,
                                                reason="runtime/kernel.py hands such arrays to DLPack")),
])
@pytest.mark.parametrize("dtype", [">f4", "V4"])
def test_dtypes_dlpack_cannot_carry(target, dtype):
    k = tiledsl.compile(scale, [-1], target)
    with pytest.raises(TypeError, match=r"^scale: argument 'X' expects float32, got "):
        k(np.ones(32, dtype), 1.0, 2)


# ---------------------------------------------------------------- 64-bit indices

ROWS, COLS = 2 ** 16 + 1, 2 ** 15  # 2^31 + 2^15 int8 elements: the last row starts at 2^31


@T.prim_func
def last_rows(A: T.Tensor((ROWS, COLS), "int8"), r: T.int32, B: T.Tensor((ROWS, COLS), "int8")):
    with T.Kernel(COLS // 4096) as bx:
        t = T.alloc_shared((2, 4096), "int8")
        T.copy(A[ROWS - 2, bx * 4096], t)
        for i, j in T.Parallel(2, 4096):
            B[ROWS - 2 + i, bx * 4096 + j] = t[i, j] + 1
        for j in T.Parallel(4096):
            B[r, bx * 4096 + j] = A[r + 1, bx * 4096 + j] + 2


@pytest.mark.parametrize("target", TARGETS)
def test_tensor_over_2_pow_31_elements(target):
    """np.zeros maps pages lazily: only the rows the kernel touches cost memory."""
    a = np.zeros((ROWS, COLS), np.int8)
    b = np.zeros((ROWS, COLS), np.int8)
    assert a.size > 2 ** 31
    a[-1, :] = np.arange(COLS) % 100
    a[-2, 5] = 7
    k = tiledsl.compile(last_rows, out_idx=[], target=target)
    k(a, ROWS - 3, b)
    np.testing.assert_array_equal(b[-1], a[-1] + 1)
    assert b[-2, 5] == 8 and b[-2, 6] == 1
    np.testing.assert_array_equal(b[-3], a[-2] + 2)
    assert b[0, 0] == 0 and b[-4].max() == 0

"""The examples GEMM + bias + activation, batched GEMM, softmax (whole-row and online) and
LayerNorm / RMSNorm, compiled for the CPU and run in the interpreter, against numpy in float64.
Sizes are ragged (no dimension a multiple of its tile); 16-bit inputs accumulate in float32.
"""
import ml_dtypes
import numpy as np
import pytest

from examples_util import interp_kernel, load_example

epi = load_example("gemm_epilogue")
bmm = load_example("batched_gemm")
sm = load_example("softmax")
norms = load_example("norms")

DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
# One rounding of the float32 result to the output type (unit roundoff 2**-24, 2**-11, 2**-8),
# with room for float32 sums of a few hundred terms.
RTOL = {"float32": 2e-5, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}


def _random(rng, shape, dtype, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(DTYPES[dtype])


def _f64(*xs):
    return [x.astype(np.float64) for x in xs]


def assert_close(got, ref, dtype):
    """Elementwise `|got - ref| <= rtol * (|ref| + max|ref| / 100)`: relative, with an absolute
    floor where the values pass through zero."""
    got = np.asarray(got).astype(np.float64)
    assert got.shape == ref.shape
    tol = RTOL[dtype] * (np.abs(ref) + np.abs(ref).max() / 100)
    bad = np.abs(got - ref) > tol
    assert not bad.any(), (f"{bad.sum()} of {bad.size} elements off; worst "
                           f"{np.abs(got - ref).max():.3g} at {np.unravel_index(np.argmax(np.abs(got - ref)), ref.shape)}")


# ---------------------------------------------------------------- GEMM + bias + activation

GEMM_TILES = dict(block_M=32, block_N=32, block_K=16)


@pytest.mark.parametrize("act", ["relu", "gelu", "silu"])
def test_gemm_bias_act_cpu(act):
    rng = np.random.default_rng(0)
    M, N, K = 77, 93, 61
    a, b, bias = _random(rng, (M, K), "float32"), _random(rng, (K, N), "float32"), _random(rng, N, "float32")
    c = epi.gemm_bias_act(M, N, K, **GEMM_TILES, act=act)(a, b, bias)
    assert c.dtype == np.float32
    assert_close(c, epi.reference(*_f64(a, b, bias), act), "float32")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gemm_bias_act_16bit_cpu(dtype):
    rng = np.random.default_rng(1)
    M, N, K = 70, 45, 83
    a, b, bias = _random(rng, (M, K), dtype), _random(rng, (K, N), dtype), _random(rng, N, dtype)
    c = epi.gemm_bias_act(M, N, K, **GEMM_TILES, dtype=dtype, act="gelu")(a, b, bias)
    assert c.dtype == DTYPES[dtype]
    assert_close(c, epi.reference(*_f64(a, b, bias), "gelu"), dtype)


@pytest.mark.parametrize("act,dtype", [("relu", "float32"), ("gelu", "float32"), ("silu", "bfloat16")])
def test_gemm_bias_act_interp(act, dtype):
    rng = np.random.default_rng(2)
    M, N, K = 37, 45, 29
    a, b, bias = _random(rng, (M, K), dtype), _random(rng, (K, N), dtype), _random(rng, N, dtype)
    c = interp_kernel(epi.gemm_bias_act, M, N, K, block_M=16, block_N=16, block_K=8, dtype=dtype, act=act)(a, b, bias)
    assert_close(c, epi.reference(*_f64(a, b, bias), act), dtype)


def test_gemm_bias_act_rejects_unknown_activation():
    with pytest.raises(ValueError, match="act must be one of"):
        epi.gemm_bias_act(8, 8, 8, act="tanh")


# ---------------------------------------------------------------- batched GEMM

@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_batched_gemm_cpu(dtype):
    rng = np.random.default_rng(3)
    Bt, M, N, K = 3, 50, 70, 45
    a, b = _random(rng, (Bt, M, K), dtype), _random(rng, (Bt, K, N), dtype)
    c = bmm.batched_matmul(Bt, M, N, K, **GEMM_TILES, dtype=dtype)(a, b)
    assert c.dtype == DTYPES[dtype]
    assert_close(c, np.matmul(*_f64(a, b)), dtype)


def test_batched_gemm_interp():
    rng = np.random.default_rng(4)
    Bt, M, N, K = 2, 21, 19, 27
    a, b = _random(rng, (Bt, M, K), "float16"), _random(rng, (Bt, K, N), "float16")
    c = interp_kernel(bmm.batched_matmul, Bt, M, N, K, block_M=16, block_N=16, block_K=8, dtype="float16")(a, b)
    assert_close(c, np.matmul(*_f64(a, b)), "float16")


# ---------------------------------------------------------------- softmax

def _softmax_input(rng, shape, dtype):
    x = _random(rng, shape, dtype, scale=4.0)
    x[0, :] += DTYPES[dtype](60)  # exp would overflow without the max subtraction
    return x


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("which", ["softmax", "online_softmax"])
def test_softmax_cpu(which, dtype):
    rng = np.random.default_rng(5)
    M, N = 23, 300  # online: 300 = 2 tiles of 128 and a ragged 44
    x = _softmax_input(rng, (M, N), dtype)
    tiles = dict(block_M=4, block_N=128) if which == "online_softmax" else dict(block_M=4)
    y = getattr(sm, which)(M, N, **tiles, dtype=dtype)(x)
    assert y.dtype == DTYPES[dtype]
    ref = sm.reference(x.astype(np.float64))
    assert_close(y, ref, dtype)
    np.testing.assert_allclose(y.astype(np.float64).sum(axis=1), 1.0, rtol=N * RTOL[dtype])


def test_online_softmax_tile_divides_row():
    """No mask is generated when the tiles cover the row exactly; the result must not change."""
    rng = np.random.default_rng(6)
    x = _softmax_input(rng, (9, 256), "float32")
    y = sm.online_softmax(9, 256, block_M=4, block_N=64)(x)
    assert_close(y, sm.reference(x.astype(np.float64)), "float32")


@pytest.mark.parametrize("which", ["softmax", "online_softmax"])
def test_softmax_interp(which):
    rng = np.random.default_rng(7)
    M, N = 10, 75
    x = _softmax_input(rng, (M, N), "float32")
    tiles = dict(block_M=4, block_N=32) if which == "online_softmax" else dict(block_M=4)
    y = interp_kernel(getattr(sm, which), M, N, **tiles)(x)
    assert_close(y, sm.reference(x.astype(np.float64)), "float32")


# ---------------------------------------------------------------- LayerNorm, RMSNorm

def _norm_inputs(rng, M, N, dtype):
    # a mean far from zero next to a small spread: E[x^2] - mean^2 would lose the variance
    return _random(rng, (M, N), dtype, 2.0, 5.0), _random(rng, N, dtype), _random(rng, N, dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_layer_norm_cpu(dtype):
    rng = np.random.default_rng(8)
    M, N = 37, 200
    x, w, b = _norm_inputs(rng, M, N, dtype)
    y = norms.layer_norm(M, N, block_M=4, eps=1e-5, dtype=dtype)(x, w, b)
    assert y.dtype == DTYPES[dtype]
    assert_close(y, norms.layer_norm_ref(*_f64(x, w, b), eps=1e-5), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_rms_norm_cpu(dtype):
    rng = np.random.default_rng(9)
    M, N = 37, 200
    x, w, _ = _norm_inputs(rng, M, N, dtype)
    y = norms.rms_norm(M, N, block_M=4, eps=1e-6, dtype=dtype)(x, w)
    assert y.dtype == DTYPES[dtype]
    assert_close(y, norms.rms_norm_ref(*_f64(x, w), eps=1e-6), dtype)


def test_norms_eps_matters():
    """A constant row has variance 0: LayerNorm gives exactly b (0 * rsqrt(eps)), not NaN."""
    x = np.full((5, 40), 3.0, np.float32)
    w = np.linspace(-1, 1, 40, dtype=np.float32)
    b = np.arange(40, dtype=np.float32)
    y = norms.layer_norm(5, 40, block_M=4, eps=1e-5)(x, w, b)
    np.testing.assert_array_equal(y, np.broadcast_to(b, x.shape))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_norms_interp(dtype):
    rng = np.random.default_rng(10)
    M, N = 9, 50
    x, w, b = _norm_inputs(rng, M, N, dtype)
    y = interp_kernel(norms.layer_norm, M, N, block_M=4, dtype=dtype)(x, w, b)
    assert_close(y, norms.layer_norm_ref(*_f64(x, w, b)), dtype)
    y = interp_kernel(norms.rms_norm, M, N, block_M=4, dtype=dtype)(x, w)
    assert_close(y, norms.rms_norm_ref(*_f64(x, w)), dtype)

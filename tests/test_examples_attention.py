"""The FlashAttention, conv2d and top-k examples against numpy, compiled for the CPU (the backend
--backend picks) and run by the interpreter: ragged sizes (seq, H, W, N not tile multiples),
causal and not, float32 and float16 inputs, stride / padding / dilation, ties in top-k."""
import numpy as np
import pytest

import tiledsl
from examples_util import interp_kernel, load_example

fa = load_example("flash_attention")
conv = load_example("conv2d")
tk = load_example("topk")


def _qkv(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape) * 1.5).astype(dtype) for _ in range(3)]


def _check_attention(o, q, k, v, is_causal):
    assert o.dtype == q.dtype and o.shape == q.shape
    ref = fa.attention_ref(q, k, v, is_causal)
    # float16: P is rounded to float16 before the P V GEMM (as on tensor cores), and O once more.
    tol = 1e-5 if q.dtype == np.float32 else 4e-3
    np.testing.assert_allclose(o.astype(np.float32), ref, rtol=tol, atol=tol)


# ---------------------------------------------------------------- FlashAttention

# (batch, heads, seq, dim), tiles: seq 77 leaves a ragged last tile; block_M != block_N checks
# that the causal loop stops at the right key tile from both sides.
ATTENTION = [((1, 2, 77, 16), dict(block_M=16, block_N=16)),
             ((2, 1, 50, 32), dict(block_M=32, block_N=16)),
             ((1, 1, 45, 8), dict(block_M=16, block_N=32)),
             ((1, 2, 64, 64), dict())]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape,tiles", ATTENTION, ids=["x".join(map(str, s)) for s, _ in ATTENTION])
def test_flash_attention(shape, tiles, is_causal, dtype):
    q, k, v = _qkv(shape, dtype)
    kernel = fa.flash_attention(*shape, is_causal=is_causal, dtype=dtype, **tiles)
    _check_attention(kernel(q, k, v), q, k, v, is_causal)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_flash_attention_interp(is_causal, dtype):
    shape = (2, 2, 37, 16)
    q, k, v = _qkv(shape, dtype)
    kernel = interp_kernel(fa.flash_attention, *shape, is_causal=is_causal, dtype=dtype,
                           block_M=16, block_N=8)
    _check_attention(kernel(q, k, v), q, k, v, is_causal)


def test_flash_attention_large_scores():
    """Scores of a few hundred: without the running max exp2 would overflow to inf."""
    shape = (1, 1, 40, 16)
    q, k, v = _qkv(shape, "float32")
    q *= 20
    o = fa.flash_attention(*shape, block_M=16, block_N=16)(q, k, v)
    assert np.isfinite(o).all()
    _check_attention(o, q, k, v, False)


# ---------------------------------------------------------------- conv2d

# N, H, W, C, F, KH, KW, stride, padding, dilation; tiles
CONV = [((2, 7, 9, 3, 5, 3, 3, 2, 1, 1), dict(block_M=16, block_N=8, block_K=16)),
        ((1, 11, 13, 6, 10, 3, 2, 1, 0, 2), dict(block_M=32, block_N=16, block_K=8)),
        ((2, 10, 9, 20, 33, 5, 5, 1, 2, 1), dict()),
        ((1, 8, 8, 16, 16, 1, 1, 1, 0, 1), dict(block_M=32, block_N=16, block_K=16))]


def _conv_inputs(N, H, W, C, F, KH, KW, dtype="float32"):
    rng = np.random.default_rng(1)
    return (rng.standard_normal((N, H, W, C)).astype(dtype),
            rng.standard_normal((KH, KW, C, F)).astype(dtype))


@pytest.mark.parametrize("geom,tiles", CONV, ids=[",".join(map(str, g)) for g, _ in CONV])
def test_conv2d(geom, tiles):
    x, w = _conv_inputs(*geom[:7])
    stride, padding, dilation = geom[7:]
    out = conv.conv2d(*geom, **tiles)(x, w)
    ref = conv.conv2d_ref(x.astype(np.float64), w.astype(np.float64), stride, padding, dilation)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_conv2d_float16():
    geom = (1, 9, 7, 12, 8, 3, 3, 1, 1, 1)
    x, w = _conv_inputs(*geom[:7], dtype="float16")
    out = conv.conv2d(*geom, block_M=32, block_N=16, block_K=32, dtype="float16")(x, w)
    assert out.dtype == np.float16
    ref = conv.conv2d_ref(x.astype(np.float64), w.astype(np.float64), 1, 1, 1)
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=2e-3, atol=2e-2)  # fp32 sums, one rounding


@pytest.mark.parametrize("geom,tiles", CONV[:2], ids=["s2p1", "d2"])
def test_conv2d_interp(geom, tiles):
    x, w = _conv_inputs(*geom[:7])
    out = interp_kernel(conv.conv2d, *geom, **tiles)(x, w)
    ref = conv.conv2d_ref(x.astype(np.float64), w.astype(np.float64), *geom[7:])
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- top-k

def _topk_input(M, N, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, N)).astype(np.float32)
    x[0, ::4] = 2.0                        # ties among the winners: increasing column order
    x[1 % M, :] = np.round(x[1 % M, :])    # many ties everywhere
    x[-1, :] = -np.inf                     # only -inf: the first k columns, in order
    x[-1, N // 2] = 0.0
    return x


def _check_topk(vals, idx, x, k):
    want_vals, want_idx = tk.topk_exact(x, k)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(vals, want_vals)


@pytest.mark.parametrize("M,N,k,tiles", [(37, 300, 5, dict(block_M=8, block_N=64)),
                                         (5, 37, 1, dict(block_M=4, block_N=16)),
                                         (20, 1000, 32, dict()),
                                         (3, 7, 7, dict(block_M=2, block_N=4))])
def test_topk(M, N, k, tiles):
    x = _topk_input(M, N)
    vals, idx = tk.topk(M, N, k, **tiles)(x)
    assert idx.dtype == np.int32
    _check_topk(vals, idx, x, k)


def test_topk_float16_int64():
    M, N, k = 9, 130, 6
    x = _topk_input(M, N).astype(np.float16)
    vals, idx = tk.topk(M, N, k, block_M=4, block_N=32, dtype="float16", index_dtype="int64")(x)
    assert vals.dtype == np.float16 and idx.dtype == np.int64
    _check_topk(vals, idx, x, k)


@pytest.mark.parametrize("M,N,k", [(7, 45, 3), (4, 20, 9)])
def test_topk_interp(M, N, k):
    x = _topk_input(M, N)
    vals, idx = interp_kernel(tk.topk, M, N, k, block_M=4, block_N=16, out_idx=(1, 2))(x)
    _check_topk(vals, idx, x, k)


def test_topk_matches_numpy_argpartition_reference():
    """Without ties the example's timed numpy formulation gives the same answer."""
    x = np.random.default_rng(3).permutation(64 * 200).reshape(64, 200).astype(np.float32)
    vals, idx = tk.topk(64, 200, 10)(x)
    ref_vals, ref_idx = tk.topk_ref(x, 10)
    np.testing.assert_array_equal(vals, ref_vals)
    np.testing.assert_array_equal(idx, ref_idx)


# ---------------------------------------------------------------- no access outside the tensors

def test_examples_stay_inside_their_tensors():
    """The interpreter raises on any global element access outside a tensor (and, strict, on
    an integer division by zero): the kernels guard their ragged edges themselves rather than
    relying on clipped reads and dropped stores (T.copy's clipping excepted, which is defined
    behaviour). Every interpreter test of the examples checks the same; this one names it."""
    def strict(factory, *args, out_idx=(-1,), **kwargs):
        return tiledsl.compile(factory.get_ir(*args, **kwargs), out_idx=list(out_idx),
                               target="interp -strict")

    q, k, v = _qkv((1, 2, 37, 16), "float32")
    for is_causal in (False, True):
        o = strict(fa.flash_attention, *q.shape, is_causal=is_causal, block_M=16, block_N=8)(q, k, v)
        _check_attention(o, q, k, v, is_causal)
    geom, tiles = CONV[0]
    x, w = _conv_inputs(*geom[:7])
    out = strict(conv.conv2d, *geom, **tiles)(x, w)
    np.testing.assert_allclose(out, conv.conv2d_ref(x, w, *geom[7:]), rtol=1e-4, atol=1e-4)
    x = _topk_input(7, 45)
    _check_topk(*strict(tk.topk, 7, 45, 3, block_M=4, block_N=16, out_idx=(1, 2))(x), x, 3)

"""The split-K GEMM and the int4 dequantising GEMV / GEMM examples against numpy, compiled for the
CPU (the backend --backend picks) and run by the interpreter: ragged M, N, K (not tile
multiples), split_k 1, 3, 4 and more slices than K tiles, K a multiple of the scale group or not,
K tiles smaller and larger than a group, float32 and float16 activations and scales."""
import numpy as np
import pytest

from examples_util import interp_kernel, load_example

sk = load_example("splitk_gemm")
dq = load_example("dequant_gemm")


# ---------------------------------------------------------------- split-K

def _ab(M, N, K, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((K, N)).astype(dtype)


def _check_splitk(c, a, b):
    assert c.dtype == np.float32
    ref = a.astype(np.float64) @ b.astype(np.float64)
    # float16 inputs are exact products in float32; only the float32 sums round.
    np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-4 * np.sqrt(a.shape[1]))


# (M, N, K), tiles, split_k, dtype: K = 1000 with block_K 64 is 16 tiles (the last ragged), split
# 3 gives slices of 6, 6, 4; K = 96 with block_K 32 is 3 tiles, so split 4 leaves a slice empty.
T1, T2 = dict(block_M=32, block_N=32, block_K=64), dict(block_M=16, block_N=64, block_K=32)
SPLITK = [((70, 45, 1000), T1, 1, "float32"), ((70, 45, 1000), T1, 3, "float32"),
          ((70, 45, 1000), T1, 4, "float16"), ((33, 80, 96), T2, 4, "float32"),
          ((33, 80, 96), T2, 3, "float16"), ((128, 256, 512), {}, 1, "float16"),
          ((128, 256, 512), {}, 4, "float32")]


@pytest.mark.parametrize("shape,tiles,split_k,dtype", SPLITK,
                         ids=[f"{'x'.join(map(str, s))}-split{k}-{d}" for s, _, k, d in SPLITK])
def test_splitk(shape, tiles, split_k, dtype):
    a, b = _ab(*shape, dtype)
    kernel = sk.splitk_matmul(*shape, split_k=split_k, dtype=dtype, **tiles)
    _check_splitk(sk.splitk_gemm(kernel, a, b), a, b)


def test_splitk_adds_into_c():
    """The kernel adds to what C holds: a second call doubles it."""
    a, b = _ab(40, 24, 300, "float32")
    kernel = sk.splitk_matmul(40, 24, 300, block_M=16, block_N=16, block_K=32, split_k=4)
    c = sk.splitk_gemm(kernel, a, b)
    kernel(a, b, c)
    np.testing.assert_allclose(c, 2 * (a @ b), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("split_k", [1, 3])
def test_splitk_interp(split_k):
    shape = (20, 18, 100)
    a, b = _ab(*shape, "float32")
    kernel = interp_kernel(sk.splitk_matmul, *shape, split_k=split_k, block_M=16, block_N=16,
                           block_K=16, out_idx=())
    _check_splitk(sk.splitk_gemm(kernel, a, b), a, b)


# ---------------------------------------------------------------- int4 format

def test_pack_unpack_round_trip():
    q = np.random.default_rng(0).integers(-8, 8, (5, 12)).astype(np.int8)
    packed = dq.pack_int4(q)
    assert packed.dtype == np.uint8 and packed.shape == (5, 6)
    assert packed[0, 0] == (q[0, 0] & 0xF) | ((q[0, 1] & 0xF) << 4)  # low nibble = even k
    np.testing.assert_array_equal(dq.unpack_int4(packed), q)
    with pytest.raises(ValueError, match="odd"):
        dq.pack_int4(q[:, :5])


def test_quantize_error_is_within_half_a_step():
    w = np.random.default_rng(1).standard_normal((7, 300)).astype(np.float32)
    packed, scales = dq.quantize(w, group=64)
    assert scales.shape == (7, 5)
    step = np.repeat(scales, 64, axis=1)[:, :300]
    assert np.all(np.abs(dq.dequantize(packed, scales, 64) - w) <= step / 2 + 1e-6)


# ---------------------------------------------------------------- dequantising GEMM / GEMV

def _weights(N, K, group, scale_dtype, seed=2):
    rng = np.random.default_rng(seed)
    return dq.quantize(rng.standard_normal((N, K)).astype(np.float32), group, scale_dtype)


def _check_dequant(out, a, packed, scales, group):
    assert out.dtype == a.dtype
    ref = dq.reference(a, packed, scales, group)
    # float16: each dequantised weight q * s is rounded to float16 (it needs up to 4 more bits
    # than s has), and so is the output; the sums are float32.
    tol = 1e-5 if a.dtype == np.float32 else 2e-3
    scale = np.abs(ref).max()
    np.testing.assert_allclose(out.astype(np.float32) / scale, ref / scale, rtol=0, atol=tol)


# (M, N, K, group), tiles: K 320 = 2.5 groups of 128; K 200 with group 64 and block_K 32 (tiles
# smaller than a group, K ragged in both); block_K 128 over groups of 32 (4 scales per tile).
DEQUANT = [((37, 70, 320, 128), dict(block_M=16, block_N=32, block_K=128)),
           ((5, 50, 200, 64), dict(block_M=16, block_N=16, block_K=32)),
           ((64, 96, 256, 32), dict(block_M=32, block_N=64, block_K=128)),
           ((100, 130, 512, 128), dict())]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("shape,tiles", DEQUANT, ids=["x".join(map(str, s)) for s, _ in DEQUANT])
def test_dequant_gemm(shape, tiles, dtype):
    M, N, K, group = shape
    packed, scales = _weights(N, K, group, dtype)
    a = np.random.default_rng(3).standard_normal((M, K)).astype(dtype)
    out = dq.dequant_gemm(M, N, K, group, dtype=dtype, **tiles)(a, packed, scales)
    _check_dequant(out, a, packed, scales, group)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("shape,tiles", DEQUANT, ids=["x".join(map(str, s)) for s, _ in DEQUANT])
def test_dequant_gemv(shape, tiles, dtype):
    _, N, K, group = shape
    packed, scales = _weights(N, K, group, dtype)
    x = np.random.default_rng(4).standard_normal(K).astype(dtype)
    tiles = {k: v for k, v in tiles.items() if k != "block_M"}
    out = dq.dequant_gemv(N, K, group, dtype=dtype, **tiles)(x, packed, scales)
    assert out.shape == (N,)
    _check_dequant(out, x, packed, scales, group)


def test_dequant_float16_activations_float32_scales():
    M, N, K, group = 9, 40, 256, 64
    packed, scales = _weights(N, K, group, "float32")
    a = np.random.default_rng(5).standard_normal((M, K)).astype(np.float16)
    out = dq.dequant_gemm(M, N, K, group, block_M=16, block_N=32, block_K=64, dtype="float16",
                          scale_dtype="float32")(a, packed, scales)
    _check_dequant(out, a, packed, scales, group)


def test_dequant_interp():
    M, N, K, group = 5, 20, 96, 32
    packed, scales = _weights(N, K, group, "float32")
    rng = np.random.default_rng(6)
    a, x = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal(K).astype(np.float32)
    out = interp_kernel(dq.dequant_gemm, M, N, K, group, block_M=8, block_N=16, block_K=64)(a, packed, scales)
    _check_dequant(out, a, packed, scales, group)
    out = interp_kernel(dq.dequant_gemv, N, K, group, block_N=8, block_K=64)(x, packed, scales)
    _check_dequant(out, x, packed, scales, group)


def test_dequant_rejects_odd_k_and_straddling_tiles():
    with pytest.raises(ValueError, match="K = 101 is odd"):
        dq.dequant_gemm(4, 8, 101, 32)
    with pytest.raises(ValueError, match="straddle"):
        dq.dequant_gemv(8, 256, 96, block_K=64)

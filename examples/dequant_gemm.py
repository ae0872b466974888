"""GEMV and GEMM with int4 weights and per-group scales, dequantised on the fly inside the kernel.
Checked against numpy and timed beside numpy dequantise-then-matmul and beside a plain matmul
with weights dequantised ahead of time, measured in the same run.

    python examples/dequant_gemm.py                     # GEMV 1x4096x4096 and GEMM 256x4096x4096
    python examples/dequant_gemm.py 64 2048 2048 64     # M N K group

The weight format (what `pack_int4` / `quantize` produce and every kernel here reads):

- `W_packed`: uint8, shape (N, K // 2): row n holds output feature n's K weights (the
  `nn.Linear` layout, so one K tile of one row is a contiguous run of bytes); byte k // 2 holds
  weight k in its low nibble when k is even, in its high nibble when k is odd. K must be even.
- the nibbles are signed int4 in two's complement, -8..7: q = ((nibble ^ 8) - 8).
- `scales`: shape (N, ceildiv(K, group)), float16 or float32: weight (n, k) is
  q[n, k] * scales[n, k // group]. K need not be a multiple of the group (the last is shorter).

So `y = A @ dequantize(W_packed, scales, group).T`: C[m, n] = sum_k A[m, k] * W[n, k].
"""
import os
import sys

import numpy as np

import tiledsl
import tiledsl.language as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling splitk_gemm.py, also when imported
from splitk_gemm import best_time  # noqa: E402


def _check_format(K: int, group: int, block_K: int) -> None:
    if K % 2:
        raise ValueError(f"K = {K} is odd; int4 weights are packed two per byte along K, so K must "
                         f"be even (pad the weights with a zero column)")
    if block_K % 2 or not (group % block_K == 0 or block_K % group == 0):
        raise ValueError(f"block_K = {block_K} must be even and divide the group size {group} or be a "
                         f"multiple of it, so that a K tile never straddles a scale group")


@tiledsl.jit(out_idx=[-1])
def dequant_gemm(M, N, K, group=128, block_M=None, block_N=64, block_K=128, dtype="float32",
                 scale_dtype=None):
    """C (M, N) = A (M, K) @ dequantize(W_packed, scales).T with float32 accumulation. Each block
    owns a block_M x block_N tile of C; per K tile it dequantises block_N x block_K weights into a
    shared tile of the compute dtype and runs T.gemm on it. Every M tile unpacks the weights
    again, so block_M defaults to all of M (rounded up to 16) up to 256."""
    _check_format(K, group, block_K)
    block_M = block_M or min(256, -(-M // 16) * 16)
    scale_dtype = scale_dtype or dtype
    half = block_K // 2

    @T.prim_func
    def main(A: T.Tensor((M, K), dtype), W_packed: T.Tensor((N, K // 2), "uint8"),
             scales: T.Tensor((N, T.ceildiv(K, group)), scale_dtype), C: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=128) as (bx, by):
            A_s = T.alloc_shared((block_M, block_K), dtype)
            Wp_s = T.alloc_shared((block_N, half), "uint8")
            S_s = T.alloc_shared((block_N, max(1, block_K // group)), scale_dtype)
            W_s = T.alloc_shared((block_N, block_K), dtype)
            C_f = T.alloc_fragment((block_M, block_N), "float32")
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                T.copy(A[by * block_M, k * block_K], A_s)
                T.copy(W_packed[bx * block_N, k * half], Wp_s)
                T.copy(scales[bx * block_N, k * block_K // group], S_s)
                # Past K or N the copies read zero bytes (weight -8) and zero scales, and past K
                # A reads zeros, so padding contributes nothing. The nibble is widened to int32
                # first: uint8 arithmetic would wrap the "- 8" around.
                for i, j in T.Parallel(block_N, block_K):
                    nibble = (T.cast(Wp_s[i, j // 2], "int32") >> (4 * (j % 2))) & 0xF
                    W_s[i, j] = T.cast((nibble ^ 8) - 8, dtype) * S_s[i, j // group]
                T.gemm(A_s, W_s, C_f, transpose_B=True)
            T.copy(C_f, C[by * block_M, bx * block_N])
    return main


@tiledsl.jit(out_idx=[-1])
def dequant_gemv(N, K, group=128, block_N=32, block_K=128, dtype="float32", scale_dtype=None):
    """y (N,) = dequantize(W_packed, scales) @ x (K,). No GEMM tile (whose 64 rows would be 63
    wasted): each block owns block_N outputs and keeps a block_N x (block_K / 2) float32
    accumulator; per K tile each element takes one packed byte, i.e. two weights, times the
    even and odd entries of x. One T.reduce_sum over the accumulator's columns at the end."""
    _check_format(K, group, block_K)
    scale_dtype = scale_dtype or dtype
    half = block_K // 2

    @T.prim_func
    def main(x: T.Tensor((K,), dtype), W_packed: T.Tensor((N, K // 2), "uint8"),
             scales: T.Tensor((N, T.ceildiv(K, group)), scale_dtype), y: T.Tensor((N,), dtype)):
        with T.Kernel(T.ceildiv(N, block_N), threads=128) as bx:
            x_s = T.alloc_shared((block_K,), dtype)
            x_even = T.alloc_shared((half,), "float32")
            x_odd = T.alloc_shared((half,), "float32")
            Wp_s = T.alloc_shared((block_N, half), "uint8")
            S_s = T.alloc_shared((block_N, max(1, block_K // group)), scale_dtype)
            acc = T.alloc_fragment((block_N, half), "float32")
            y_f = T.alloc_fragment((block_N,), "float32")
            T.clear(acc)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                T.copy(x[k * block_K], x_s)
                T.copy(W_packed[bx * block_N, k * half], Wp_s)
                T.copy(scales[bx * block_N, k * block_K // group], S_s)
                # x de-interleaved once per tile, so the loop below is unit-stride everywhere.
                for j in T.Parallel(half):
                    x_even[j] = x_s[2 * j]
                    x_odd[j] = x_s[2 * j + 1]
                for i, j in T.Parallel(block_N, half):
                    byte = T.cast(Wp_s[i, j], "int32")
                    lo = T.cast(((byte & 0xF) ^ 8) - 8, "float32")
                    hi = T.cast(((byte >> 4) ^ 8) - 8, "float32")
                    acc[i, j] += (lo * x_even[j] + hi * x_odd[j]) * S_s[i, 2 * j // group]
            T.reduce_sum(acc, y_f, dim=1)
            T.copy(y_f, y[bx * block_N])
    return main


# ---------------------------------------------------------------- numpy side of the format

def pack_int4(q: np.ndarray) -> np.ndarray:
    """(N, K) int4 values in -8..7 -> (N, K // 2) uint8, weight 2i in the low nibble of byte i."""
    q = np.asarray(q)
    if q.shape[-1] % 2:
        raise ValueError(f"K = {q.shape[-1]} is odd; pack_int4 needs an even K")
    if q.min(initial=0) < -8 or q.max(initial=0) > 7:
        raise ValueError("int4 values must lie in -8..7")
    nib = (q.astype(np.int8) & 0xF).astype(np.uint8)  # two's complement low nibble
    return nib[..., 0::2] | (nib[..., 1::2] << 4)


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    """The inverse of `pack_int4`: (N, K // 2) uint8 -> (N, K) int8 in -8..7."""
    nib = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(*packed.shape[:-1], -1)
    return ((nib.astype(np.int8) ^ 8) - 8).astype(np.int8)


def quantize(w: np.ndarray, group: int = 128, scale_dtype="float32"):
    """Symmetric per-group int4: scale = max|w| / 7 over each group of `group` weights along K,
    q = clip(round(w / scale), -8, 7). Returns (W_packed, scales)."""
    N, K = w.shape
    n_groups = -(-K // group)
    padded = np.zeros((N, n_groups * group), np.float32)
    padded[:, :K] = w
    absmax = np.abs(padded.reshape(N, n_groups, group)).max(axis=-1)
    scales = (absmax / 7).astype(scale_dtype)
    safe = np.where(scales == 0, 1, scales).astype(np.float32)
    q = np.clip(np.round(w / np.repeat(safe, group, axis=1)[:, :K]), -8, 7).astype(np.int8)
    return pack_int4(q), scales


def dequantize(packed: np.ndarray, scales: np.ndarray, group: int = 128) -> np.ndarray:
    """(N, K) float32 weights: q * scales[:, k // group]."""
    q = unpack_int4(packed)
    return q.astype(np.float32) * np.repeat(scales.astype(np.float32), group, axis=1)[:, :q.shape[1]]


def reference(a: np.ndarray, packed: np.ndarray, scales: np.ndarray, group: int = 128) -> np.ndarray:
    """numpy's dequantise + matmul: a @ dequantize(W).T (a vector a gives a vector)."""
    return a.astype(np.float32) @ dequantize(packed, scales, group).T


# ---------------------------------------------------------------- self-check and timing


def main(M=256, N=4096, K=4096, group=128) -> int:
    rng = np.random.default_rng(0)
    packed, scales = quantize(rng.standard_normal((N, K), dtype=np.float32), group)
    w = dequantize(packed, scales, group)  # what a framework would keep in memory instead
    ok = True
    print(f"group {group}; ratio = numpy time / tiledsl time (> 1: tiledsl faster)")
    print(f"{'M x N x K':>16} {'max err':>9} {'tiledsl':>10} {'np deq+mm':>10} {'ratio':>6} "
          f"{'np mm':>10} {'ratio':>6}")
    for m in (1, M):
        if m == 1:
            kernel = dequant_gemv(N, K, group)
            a = rng.standard_normal(K, dtype=np.float32)
        else:
            kernel = dequant_gemm(m, N, K, group)
            a = rng.standard_normal((m, K), dtype=np.float32)
        out = kernel(a, packed, scales)
        ref = a @ w.T
        err = float(np.abs(out - ref).max() / np.abs(ref).max())
        good = err < 1e-5
        ok &= good
        ours = best_time(lambda: kernel(a, packed, scales))
        deq = best_time(lambda: reference(a, packed, scales, group))
        mm = best_time(lambda: a @ w.T)
        print(f"{f'{m}x{N}x{K}':>16} {err:9.1e} {ours * 1e3:7.2f} ms {deq * 1e3:7.2f} ms {deq / ours:5.2f}x "
              f"{mm * 1e3:7.2f} ms {mm / ours:5.2f}x {'ok' if good else 'WRONG'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))

"""2-D convolution, NHWC input and (KH, KW, C, F) weight, as an implicit-im2col GEMM; checked
against numpy and timed beside numpy's explicit im2col + matmul (OpenBLAS) in the same run.

    python examples/conv2d.py                       # N=8, 56x56, C=64 -> F=64, 3x3, stride 1, pad 1
    python examples/conv2d.py 2 31 17 3 32 5 2 2 1  # N H W C F K stride pad dilation

The output is the GEMM  out[m, f] = sum_k col[m, k] * w[k, f]  with m = (n, oh, ow) and
k = (kh, kw, c) flattened. `col`, the im2col matrix, is never built: each block gathers the
(block_M x block_K) tile it needs straight from the input into shared memory, zeros where the
window hangs over the padding, and hands it to T.gemm.
"""
import os
import sys

import numpy as np

import tiledsl
import tiledsl.language as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling gemm.py, also when imported
from gemm import best_time  # noqa: E402


def out_size(size: int, k: int, stride: int, pad: int, dilation: int) -> int:
    """Output height (or width) of a convolution, as in PyTorch."""
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


@tiledsl.jit(out_idx=[2])
def conv2d(N, H, W, C, F, KH, KW, stride=1, padding=0, dilation=1,
           block_M=64, block_N=None, block_K=64, dtype="float32"):
    # All of F in one block up to 128 filters: each block gathers its im2col tile once per
    # F tile, so a narrower block_N repeats the gather.
    block_N = block_N or min(128, -(-F // 32) * 32)
    OH = out_size(H, KH, stride, padding, dilation)
    OW = out_size(W, KW, stride, padding, dilation)
    M, K = N * OH * OW, KH * KW * C  # the implicit GEMM is M x F x K
    accum = "float64" if dtype == "float64" else "float32"

    @T.prim_func
    def main(X: T.Tensor((N, H, W, C), dtype), Wt: T.Tensor((KH, KW, C, F), dtype),
             Out: T.Tensor((N, OH, OW, F), dtype)):
        with T.Kernel(T.ceildiv(F, block_N), T.ceildiv(M, block_M), threads=128) as (bx, by):
            col_s = T.alloc_shared((block_M, block_K), dtype)
            w_s = T.alloc_shared((block_K, block_N), dtype)
            out_f = T.alloc_fragment((block_M, block_N), accum)
            # Row i of the block is output pixel (img, oh, ow); its window's top-left input pixel
            # is (top, left). Column j of a k tile is tap (kh, kw, c). Decoding the flat indices
            # once per row and once per column, not per element, keeps the divisions out of
            # the gather: it then costs about half the GEMM instead of one and a half.
            img = T.alloc_fragment((block_M,), "int32")
            top = T.alloc_fragment((block_M,), "int32")
            left = T.alloc_fragment((block_M,), "int32")
            kh = T.alloc_fragment((block_K,), "int32")
            kw = T.alloc_fragment((block_K,), "int32")
            c = T.alloc_fragment((block_K,), "int32")
            for i in T.Parallel(block_M):
                m = by * block_M + i
                img[i] = T.if_then_else(m < M, m // (OH * OW), N)  # N: past the last row
                top[i] = m % (OH * OW) // OW * stride - padding
                left[i] = m % OW * stride - padding
            T.clear(out_f)
            for ko in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                for j in T.Parallel(block_K):
                    k = ko * block_K + j
                    kh[j] = T.if_then_else(k < K, k // (KW * C), KH)  # KH: past the last tap
                    kw[j] = k % (KW * C) // C
                    c[j] = k % C
                # The im2col tile, zero where the window hangs over the padding (and past the
                # last row or tap, so the ragged edges add nothing to the GEMM).
                for i, j in T.Parallel(block_M, block_K):
                    h = top[i] + kh[j] * dilation
                    w = left[i] + kw[j] * dilation
                    inside = ((img[i] < N) and (kh[j] < KH) and (h >= 0) and (h < H)
                              and (w >= 0) and (w < W))
                    col_s[i, j] = T.if_then_else(inside, X[img[i], h, w, c[j]], 0)
                # The weight viewed as the (K, F) matrix of the GEMM.
                for j, f in T.Parallel(block_K, block_N):
                    col = bx * block_N + f
                    w_s[j, f] = T.if_then_else((kh[j] < KH) and (col < F), Wt[kh[j], kw[j], c[j], col], 0)
                T.gemm(col_s, w_s, out_f)
            for i, f in T.Parallel(block_M, block_N):
                m = by * block_M + i
                col = bx * block_N + f
                if m < M and col < F:
                    Out[m // (OH * OW), m % (OH * OW) // OW, m % OW, col] = out_f[i, f]
    return main


def conv2d_ref(x, w, stride=1, padding=0, dilation=1):
    """Explicit im2col (a strided window view of the padded input) times the weight matrix."""
    N, H, W, C = x.shape
    KH, KW, _, F = w.shape
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    OH, OW = out_size(H, KH, stride, padding, dilation), out_size(W, KW, stride, padding, dilation)
    # windows[n, oh, ow, c, kh, kw], then the (kh, kw, c) order of the weight's rows
    win = np.lib.stride_tricks.sliding_window_view(
        xp, ((KH - 1) * dilation + 1, (KW - 1) * dilation + 1), axis=(1, 2))
    win = win[:, ::stride, ::stride, :, ::dilation, ::dilation][:, :OH, :OW]
    col = win.transpose(0, 1, 2, 4, 5, 3).reshape(N * OH * OW, KH * KW * C)
    return (col @ w.reshape(KH * KW * C, F)).reshape(N, OH, OW, F)


def main(N=8, H=56, W=56, C=64, F=64, K=3, stride=1, padding=1, dilation=1) -> int:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C), dtype=np.float32)
    w = rng.standard_normal((K, K, C, F), dtype=np.float32)
    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    kernel = conv2d(N, H, W, C, F, K, K, **geometry)
    out = kernel(x, w)
    ref = conv2d_ref(x, w, **geometry)
    err = float(np.abs(out - ref).max() / np.abs(ref).max())
    good = err < 1e-5
    flops = 2.0 * out.size * K * K * C
    ours = best_time(lambda: kernel(x, w))
    theirs = best_time(lambda: conv2d_ref(x, w, **geometry))
    print(f"{'N,H,W,C -> F, KxK, s/p/d':>28} {'max err':>9} {'tiledsl':>18} {'numpy im2col':>18} "
          f"{'ratio':>6}  (ratio = numpy time / tiledsl time)")
    print(f"{f'{N},{H},{W},{C} -> {F}, {K}x{K}, {stride}/{padding}/{dilation}':>28} {err:9.1e} "
          f"{ours * 1e3:6.2f} ms {flops / ours / 1e9:5.1f} GF {theirs * 1e3:6.2f} ms "
          f"{flops / theirs / 1e9:5.1f} GF {theirs / ours:5.2f}x {'ok' if good else 'WRONG'}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))

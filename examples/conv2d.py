"""2-D convolution, NHWC input and (KH, KW, C, F) weight, as an implicit-im2col GEMM; checked
against numpy and timed beside numpy's explicit im2col + matmul (OpenBLAS) in the same run.

    python examples/conv2d.py                       # N=8, 56x56, C=64 -> F=64, 3x3, stride 1, pad 1
    python examples/conv2d.py 2 31 17 3 32 5 2 2 1  # N H W C F K stride pad dilation

The output is the GEMM  out[m, f] = sum_k col[m, k] * w[k, f]  with m = (n, oh, ow) and
k = (kh, kw, c) flattened. `col`, the im2col matrix, is never built: each block gathers the
(block_M x block_K) tile it needs straight from the input into shared memory, zeros where the
window hangs over the padding, and hands it to T.gemm.
"""
import sys
import time

import numpy as np

import tiledsl
import tiledsl.language as T


def out_size(size, k, stride, pad, dilation):
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


@tiledsl.jit(out_idx=[2])
def conv2d(N, H, W, C, F, KH, KW, stride=1, padding=0, dilation=1,
           block_M=64, block_N=64, block_K=64, dtype="float32"):
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
            T.clear(out_f)
            for ko in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                # im2col tile: row m is the output pixel (n, oh, ow), column k the tap (kh, kw, c);
                # it reads input pixel (oh*stride + kh*dilation - pad, ow*stride + kw*dilation - pad).
                for i, j in T.Parallel(block_M, block_K):
                    m = by * block_M + i
                    k = ko * block_K + j
                    n, oh, ow = m // (OH * OW), m % (OH * OW) // OW, m % OW
                    kh, kw, c = k // (KW * C), k % (KW * C) // C, k % C
                    h = oh * stride + kh * dilation - padding
                    w = ow * stride + kw * dilation - padding
                    inside = (h >= 0) and (h < H) and (w >= 0) and (w < W) and (m < M) and (k < K)
                    col_s[i, j] = T.if_then_else(inside, X[n, h, w, c], 0)
                # The weight viewed as a (K, F) matrix; rows past K are zero so the ragged last
                # k tile adds nothing.
                for j, f in T.Parallel(block_K, block_N):
                    k = ko * block_K + j
                    col = bx * block_N + f
                    w_s[j, f] = T.if_then_else((k < K) and (col < F),
                                               Wt[k // (KW * C), k % (KW * C) // C, k % C, col], 0)
                T.gemm(col_s, w_s, out_f)
            for i, f in T.Parallel(block_M, block_N):
                m = by * block_M + i
                if m < M:
                    Out[m // (OH * OW), m % (OH * OW) // OW, m % OW, bx * block_N + f] = out_f[i, f]
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


def best_time(fn, reps: int = 5) -> float:
    """Median seconds of `reps` runs after one warm-up (see examples/gemm.py for the sleep)."""
    time.sleep(0.3)
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


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

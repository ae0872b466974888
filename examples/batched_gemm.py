"""Batched GEMM: `C[b] = A[b] @ B[b]` for a batch of B independent products, the batch as the
third grid dimension. Checked against numpy and timed beside `np.matmul` in the same run.

    python examples/batched_gemm.py              # 8 x 512^3 and 6 x 300x500x200
    python examples/batched_gemm.py 4 1024       # batch 4 of 1024^3
"""
import os
import sys

import numpy as np

import tiledsl
import tiledsl.language as T
from tiledsl.autotune import default_gemm_tiles as default_tiles

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling gemm.py, also when imported
from gemm import best_time  # noqa: E402


@tiledsl.jit(out_idx=[-1])
def batched_matmul(Bt, M, N, K, block_M=64, block_N=128, block_K=256, dtype="float32"):
    accum = "float64" if dtype == "float64" else "float32"  # 16-bit inputs accumulate in float32

    @T.prim_func
    def main(A: T.Tensor((Bt, M, K), dtype), B: T.Tensor((Bt, K, N), dtype), C: T.Tensor((Bt, M, N), dtype)):
        # One block per (column tile, row tile, batch): the batch index only offsets the three
        # tensors, so each block is the 2-D GEMM's block and the grid has Bt times more of them.
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), Bt, threads=128) as (bx, by, bz):
            A_s = T.alloc_shared((block_M, block_K), dtype)
            B_s = T.alloc_shared((block_K, block_N), dtype)
            C_f = T.alloc_fragment((block_M, block_N), accum)
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                T.copy(A[bz, by * block_M:(by + 1) * block_M, k * block_K:(k + 1) * block_K], A_s)
                T.copy(B[bz, k * block_K:(k + 1) * block_K, bx * block_N:(bx + 1) * block_N], B_s)
                T.gemm(A_s, B_s, C_f)
            T.copy(C_f, C[bz, by * block_M:(by + 1) * block_M, bx * block_N:(bx + 1) * block_N])
    return main


def main(shapes) -> int:
    rng = np.random.default_rng(0)
    ok = True
    print("GFLOP/s; ratio = tiledsl / numpy (= numpy time / tiledsl time, > 1: tiledsl faster)")
    print(f"{'batch x M x N x K':>20} {'max err':>9} {'tiledsl':>10} {'numpy':>10} {'ratio':>6}")
    for bt, m, n, k in shapes:
        kernel = batched_matmul(bt, m, n, k, **default_tiles(m, n, k, "float32"))
        a = rng.standard_normal((bt, m, k), dtype=np.float32)
        b = rng.standard_normal((bt, k, n), dtype=np.float32)
        c = kernel(a, b)
        ref = np.matmul(a, b)
        err = float(np.abs(c - ref).max() / np.abs(ref).max())
        good = err < 1e-5
        ok &= good
        flops = 2.0 * bt * m * n * k
        ours = flops / best_time(lambda: kernel(a, b)) / 1e9
        theirs = flops / best_time(lambda: np.matmul(a, b)) / 1e9
        print(f"{f'{bt}x{m}x{n}x{k}':>20} {err:9.1e} {ours:7.1f} GF {theirs:7.1f} GF "
              f"{ours / theirs:5.2f}x {'ok' if good else 'WRONG'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3:
        bt, n = int(sys.argv[1]), int(sys.argv[2])
        shapes = [(bt, n, n, n)]
    else:
        shapes = [(8, 512, 512, 512), (6, 300, 500, 200)]
    sys.exit(main(shapes))

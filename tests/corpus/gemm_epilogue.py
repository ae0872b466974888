"""GEMM with clear_accum, a split of K inside the tile (two gemms on slices of the tiles), and
an epilogue in a T.Parallel loop: bias, ReLU and a cast to float16."""
import numpy as np

import tiledsl.language as T

from . import Case

M, N, K = 50, 40, 64


@T.prim_func
def gemm_epilogue(A: T.Tensor((M, K), "float32"), B: T.Tensor((K, N), "float32"),
                  bias: T.Tensor((N,), "float32"), C: T.Tensor((M, N), "float16")):
    with T.Kernel(T.ceildiv(N, 16), T.ceildiv(M, 16)) as (bx, by):
        A_s = T.alloc_shared((16, 32), "float32")
        B_s = T.alloc_shared((32, 16), "float32")
        C_f = T.alloc_fragment((16, 16), "float32")
        for k in T.serial(T.ceildiv(K, 32)):
            T.copy(A[by * 16, k * 32], A_s)
            T.copy(B[k * 32, bx * 16], B_s)
            if k == 0:
                T.gemm(A_s[:, 0:16], B_s[0:16, :], C_f, clear_accum=True)
            else:
                T.gemm(A_s[:, 0:16], B_s[0:16, :], C_f)
            T.gemm(A_s[:, 16:32], B_s[16:32, :], C_f)
        for i, j in T.Parallel(16, 16):
            C_f[i, j] = T.max(C_f[i, j] + bias[bx * 16 + j], 0.0)
        T.copy(C_f, C[by * 16, bx * 16])


CASE = Case("gemm_epilogue", lambda: gemm_epilogue,
            lambda rng: (rng.standard_normal((M, K)).astype(np.float32),
                         rng.standard_normal((K, N)).astype(np.float32),
                         rng.standard_normal(N).astype(np.float32)),
            lambda a, b, bias: np.maximum(a.astype(np.float64) @ b + bias, 0).astype(np.float16),
            rtol=2e-3, atol=2e-3)

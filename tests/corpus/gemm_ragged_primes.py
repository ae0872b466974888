"""GEMM with prime M, N, K and tiles that divide none of them: ragged rows, columns and a
K tail (the zeros a ragged copy reads must not perturb the sum)."""
import numpy as np

import tiledsl.language as T

from . import Case

M, N, K = 37, 29, 53


@T.prim_func
def gemm_ragged(A: T.Tensor((M, K), "float32"), B: T.Tensor((K, N), "float32"),
                C: T.Tensor((M, N), "float32")):
    with T.Kernel(T.ceildiv(N, 16), T.ceildiv(M, 16)) as (bx, by):
        A_s = T.alloc_shared((16, 8), "float32")
        B_s = T.alloc_shared((8, 16), "float32")
        C_f = T.alloc_fragment((16, 16), "float32")
        T.clear(C_f)
        for k in T.Pipelined(T.ceildiv(K, 8), num_stages=2):
            T.copy(A[by * 16, k * 8], A_s)
            T.copy(B[k * 8, bx * 16], B_s)
            T.gemm(A_s, B_s, C_f)
        T.copy(C_f, C[by * 16, bx * 16])


CASE = Case("gemm_ragged_primes", lambda: gemm_ragged,
            lambda rng: (rng.standard_normal((M, K)).astype(np.float32),
                         rng.standard_normal((K, N)).astype(np.float32)),
            lambda a, b: a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)

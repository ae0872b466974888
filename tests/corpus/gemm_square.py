"""GEMM whose tiles divide the matrices: no guard anywhere, the fast path of every target."""
import numpy as np

import tiledsl.language as T

from . import Case


def build(M=64, N=64, K=64, bm=32, bn=32, bk=16):
    @T.prim_func
    def gemm_square(A: T.Tensor((M, K), "float32"), B: T.Tensor((K, N), "float32"),
                    C: T.Tensor((M, N), "float32")):
        with T.Kernel(T.ceildiv(N, bn), T.ceildiv(M, bm)) as (bx, by):
            A_s = T.alloc_shared((bm, bk), "float32")
            B_s = T.alloc_shared((bk, bn), "float32")
            C_f = T.alloc_fragment((bm, bn), "float32")
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, bk), num_stages=3):
                T.copy(A[by * bm, k * bk], A_s)
                T.copy(B[k * bk, bx * bn], B_s)
                T.gemm(A_s, B_s, C_f)
            T.copy(C_f, C[by * bm, bx * bn])
    return gemm_square


CASE = Case("gemm_square", build,
            lambda rng: (rng.standard_normal((64, 64)).astype(np.float32),
                         rng.standard_normal((64, 64)).astype(np.float32)),
            lambda a, b: a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)

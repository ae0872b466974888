"""C = A @ B^T and C = A^T @ B, the operand layouts attention and backward passes use."""
import numpy as np

import tiledsl.language as T

from . import Case

M, N, K = 33, 20, 45


@T.prim_func
def gemm_nt(A: T.Tensor((M, K), "float32"), B: T.Tensor((N, K), "float32"), C: T.Tensor((M, N), "float32")):
    with T.Kernel(T.ceildiv(N, 16), T.ceildiv(M, 16)) as (bx, by):
        A_s = T.alloc_shared((16, 16), "float32")
        B_s = T.alloc_shared((16, 16), "float32")
        C_f = T.alloc_fragment((16, 16), "float32")
        T.clear(C_f)
        for k in T.serial(T.ceildiv(K, 16)):
            T.copy(A[by * 16, k * 16], A_s)
            T.copy(B[bx * 16, k * 16], B_s)
            T.gemm(A_s, B_s, C_f, transpose_B=True)
        T.copy(C_f, C[by * 16, bx * 16])


@T.prim_func
def gemm_tn(A: T.Tensor((K, M), "float32"), B: T.Tensor((K, N), "float32"), C: T.Tensor((M, N), "float32")):
    with T.Kernel(T.ceildiv(N, 16), T.ceildiv(M, 16)) as (bx, by):
        A_s = T.alloc_shared((8, 16), "float32")
        B_s = T.alloc_shared((8, 16), "float32")
        C_f = T.alloc_fragment((16, 16), "float32")
        T.clear(C_f)
        for k in T.serial(T.ceildiv(K, 8)):
            T.copy(A[k * 8, by * 16], A_s)
            T.copy(B[k * 8, bx * 16], B_s)
            T.gemm(A_s, B_s, C_f, transpose_A=True)
        T.copy(C_f, C[by * 16, bx * 16])


def _normal(*shape):
    return lambda rng: rng.standard_normal(shape).astype(np.float32)


CASES = [
    Case("gemm_nt", lambda: gemm_nt,
         lambda rng: (_normal(M, K)(rng), _normal(N, K)(rng)),
         lambda a, b: a.astype(np.float64) @ b.T, rtol=1e-4, atol=1e-4),
    Case("gemm_tn", lambda: gemm_tn,
         lambda rng: (_normal(K, M)(rng), _normal(K, N)(rng)),
         lambda a, b: a.astype(np.float64).T @ b, rtol=1e-4, atol=1e-4),
]

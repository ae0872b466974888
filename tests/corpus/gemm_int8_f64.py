"""int8 x int8 -> int32 (exact, with values that overflow int8 products) and float64 GEMMs."""
import numpy as np

import tiledsl.language as T

from . import Case

M, N, K = 19, 23, 41


def build(dtype, acc):
    @T.prim_func
    def gemm_typed(A: T.Tensor((M, K), dtype), B: T.Tensor((K, N), dtype), C: T.Tensor((M, N), acc)):
        with T.Kernel(T.ceildiv(N, 8), T.ceildiv(M, 8)) as (bx, by):
            A_s = T.alloc_shared((8, 16), dtype)
            B_s = T.alloc_shared((16, 8), dtype)
            C_f = T.alloc_fragment((8, 8), acc)
            T.clear(C_f)
            for k in T.serial(T.ceildiv(K, 16)):
                T.copy(A[by * 8, k * 16], A_s)
                T.copy(B[k * 16, bx * 8], B_s)
                T.gemm(A_s, B_s, C_f)
            T.copy(C_f, C[by * 8, bx * 8])
    return gemm_typed


CASES = [
    Case("gemm_int8", lambda: build("int8", "int32"),
         lambda rng: (rng.integers(-128, 128, (M, K)).astype(np.int8),
                      rng.integers(-128, 128, (K, N)).astype(np.int8)),
         lambda a, b: (a.astype(np.int64) @ b).astype(np.int32), exact=True),
    Case("gemm_f64", lambda: build("float64", "float64"),
         lambda rng: (rng.standard_normal((M, K)), rng.standard_normal((K, N))),
         lambda a, b: a @ b, rtol=1e-12, atol=1e-12),
]

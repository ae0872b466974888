"""float16 x float16 and bfloat16 x bfloat16 GEMMs accumulating in float32, ragged."""
import ml_dtypes
import numpy as np

import tiledsl.language as T

from . import Case

M, N, K = 40, 24, 70


def build(dtype):
    @T.prim_func
    def gemm_half(A: T.Tensor((M, K), dtype), B: T.Tensor((K, N), dtype), C: T.Tensor((M, N), "float32")):
        with T.Kernel(T.ceildiv(N, 16), T.ceildiv(M, 32)) as (bx, by):
            A_s = T.alloc_shared((32, 32), dtype)
            B_s = T.alloc_shared((32, 16), dtype)
            C_f = T.alloc_fragment((32, 16), "float32")
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, 32), num_stages=2):
                T.copy(A[by * 32, k * 32], A_s)
                T.copy(B[k * 32, bx * 16], B_s)
                T.gemm(A_s, B_s, C_f)
            T.copy(C_f, C[by * 32, bx * 16])
    return gemm_half


def _inputs(np_dtype):
    return lambda rng: (rng.standard_normal((M, K)).astype(np_dtype), rng.standard_normal((K, N)).astype(np_dtype))


def _ref(a, b):
    return a.astype(np.float64) @ b.astype(np.float64)


CASES = [Case("gemm_fp16", lambda: build("float16"), _inputs(np.float16), _ref, rtol=1e-4, atol=1e-4),
         Case("gemm_bf16", lambda: build("bfloat16"), _inputs(ml_dtypes.bfloat16), _ref, rtol=1e-4, atol=1e-4)]

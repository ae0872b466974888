"""GEMM whose shared tiles carry XOR-swizzled layouts: every access goes through the layout,
so a swizzled tile read linearly anywhere would give a wrong product."""
import numpy as np

import tiledsl.language as T
from tiledsl.layout import swizzle_64b, swizzle_128b

from . import Case

M, N, K = 48, 40, 96


@T.prim_func
def gemm_swizzled(A: T.Tensor((M, K), "float32"), B: T.Tensor((K, N), "float32"), C: T.Tensor((M, N), "float32")):
    with T.Kernel(T.ceildiv(N, 16), T.ceildiv(M, 16)) as (bx, by):
        A_s = T.alloc_shared((16, 32), "float32")
        B_s = T.alloc_shared((32, 16), "float32")
        C_f = T.alloc_fragment((16, 16), "float32")
        T.annotate_layout({A_s: swizzle_128b((16, 32), 32), B_s: swizzle_64b((32, 16), 32)})
        T.clear(C_f)
        for k in T.Pipelined(T.ceildiv(K, 32), num_stages=2):
            T.copy(A[by * 16, k * 32], A_s)
            T.copy(B[k * 32, bx * 16], B_s)
            T.gemm(A_s, B_s, C_f)
        T.copy(C_f, C[by * 16, bx * 16])


CASE = Case("gemm_swizzled", lambda: gemm_swizzled,
            lambda rng: (rng.integers(-4, 5, (M, K)).astype(np.float32),
                         rng.integers(-4, 5, (K, N)).astype(np.float32)),
            lambda a, b: a @ b, exact=True)

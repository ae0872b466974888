"""Elementwise math across dtypes: bfloat16 and float16 inputs computed in float32 and rounded
once, float64, the math intrinsics, and a bool output."""
import ml_dtypes
import numpy as np

import tiledsl.language as T

from . import Case

N = 50


@T.prim_func
def elementwise(A: T.Tensor((N,), "bfloat16"), B: T.Tensor((N,), "float16"), C: T.Tensor((N,), "float64"),
                X: T.Tensor((N,), "bfloat16"), Y: T.Tensor((N,), "float64"), Z: T.Tensor((N,), "bool")):
    with T.Kernel(T.ceildiv(N, 16)) as bx:
        for i in T.Parallel(16):
            a = A[bx * 16 + i]
            b = B[bx * 16 + i]
            c = C[bx * 16 + i]
            X[bx * 16 + i] = a * b + T.exp2(b) - T.sigmoid(a)
            Y[bx * 16 + i] = T.tanh(c) + T.log(T.abs(c) + 1.0) + T.rsqrt(c * c + 1.0) + T.exp(c) * 0.5
            Z[bx * 16 + i] = (a > b) or (c < -1.0)


def _ref(a, b, c):
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    x = (a32 * b32 + np.exp2(b32) - 1 / (1 + np.exp(-a32))).astype(ml_dtypes.bfloat16)
    y = np.tanh(c) + np.log(np.abs(c) + 1) + 1 / np.sqrt(c * c + 1) + np.exp(c) * 0.5
    return x, y, (a32 > b32) | (c < -1)


CASE = Case("elementwise_dtypes", lambda: elementwise,
            lambda rng: (rng.standard_normal(N).astype(ml_dtypes.bfloat16),
                         rng.standard_normal(N).astype(np.float16), rng.standard_normal(N)),
            _ref, out_idx=(3, 4, 5), rtol=1e-2, atol=1e-2)

"""Row softmax over a ragged block of rows, float16 in and out, computed in float32."""
import numpy as np

import tiledsl.language as T

from . import Case

M, N = 19, 37


@T.prim_func
def softmax(X: T.Tensor((M, N), "float16"), Y: T.Tensor((M, N), "float16")):
    with T.Kernel(T.ceildiv(M, 8)) as bx:
        x = T.alloc_fragment((8, N), "float32")
        m = T.alloc_fragment((8,), "float32")
        s = T.alloc_fragment((8,), "float32")
        T.copy(X[bx * 8, 0], x)
        T.reduce_max(x, m, dim=1)
        for i, j in T.Parallel(8, N):
            x[i, j] = T.exp(x[i, j] - m[i])
        T.reduce_sum(x, s, dim=1)
        for i, j in T.Parallel(8, N):
            x[i, j] = x[i, j] / s[i]
        T.copy(x, Y[bx * 8, 0])


def _ref(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float16)


CASE = Case("softmax_ragged", lambda: softmax,
            lambda rng: ((rng.standard_normal((M, N)) * 3).astype(np.float16),), _ref, rtol=2e-3, atol=1e-4)

"""T.Parallel loops with run-time conditionals: if / elif / else on data, a guarded division,
T.if_then_else guarding a sqrt, a branch on the index, and conditions on a scalar parameter."""
import numpy as np

import tiledsl.language as T

from . import Case

M, N = 13, 24


@T.prim_func
def conditionals(X: T.Tensor((M, N), "float32"), t: T.float32, Y: T.Tensor((M, N), "float32")):
    with T.Kernel(T.ceildiv(N, 8), T.ceildiv(M, 4)) as (bx, by):
        for i, j in T.Parallel(4, 8):
            x = X[by * 4 + i, bx * 8 + j]
            y = T.alloc_var("float32")
            if x > t:
                y = x * 2.0
            elif x > -t:
                y = T.if_then_else(x > 0, T.sqrt(x), -T.sqrt(-x))
            else:
                y = 1.0 / x if x != 0 else 0.0
            if (j + by) % 3 == 0:
                y = y + 100.0
            Y[by * 4 + i, bx * 8 + j] = y


def _ref(x, t):
    with np.errstate(all="ignore"):
        y = np.where(x > t, x * 2, np.where(x > -t, np.where(x > 0, np.sqrt(x), -np.sqrt(-x)), 1 / x))
    cols = np.arange(N)[None, :] % 8
    blk = np.arange(M)[:, None] // 4
    return np.where((cols + blk) % 3 == 0, y + 100, y)


CASE = Case("parallel_conditionals", lambda: conditionals,
            lambda rng: (rng.standard_normal((M, N)).astype(np.float32), 0.75), _ref, rtol=1e-6, atol=1e-6)

"""Copies of tiles with unit dimensions: an (8, 1) column block, a (1, 16) row, and a row of a
2-D tensor into a 1-D tile, on a ragged grid."""
import numpy as np

import tiledsl.language as T

from . import Case

M, N = 21, 16


@T.prim_func
def copy_unit(X: T.Tensor((M, N), "float32"), Y: T.Tensor((M, N), "float32")):
    with T.Kernel(T.ceildiv(M, 8)) as bx:
        col = T.alloc_fragment((8, 1), "float32")
        row = T.alloc_fragment((1, 16), "float32")
        vec = T.alloc_fragment((16,), "float32")
        T.copy(X[bx * 8, 3], col)
        T.copy(X[bx * 8, 0], row)
        T.copy(X[bx * 8 + 1, 0:16], vec)
        for i, j in T.Parallel(8, 16):
            Y[bx * 8 + i, j] = col[i, 0] + row[0, j] * 10.0 + vec[j] * 100.0


def _ref(x):
    y = np.zeros((M, N))
    xp = np.concatenate([x, np.zeros((8, N), np.float32)])
    for b in range(0, M, 8):
        for i in range(8):
            if b + i < M:
                y[b + i] = xp[b + i, 3] + xp[b, :] * 10 + xp[b + 1, :] * 100
    return y


CASE = Case("copy_unit_dims", lambda: copy_unit,
            lambda rng: (rng.standard_normal((M, N)).astype(np.float32),), _ref, rtol=1e-5, atol=1e-4)

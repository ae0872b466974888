"""Every reduction along each axis of a 2-D tile and along the middle axis of a 3-D tile,
with clear=False accumulating into what is there."""
import numpy as np

import tiledsl.language as T

from . import Case

M, N, D = 6, 11, 5


@T.prim_func
def reduce_axes(X: T.Tensor((M, N), "float32"), Z: T.Tensor((2, N, D), "float32"),
                R0: T.Tensor((5, N), "float32"), R1: T.Tensor((M, 5), "float32"), R2: T.Tensor((2, D), "float32")):
    with T.Kernel(1) as bx:
        x = T.alloc_fragment((M, N), "float32")
        z = T.alloc_shared((2, N, D), "float32")
        col = T.alloc_fragment((N,), "float32")
        row = T.alloc_fragment((M, 1), "float32")
        zr = T.alloc_fragment((2, D), "float32")
        T.copy(X, x)
        T.copy(Z, z)
        T.reduce_sum(x, col, dim=0)
        T.copy(col, R0[0, 0])
        T.reduce_max(x, col, dim=0)
        T.copy(col, R0[1, 0])
        T.reduce_min(x, col, dim=0)
        T.copy(col, R0[2, 0])
        T.reduce_abssum(x, col, dim=0)
        T.copy(col, R0[3, 0])
        T.reduce_absmax(x, col, dim=0, clear=False)
        T.copy(col, R0[4, 0])
        T.reduce_sum(x, row, dim=1)
        T.copy(row, R1[0, 0])
        T.reduce_max(x, row, dim=-1)
        T.copy(row, R1[0, 1])
        T.reduce_min(x, row, dim=1)
        T.copy(row, R1[0, 2])
        T.reduce_absmax(x, row, dim=1)
        T.copy(row, R1[0, 3])
        T.reduce_sum(x, row, dim=1, clear=False)
        T.copy(row, R1[0, 4])
        T.reduce_max(z, zr, dim=1)
        T.reduce_sum(z, zr, dim=1, clear=False)
        T.copy(zr, R2)


def _ref(x, z):
    x = x.astype(np.float64)
    r0 = np.stack([x.sum(0), x.max(0), x.min(0), np.abs(x).sum(0), np.abs(x).sum(0)])
    r1 = np.stack([x.sum(1), x.max(1), x.min(1), np.abs(x).max(1), np.abs(x).max(1) + x.sum(1)], axis=1)
    r2 = z.max(1) + z.sum(1)
    return r0, r1, r2


CASE = Case("reduce_axes", lambda: reduce_axes,
            lambda rng: (rng.standard_normal((M, N)).astype(np.float32),
                         rng.standard_normal((2, N, D)).astype(np.float32)),
            _ref, out_idx=(2, 3, 4), rtol=1e-5, atol=1e-5)

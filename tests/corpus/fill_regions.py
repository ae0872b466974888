"""T.fill and T.clear on whole tiles, sub-regions of tiles, one row given by a run-time index,
and regions of a global tensor that hang over its edge."""
import numpy as np

import tiledsl.language as T

from . import Case

M, N = 10, 7


@T.prim_func
def fill_regions(v: T.float32, r: T.int32, Y: T.Tensor((M, N), "float32"), Z: T.Tensor((M, N), "float32")):
    with T.Kernel(T.ceildiv(M, 4)) as bx:
        t = T.alloc_fragment((4, N), "float32")
        T.fill(t, v)
        T.clear(t[1:3, 2:4])
        T.fill(t[r, 0:N], -1.0)
        T.copy(t, Y[bx * 4, 0])
        T.fill(Z[bx * 4:bx * 4 + 4, 0:N], 2.0)
        T.fill(Z[bx * 4, 3:N], 3.0)


def _ref(v, r):
    t = np.full((4, N), v, np.float32)
    t[1:3, 2:4] = 0
    t[r] = -1
    y = np.tile(t, (3, 1))[:M]
    z = np.full((M, N), 2.0, np.float32)
    z[0::4, 3:] = 3
    return y, z


CASE = Case("fill_regions", lambda: fill_regions, lambda rng: (0.25, 3), _ref, out_idx=(2, 3), exact=True)

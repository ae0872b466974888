"""Ragged everything with symbolic sizes: M and N known only at call time, a 2-D grid of
ragged tiles, a shared tile transposed through a T.Parallel loop, and a column sum."""
import numpy as np

import tiledsl.language as T

from . import Case

M, N = T.dynamic("M"), T.dynamic("N")


@T.prim_func
def ragged_dynamic(X: T.Tensor((M, N), "float32"), Y: T.Tensor((N, M), "float32"), S: T.Tensor((N,), "float32")):
    with T.Kernel(T.ceildiv(N, 8), T.ceildiv(M, 16)) as (bx, by):
        t = T.alloc_shared((16, 8), "float32")
        u = T.alloc_fragment((8, 16), "float32")
        s = T.alloc_fragment((8,), "float32")
        T.copy(X[by * 16, bx * 8], t)
        for i, j in T.Parallel(8, 16):
            u[i, j] = t[j, i]
        T.copy(u, Y[bx * 8, by * 16])
        if by == 0:
            T.fill(s, 0.0)
            for r in T.serial(M):
                for j in T.Parallel(8):
                    s[j] = s[j] + X[r, bx * 8 + j]
            T.copy(s, S[bx * 8])


CASES = [Case("ragged_dynamic", lambda: ragged_dynamic,
              lambda rng, m=m, n=n: (rng.standard_normal((m, n)).astype(np.float32),),
              lambda x: (x.T, x.sum(0)), out_idx=(1, 2), rtol=1e-5, atol=1e-5, seed=m)
         for m, n in ((37, 19), (1, 1), (16, 8))]

"""User variables named like the ones passes generate (`i__1`, `acc__2`).

Regression: the frontend kept the name, so the user's loop variable `i__1` and the index of
the loop `lower_tile_ops` generated for the copy inside it were one Var; lowering failed (or
could have read the wrong row). User names no longer contain "__"."""
import numpy as np

import tiledsl.language as T

from . import Case


@T.prim_func
def name_clash(A: T.Tensor((4, 8), "float32"), B: T.Tensor((4, 8), "float32"), R: T.Tensor((4,), "float32")):
    with T.Kernel(1) as bx:
        t = T.alloc_fragment((8,), "float32")
        r = T.alloc_fragment((1,), "float32")
        for i__1 in T.serial(4):
            T.copy(A[i__1, 0:8], t)
            acc__2 = T.float32(0)
            for i__2 in T.serial(8):
                acc__2 += t[i__2]
            T.reduce_max(t, r, dim=0)
            T.copy(t, B[i__1, 0:8])
            R[i__1] = acc__2 + r[0]


CASE = Case("name_clash", lambda: name_clash,
            lambda rng: (rng.standard_normal((4, 8)).astype(np.float32),),
            lambda a: (a, a.sum(1) + a.max(1)), out_idx=(1, 2), rtol=1e-6, atol=1e-6)

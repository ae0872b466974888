"""8- and 16-bit integer arithmetic wraps to its type before a comparison or shift sees it.

Regression (found by this corpus' cpu-vs-interp comparison): C computes int8 + int8 in int,
so `(a + b) >> 1` and `(a + b) > 0` saw 200 where the IR (and numpy) have -56; the CPU code
now casts each 8- / 16-bit +, -, *, << and ~ back to its type."""
import numpy as np

import tiledsl.language as T

from . import Case

N = 64


@T.prim_func
def narrow_ints(A: T.Tensor((N,), "int8"), B: T.Tensor((N,), "int8"), U: T.Tensor((N,), "uint8"),
                C: T.Tensor((5, N), "int8"), D: T.Tensor((N,), "int16")):
    with T.Kernel(T.ceildiv(N, 16)) as bx:
        for i in T.Parallel(16):
            a = A[bx * 16 + i]
            b = B[bx * 16 + i]
            C[0, bx * 16 + i] = (a + b) >> 1
            C[1, bx * 16 + i] = T.if_then_else(a + b > 0, 1, 0)
            C[2, bx * 16 + i] = T.if_then_else(a * b < 0, 1, 0)
            C[3, bx * 16 + i] = T.if_then_else((a - b) // 2 > 10, 1, 0)
            C[4, bx * 16 + i] = T.cast(T.if_then_else(~U[bx * 16 + i] > 100, 1, 0), "int8")
            D[bx * 16 + i] = T.cast(a, "int16") * T.cast(b, "int16") * T.int16(4)


def _ref(a, b, u):
    c = np.stack([(a + b) >> 1, (a + b > 0), (a * b < 0), ((a - b) // 2 > 10), (~u > 100)]).astype(np.int8)
    d = a.astype(np.int16) * b.astype(np.int16) * np.int16(4)
    return c, d


CASE = Case("narrow_int_wrap", lambda: narrow_ints,
            lambda rng: (rng.integers(-128, 128, N).astype(np.int8), rng.integers(-128, 128, N).astype(np.int8),
                         rng.integers(0, 256, N).astype(np.uint8)),
            _ref, out_idx=(3, 4), exact=True)

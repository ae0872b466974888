"""Integer arithmetic with Python's semantics on negative operands (floor division and
modulo), shifts, bit operations, min / max, abs, and casts that wrap into int8."""
import numpy as np

import tiledsl.language as T

from . import Case

N = 40


@T.prim_func
def integer_ops(A: T.Tensor((N,), "int32"), d: T.int32, B: T.Tensor((8, N), "int32"), C: T.Tensor((N,), "int8")):
    with T.Kernel(T.ceildiv(N, 16)) as bx:
        for i in T.Parallel(16):
            a = A[bx * 16 + i]
            B[0, bx * 16 + i] = a // d
            B[1, bx * 16 + i] = a % d
            B[2, bx * 16 + i] = (a << 2) ^ (a >> 1)
            B[3, bx * 16 + i] = (a & 12) | 1
            B[4, bx * 16 + i] = T.max(T.min(a, 20), -20)
            B[5, bx * 16 + i] = T.abs(a) * 3 - 1
            B[6, bx * 16 + i] = T.cast(T.cast(a, "float32") * 0.5, "int32")
            B[7, bx * 16 + i] = T.if_then_else(a > 0, 1, T.if_then_else(a < 0, -1, 0))
            C[bx * 16 + i] = T.cast(a * 7, "int8")


def _ref(a, d):
    b = np.stack([a // d, a % d, (a << 2) ^ (a >> 1), (a & 12) | 1, np.clip(a, -20, 20),
                  np.abs(a) * 3 - 1, np.trunc(a * np.float32(0.5)).astype(np.int32), np.sign(a)])
    return b.astype(np.int32), (a * 7).astype(np.int8)


CASE = Case("integer_ops", lambda: integer_ops,
            lambda rng: (rng.integers(-60, 60, N).astype(np.int32), -7), _ref, out_idx=(2, 3), exact=True)

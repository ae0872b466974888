"""Two T.Kernel launches in one function, the second reading what the first wrote (in an order
the first one's blocks did not write it); a shared tile over 64 KiB (heap-allocated on the
CPU); a GEMM accumulating into a shared C; a max reduction over a NaN."""
import numpy as np

import tiledsl.language as T

from . import Case


@T.prim_func
def two_kernels(A: T.Tensor((64, 128), "float32"), B: T.Tensor((64, 128), "float32"),
                C: T.Tensor((64, 128), "float32"), G: T.Tensor((16, 16), "float32"), R: T.Tensor((64,), "float32")):
    with T.Kernel(4) as bx:
        s = T.alloc_shared((16, 128), "float32")
        T.copy(A[bx * 16, 0], s)
        for i, j in T.Parallel(16, 128):
            s[i, j] = s[i, j] * 2.0
        T.copy(s, B[bx * 16, 0])
    with T.Kernel(2) as bx:
        big = T.alloc_shared((32, 1024), "float32")
        a = T.alloc_shared((16, 16), "float32")
        c = T.alloc_shared((16, 16), "float32")
        r = T.alloc_fragment((32,), "float32")
        for i, j in T.Parallel(32, 1024):
            big[i, j] = B[63 - bx * 32 - i, j % 128] + 1.0
        T.reduce_max(big, r, dim=1)
        T.copy(r, R[bx * 32])
        T.copy(big[0:32, bx * 64:bx * 64 + 128], C[bx * 32, 0])
        if bx == 0:
            T.copy(A[0:16, 0:16], a)
            T.gemm(a, a, c, clear_accum=True)
            T.gemm(a, a, c, transpose_A=True)
            T.copy(c, G)


def _inputs(rng):
    a = rng.standard_normal((64, 128)).astype(np.float32)
    a[5, 7] = np.nan  # max reductions fold with `acc > x ? acc : x`: a NaN not last vanishes
    return (a,)


def _ref(a):
    b = a * 2
    flipped = b[::-1] + 1
    c = np.concatenate([flipped[0:32, 0:128], np.roll(flipped[32:64], -64, axis=1)])
    a16 = a[:16, :16].astype(np.float64)
    return b, c, a16 @ a16 + a16.T @ a16, np.nanmax(flipped, axis=1)


CASE = Case("two_kernels", lambda: two_kernels, _inputs, _ref, out_idx=(1, 2, 3, 4), rtol=1e-5, atol=1e-5)

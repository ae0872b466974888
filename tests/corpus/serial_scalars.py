"""Serial loops and scalars: a per-row dot product in a T.serial loop, a range with a step and a
negative step, a triangular loop whose bound depends on the T.Parallel index, and T.unroll."""
import numpy as np

import tiledsl.language as T

from . import Case

M, N = 11, 9


@T.prim_func
def serial_scalars(X: T.Tensor((M, N), "float32"), W: T.Tensor((N,), "float32"), Y: T.Tensor((M, 4), "float32")):
    with T.Kernel(T.ceildiv(M, 4)) as bx:
        for i in T.Parallel(4):
            acc = T.alloc_var("float32")
            for k in T.serial(N):
                acc += X[bx * 4 + i, k] * W[k]
            Y[bx * 4 + i, 0] = acc
            p = T.float32(0)
            for r in range(1, N, 3):
                p = p + X[bx * 4 + i, r]
            for r in range(N - 1, 0, -4):
                p = p - X[bx * 4 + i, r]
            Y[bx * 4 + i, 1] = p
            tri = T.float32(0)
            for k in T.serial(i + 1):
                tri += X[bx * 4 + i, k]
            Y[bx * 4 + i, 2] = tri
            u = T.float32(1)
            for k in T.unroll(3):
                u = u * 2.0 + X[bx * 4 + i, k]
            Y[bx * 4 + i, 3] = u


def _ref(x, w):
    x64 = x.astype(np.float64)
    y = np.zeros((M, 4))
    y[:, 0] = x64 @ w
    y[:, 1] = x64[:, 1:N:3].sum(1) - x64[:, N - 1:0:-4].sum(1)
    y[:, 2] = [x64[r, :r % 4 + 1].sum() for r in range(M)]
    u = np.ones(M)
    for k in range(3):
        u = u * 2 + x64[:, k]
    y[:, 3] = u
    return y


CASE = Case("serial_scalars", lambda: serial_scalars,
            lambda rng: (rng.standard_normal((M, N)).astype(np.float32), rng.standard_normal(N).astype(np.float32)),
            _ref, rtol=1e-5, atol=1e-5)

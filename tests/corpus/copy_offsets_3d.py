"""Copies with offsets: slices of a 3-D tensor at a run-time batch index and row offset, a
start-point copy into a tile of lower rank, and a write back with a column offset, with the
last slice hanging over the end of the tensor."""
import numpy as np

import tiledsl.language as T

from . import Case

B, S, D = 3, 45, 6


@T.prim_func
def copy_offsets(X: T.Tensor((B, S, D), "float32"), off: T.int32, Y: T.Tensor((B, S, D + 2), "float32")):
    with T.Kernel(T.ceildiv(S, 16), B) as (i, b):
        X_s = T.alloc_shared((16, D), "float32")
        row = T.alloc_fragment((D,), "float32")
        T.copy(X[b, i * 16:(i + 1) * 16, :], X_s)
        T.copy(X[b, i * 16 + off, 0], row)
        for r, c in T.Parallel(16, D):
            X_s[r, c] = X_s[r, c] * 2.0 + row[c]
        T.fill(Y[b, i * 16:(i + 1) * 16, 0:2], -1.0)
        T.copy(X_s, Y[b, i * 16, 2])


def _ref(x, off):
    y = np.empty((B, S, D + 2), np.float32)
    y[:, :, :2] = -1
    for i in range(0, S, 16):
        r = i + off
        row = x[:, r, :] if r < S else np.zeros((B, D), np.float32)
        y[:, i:i + 16, 2:] = x[:, i:i + 16, :] * 2 + row[:, None, :]
    return y


CASE = Case("copy_offsets_3d", lambda: copy_offsets,
            lambda rng: (rng.standard_normal((B, S, D)).astype(np.float32), 3), _ref, rtol=1e-6, atol=1e-6)

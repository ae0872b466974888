"""Softmax over the rows of a matrix, two ways:

- `softmax`: a block holds `block_M` whole rows in a fragment (max, exp, sum, divide in place).
  One read and one write of X; the row must fit in the block's tile.
- `online_softmax`: for rows wider than a tile. One pass over column tiles keeps a running max
  and a running sum per row, rescaling the sum whenever the max grows (FlashAttention's trick);
  a second pass writes `exp(x - max) / sum`. Two reads and one write of X, tiles of any width.

Checked against numpy and timed beside numpy's `e = exp(x - max); e / sum(e)` in the same run.

    python examples/softmax.py                # 4096 x 4096 and 1000 x 3000
    python examples/softmax.py 512 32768      # other M x N
"""
import math
import os
import sys

import numpy as np

import tiledsl
import tiledsl.language as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling gemm.py, also when imported
from gemm import best_time  # noqa: E402

LOG2E = 1.0 / math.log(2.0)


@tiledsl.jit(out_idx=[-1])
def softmax(M, N, block_M=4, dtype="float32"):
    @T.prim_func
    def main(X: T.Tensor((M, N), dtype), Y: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(M, block_M)) as bx:
            x_f = T.alloc_fragment((block_M, N), "float32")
            row_max = T.alloc_fragment((block_M,), "float32")
            row_sum = T.alloc_fragment((block_M,), "float32")
            T.copy(X[bx * block_M, 0], x_f)
            T.reduce_max(x_f, row_max, dim=1)
            for i, j in T.Parallel(block_M, N):
                x_f[i, j] = T.exp(x_f[i, j] - row_max[i])
            T.reduce_sum(x_f, row_sum, dim=1)
            for i, j in T.Parallel(block_M, N):
                x_f[i, j] = x_f[i, j] / row_sum[i]
            T.copy(x_f, Y[bx * block_M, 0])
    return main


@tiledsl.jit(out_idx=[-1])
def online_softmax(M, N, block_M=4, block_N=1024, dtype="float32"):
    block_N = min(block_N, N)
    n_tiles = T.ceildiv(N, block_N)
    ragged = N % block_N != 0  # a Python bool: the mask exists only when the last tile hangs over

    @T.prim_func
    def main(X: T.Tensor((M, N), dtype), Y: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(M, block_M)) as bx:
            x_f = T.alloc_fragment((block_M, block_N), "float32")
            row_max = T.alloc_fragment((block_M,), "float32")   # running max of the tiles so far
            prev_max = T.alloc_fragment((block_M,), "float32")
            row_sum = T.alloc_fragment((block_M,), "float32")   # sum of exp(x - row_max) so far
            tile_sum = T.alloc_fragment((block_M,), "float32")
            T.fill(row_max, -T.infinity("float32"))
            T.clear(row_sum)
            for k in T.Pipelined(n_tiles, num_stages=2):
                T.copy(X[bx * block_M, k * block_N], x_f)
                if ragged:  # columns past N read 0; they must not count
                    for i, j in T.Parallel(block_M, block_N):
                        x_f[i, j] = T.if_then_else(k * block_N + j < N, x_f[i, j], -T.infinity("float32"))
                T.copy(row_max, prev_max)
                T.reduce_max(x_f, row_max, dim=1, clear=False)
                # exp(x) = exp2(x * log2 e): FlashAttention folds log2 e into its scale.
                for i, j in T.Parallel(block_M, block_N):
                    x_f[i, j] = T.exp2((x_f[i, j] - row_max[i]) * LOG2E)
                T.reduce_sum(x_f, tile_sum, dim=1)
                # The old sum was taken relative to the old max: rescale it to the new one.
                for i in T.Parallel(block_M):
                    row_sum[i] = row_sum[i] * T.exp2((prev_max[i] - row_max[i]) * LOG2E) + tile_sum[i]
            for i in T.Parallel(block_M):
                row_sum[i] = 1.0 / row_sum[i]
            for k in T.Pipelined(n_tiles, num_stages=2):
                T.copy(X[bx * block_M, k * block_N], x_f)
                for i, j in T.Parallel(block_M, block_N):
                    x_f[i, j] = T.exp2((x_f[i, j] - row_max[i]) * LOG2E) * row_sum[i]
                T.copy(x_f, Y[bx * block_M, k * block_N])
    return main


def reference(x):
    """The obvious numpy formulation (in float32 for 16-bit inputs, numpy's own precision otherwise)."""
    if x.dtype.itemsize < 4:
        x = x.astype(np.float32)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main(shapes) -> int:
    rng = np.random.default_rng(0)
    ok = True
    print("ms; ratio = numpy time / tiledsl time (> 1: tiledsl faster)")
    print(f"{'M x N':>12} {'kernel':>15} {'max err':>9} {'tiledsl':>10} {'numpy':>10} {'ratio':>6}")
    for m, n in shapes:
        x = (rng.standard_normal((m, n)) * 4).astype(np.float32)
        ref = reference(x.astype(np.float64))
        theirs = best_time(lambda: reference(x))
        for name, factory in (("softmax", softmax), ("online_softmax", online_softmax)):
            kernel = factory(m, n)
            y = kernel(x)
            err = float(np.abs(y - ref).max() / np.abs(ref).max())
            good = err < 1e-4  # float32: the row sums add up to N terms one after another
            ok &= good
            ours = best_time(lambda: kernel(x))
            print(f"{f'{m}x{n}':>12} {name:>15} {err:9.1e} {ours * 1e3:7.2f} ms {theirs * 1e3:7.2f} ms "
                  f"{theirs / ours:5.2f}x {'ok' if good else 'WRONG'}")
    return 0 if ok else 1


if __name__ == "__main__":
    shapes = [(int(sys.argv[1]), int(sys.argv[2]))] if len(sys.argv) == 3 else [(4096, 4096), (1000, 3000)]
    sys.exit(main(shapes))

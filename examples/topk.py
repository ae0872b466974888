"""Top-k of each row (values and their column indices, largest first), checked against numpy and
timed beside numpy's argpartition + sort of the k winners, measured in the same run.

    python examples/topk.py                  # 4096 x 4096, k = 8
    python examples/topk.py 1000 3000 17     # rows cols k

Tie order: equal values come out in increasing column order, i.e. the result is
`np.argsort(-x, kind="stable")[:, :k]`: the row sorted by the key (value descending, column
ascending). NaN compares false with everything, so it is never chosen while a number is left.
"""
import os
import sys

import numpy as np

import tiledsl
import tiledsl.language as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling gemm.py, also when imported
from gemm import best_time  # noqa: E402


@tiledsl.jit(out_idx=[1, 2])
def topk(M, N, k, block_M=16, block_N=512, dtype="float32", index_dtype="int32"):
    @T.prim_func
    def main(X: T.Tensor((M, N), dtype), Values: T.Tensor((M, k), dtype),
             Indices: T.Tensor((M, k), index_dtype)):
        with T.Kernel(T.ceildiv(M, block_M), threads=128) as bx:
            x_s = T.alloc_shared((block_M, block_N), dtype)
            # Each row's k best so far, sorted by (value descending, column ascending). An empty
            # slot is (-inf, N): below every element, -inf included, since every column is < N.
            vals = T.alloc_fragment((block_M, k), "float32")
            idx = T.alloc_fragment((block_M, k), index_dtype)
            T.fill(vals, -T.infinity("float32"))
            T.fill(idx, N)
            for c in T.serial(T.ceildiv(N, block_N)):
                T.copy(X[bx * block_M, c * block_N], x_s)
                for i in T.Parallel(block_M):
                    for j in T.serial(block_N):
                        x = T.cast(x_s[i, j], "float32")
                        col = c * block_N + j
                        # Columns arrive in increasing order, so "x ahead of slot t" is
                        # x > vals[t], or x == vals[t] and slot t still empty (col < idx[t]).
                        # Almost every element fails the test against the k-th slot and costs
                        # one comparison; the others are inserted, shifting the worse ones down.
                        if col < N and (x > vals[i, k - 1] or (x == vals[i, k - 1] and col < idx[i, k - 1])):
                            for t in T.serial(k - 1, 0, -1):
                                if x > vals[i, t - 1] or (x == vals[i, t - 1] and col < idx[i, t - 1]):
                                    vals[i, t] = vals[i, t - 1]
                                    idx[i, t] = idx[i, t - 1]
                                elif x > vals[i, t] or (x == vals[i, t] and col < idx[i, t]):
                                    vals[i, t] = x
                                    idx[i, t] = col
                            if x > vals[i, 0] or (x == vals[i, 0] and col < idx[i, 0]):
                                vals[i, 0] = x
                                idx[i, 0] = col
            T.copy(vals, Values[bx * block_M, 0])
            T.copy(idx, Indices[bx * block_M, 0])
    return main


def topk_ref(x, k):
    """The obvious numpy: argpartition for the k largest, then sort those k (ties unordered)."""
    part = np.argpartition(-x, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(x, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(part, order, axis=1)


def topk_exact(x, k):
    """The kernel's exact answer, tie order included: a stable sort by descending value."""
    order = np.argsort(-x, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(x, order, axis=1), order


def main(M=4096, N=4096, k=8) -> int:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, N), dtype=np.float32)
    x[0, ::3] = 1.5  # a row of ties: the columns must come out in increasing order
    kernel = topk(M, N, k)
    vals, idx = kernel(x)
    want_vals, want_idx = topk_exact(x, k)
    good = np.array_equal(vals, want_vals) and np.array_equal(idx, want_idx)
    ours = best_time(lambda: kernel(x))
    theirs = best_time(lambda: topk_ref(x, k))
    print(f"{'M x N, k':>16} {'tiledsl':>10} {'numpy':>10} {'ratio':>6}  "
          f"(numpy = argpartition + sort of k; ratio = numpy time / tiledsl time)")
    print(f"{f'{M}x{N}, k={k}':>16} {ours * 1e3:7.2f} ms {theirs * 1e3:7.2f} ms {theirs / ours:5.2f}x "
          f"{'ok' if good else 'WRONG'}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main(*(int(a) for a in sys.argv[1:])))

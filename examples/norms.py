"""Row normalisations: LayerNorm `(x - mean) / sqrt(var + eps) * w + b` and RMSNorm
`x / sqrt(mean(x^2) + eps) * w`, over the last dimension of an M x N matrix. Inputs may be
float16 / bfloat16; statistics are taken in float32. Checked against numpy (float64) and timed
beside the obvious numpy formulation measured in the same run.

    python examples/norms.py                  # 4096 x 4096 and 1000 x 3000
    python examples/norms.py 8192 1024        # other M x N
"""
import os
import sys

import numpy as np

import tiledsl
import tiledsl.language as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling gemm.py, also when imported
from gemm import best_time  # noqa: E402


@tiledsl.jit(out_idx=[-1])
def layer_norm(M, N, block_M=4, eps=1e-5, dtype="float32"):
    @T.prim_func
    def main(X: T.Tensor((M, N), dtype), W: T.Tensor((N,), dtype), Bias: T.Tensor((N,), dtype),
             Y: T.Tensor((M, N), dtype)):
        # A block normalises block_M whole rows: the row statistics need every column, so the
        # rows stay in the block's tile between the reductions and the final pass over them.
        with T.Kernel(T.ceildiv(M, block_M)) as bx:
            x_f = T.alloc_fragment((block_M, N), "float32")
            sq_f = T.alloc_fragment((block_M, N), "float32")
            w_f = T.alloc_fragment((N,), "float32")
            b_f = T.alloc_fragment((N,), "float32")
            mean = T.alloc_fragment((block_M,), "float32")
            rstd = T.alloc_fragment((block_M,), "float32")
            T.copy(X[bx * block_M, 0], x_f)
            T.copy(W[0], w_f)
            T.copy(Bias[0], b_f)
            T.reduce_sum(x_f, mean, dim=1)
            # The mean is rounded once, before it is subtracted: `x - sum * (1 / N)` is one fused
            # multiply-add on the GPU (nvcc contracts it), which skips that rounding, so a constant
            # row would centre to -4.5e-8 instead of 0 there and not to 0 on the CPU.
            for i in T.Parallel(block_M):
                mean[i] = mean[i] * (1.0 / N)
            # Centre first, then square: var = E[(x - mean)^2] does not cancel the way
            # E[x^2] - mean^2 does when |mean| >> std.
            for i, j in T.Parallel(block_M, N):
                x_f[i, j] = x_f[i, j] - mean[i]
                sq_f[i, j] = x_f[i, j] * x_f[i, j]
            T.reduce_sum(sq_f, rstd, dim=1)
            for i in T.Parallel(block_M):
                rstd[i] = T.rsqrt(rstd[i] * (1.0 / N) + eps)
            for i, j in T.Parallel(block_M, N):
                x_f[i, j] = x_f[i, j] * rstd[i] * w_f[j] + b_f[j]
            T.copy(x_f, Y[bx * block_M, 0])
    return main


@tiledsl.jit(out_idx=[-1])
def rms_norm(M, N, block_M=4, eps=1e-6, dtype="float32"):
    @T.prim_func
    def main(X: T.Tensor((M, N), dtype), W: T.Tensor((N,), dtype), Y: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(M, block_M)) as bx:
            x_f = T.alloc_fragment((block_M, N), "float32")
            sq_f = T.alloc_fragment((block_M, N), "float32")
            w_f = T.alloc_fragment((N,), "float32")
            rstd = T.alloc_fragment((block_M,), "float32")
            T.copy(X[bx * block_M, 0], x_f)
            T.copy(W[0], w_f)
            for i, j in T.Parallel(block_M, N):
                sq_f[i, j] = x_f[i, j] * x_f[i, j]
            T.reduce_sum(sq_f, rstd, dim=1)
            for i in T.Parallel(block_M):
                rstd[i] = T.rsqrt(rstd[i] * (1.0 / N) + eps)
            for i, j in T.Parallel(block_M, N):
                x_f[i, j] = x_f[i, j] * rstd[i] * w_f[j]
            T.copy(x_f, Y[bx * block_M, 0])
    return main


def layer_norm_ref(x, w, b, eps=1e-5):
    """The obvious numpy formulation (float32 for 16-bit inputs, numpy's own precision otherwise)."""
    if x.dtype.itemsize < 4:
        x, w, b = (t.astype(np.float32) for t in (x, w, b))
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def rms_norm_ref(x, w, eps=1e-6):
    if x.dtype.itemsize < 4:
        x, w = x.astype(np.float32), w.astype(np.float32)
    return x / np.sqrt(np.mean(x * x, axis=1, keepdims=True) + eps) * w


def main(shapes) -> int:
    rng = np.random.default_rng(0)
    ok = True
    print("ms; ratio = numpy time / tiledsl time (> 1: tiledsl faster)")
    print(f"{'M x N':>12} {'kernel':>10} {'max err':>9} {'tiledsl':>10} {'numpy':>10} {'ratio':>6}")
    for m, n in shapes:
        x = (rng.standard_normal((m, n)) * 2 + 1).astype(np.float32)
        w = rng.standard_normal(n).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        cases = (("layer_norm", layer_norm(m, n), (x, w, b), layer_norm_ref),
                 ("rms_norm", rms_norm(m, n), (x, w), rms_norm_ref))
        for name, kernel, args, ref_fn in cases:
            y = kernel(*args)
            ref = ref_fn(*(t.astype(np.float64) for t in args))
            err = float(np.abs(y - ref).max() / np.abs(ref).max())
            good = err < 1e-5
            ok &= good
            ours = best_time(lambda: kernel(*args))
            theirs = best_time(lambda: ref_fn(*args))
            print(f"{f'{m}x{n}':>12} {name:>10} {err:9.1e} {ours * 1e3:7.2f} ms {theirs * 1e3:7.2f} ms "
                  f"{theirs / ours:5.2f}x {'ok' if good else 'WRONG'}")
    return 0 if ok else 1


if __name__ == "__main__":
    shapes = [(int(sys.argv[1]), int(sys.argv[2]))] if len(sys.argv) == 3 else [(4096, 4096), (1000, 3000)]
    sys.exit(main(shapes))

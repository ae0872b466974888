"""GEMM with a fused epilogue: `act(A @ B + bias)`, the bias a length-N vector broadcast over
rows and the activation (ReLU, GELU in its tanh form, or SiLU) chosen by a Python parameter.
Checked against numpy and timed beside numpy's `act(a @ b + bias)` measured in the same run.

    python examples/gemm_epilogue.py                 # 1000^3 and 1024^3, every activation
    python examples/gemm_epilogue.py 2048            # other square sizes
"""
import math
import os
import sys

import numpy as np

import tiledsl
import tiledsl.language as T
from tiledsl.autotune import default_gemm_tiles as default_tiles

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling gemm.py, also when imported
from gemm import best_time  # noqa: E402

ACTIVATIONS = ("none", "relu", "gelu", "silu")
GELU_C = math.sqrt(2.0 / math.pi)


def activation(x, kind: str):
    """`kind` applied to the tile element `x`; a Python function, so inlined when the kernel is parsed."""
    if kind == "relu":
        return T.max(x, 0.0)
    if kind == "gelu":  # the tanh approximation (GPT-2, PyTorch's approximate="tanh")
        return 0.5 * x * (1.0 + T.tanh(GELU_C * (x + 0.044715 * x * x * x)))
    if kind == "silu":
        return x * T.sigmoid(x)
    return x


@tiledsl.jit(out_idx=[-1])
def gemm_bias_act(M, N, K, block_M=64, block_N=128, block_K=256, dtype="float32", act="relu"):
    if act not in ACTIVATIONS:
        raise ValueError(f"gemm_bias_act: act must be one of {ACTIVATIONS}, got {act!r}")
    accum = "float64" if dtype == "float64" else "float32"  # 16-bit inputs accumulate in float32

    @T.prim_func
    def main(A: T.Tensor((M, K), dtype), B: T.Tensor((K, N), dtype), Bias: T.Tensor((N,), dtype),
             C: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=128) as (bx, by):
            A_s = T.alloc_shared((block_M, block_K), dtype)
            B_s = T.alloc_shared((block_K, block_N), dtype)
            bias_f = T.alloc_fragment((block_N,), accum)
            C_f = T.alloc_fragment((block_M, block_N), accum)
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                T.copy(A[by * block_M, k * block_K], A_s)
                T.copy(B[k * block_K, bx * block_N], B_s)
                T.gemm(A_s, B_s, C_f)
            # The epilogue runs on the accumulator while it is still in registers / cache: the
            # bias and activation cost no extra pass over C in memory.
            T.copy(Bias[bx * block_N], bias_f)
            for i, j in T.Parallel(block_M, block_N):
                C_f[i, j] = activation(C_f[i, j] + bias_f[j], act)
            T.copy(C_f, C[by * block_M, bx * block_N])
    return main


def reference(a, b, bias, act: str):
    """The obvious numpy formulation, in the inputs' precision (float64 for 16-bit inputs)."""
    if a.dtype.itemsize < 4:
        a, b, bias = (x.astype(np.float64) for x in (a, b, bias))
    y = a @ b + bias
    if act == "relu":
        return np.maximum(y, 0)
    if act == "gelu":
        return 0.5 * y * (1 + np.tanh(GELU_C * (y + 0.044715 * y ** 3)))
    if act == "silu":
        with np.errstate(over="ignore"):  # exp(-y) overflows to inf for y << 0: y / inf = -0
            return y / (1 + np.exp(-y))
    return y


def main(sizes) -> int:
    rng = np.random.default_rng(0)
    ok = True
    print("GFLOP/s; ratio = tiledsl / numpy (= numpy time / tiledsl time, > 1: tiledsl faster)")
    print(f"{'size':>16} {'act':>5} {'max err':>9} {'tiledsl':>10} {'numpy':>10} {'ratio':>6}")
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        bias = rng.standard_normal(n, dtype=np.float32)
        for act in ACTIVATIONS[1:]:
            kernel = gemm_bias_act(n, n, n, **default_tiles(n, n, n, "float32"), act=act)
            c = kernel(a, b, bias)
            ref = reference(a, b, bias, act)
            err = float(np.abs(c - ref).max() / np.abs(ref).max())
            good = err < 1e-5
            ok &= good
            flops = 2.0 * n ** 3
            ours = flops / best_time(lambda: kernel(a, b, bias)) / 1e9
            theirs = flops / best_time(lambda: reference(a, b, bias, act)) / 1e9
            print(f"{f'{n}x{n}x{n}':>16} {act:>5} {err:9.1e} {ours:7.1f} GF {theirs:7.1f} GF "
                  f"{ours / theirs:5.2f}x {'ok' if good else 'WRONG'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sizes = [int(s) for s in sys.argv[1:]] or [1000, 1024]
    sys.exit(main(sizes))

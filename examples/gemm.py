"""The main job: a TileLang-style GEMM with a ReLU epilogue, checked against numpy and timed
beside numpy's matmul (OpenBLAS) measured in the same run.

    python examples/gemm.py            # 1000^3 and 1024^3
    python examples/gemm.py 2048 4096  # other square sizes
"""
import sys
import time

import numpy as np

import tiledsl
import tiledsl.language as T
from tiledsl.autotune import default_gemm_tiles as default_tiles


@tiledsl.jit(out_idx=[-1])
def matmul(M, N, K, block_M=64, block_N=64, block_K=32, dtype="float32", relu=True):
    out = "int32" if dtype == "int8" else dtype  # int8 products add up in int32 (AVX512_VNNI where there is one)
    acc = {"float64": "float64", "int8": "int32"}.get(dtype, "float32")

    @T.prim_func
    def main(A: T.Tensor((M, K), dtype), B: T.Tensor((K, N), dtype), C: T.Tensor((M, N), out)):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=128) as (bx, by):
            A_s = T.alloc_shared((block_M, block_K), dtype)
            B_s = T.alloc_shared((block_K, block_N), dtype)
            C_f = T.alloc_fragment((block_M, block_N), acc)
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                T.copy(A[by * block_M, k * block_K], A_s)
                T.copy(B[k * block_K, bx * block_N], B_s)
                T.gemm(A_s, B_s, C_f)
            if relu:  # a Python value: decided when the kernel is defined
                for i, j in T.Parallel(block_M, block_N):
                    C_f[i, j] = T.max(C_f[i, j], 0)
            T.copy(C_f, C[by * block_M, bx * block_N])
    return main


def best_time(fn, reps: int = 5) -> float:
    """Median seconds of `reps` runs after one warm-up."""
    # OpenBLAS's and OpenMP's worker threads spin for a while after a call; timing one library
    # while the other's threads still spin costs it up to a third. Let them fall asleep first.
    time.sleep(0.3)
    fn()  # warm-up: page in, spin up threads
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(sizes) -> int:
    rng = np.random.default_rng(0)
    ok = True
    print(f"{'size':>16} {'compile':>8} {'max err':>9} {'tiledsl':>10} {'numpy':>10} {'ratio':>6}")
    for n in sizes:
        t0 = time.perf_counter()
        kernel = matmul(n, n, n, **default_tiles(n, n, n, "float32"))
        compile_s = time.perf_counter() - t0
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = kernel(a, b)
        ref = np.maximum(a @ b, 0)
        err = float(np.abs(c - ref).max() / np.abs(ref).max())
        good = err < 1e-5
        ok &= good
        flops = 2.0 * n ** 3
        ours = flops / best_time(lambda: kernel(a, b)) / 1e9
        theirs = flops / best_time(lambda: np.maximum(a @ b, 0)) / 1e9
        print(f"{f'{n}x{n}x{n}':>16} {compile_s:7.2f}s {err:9.1e} {ours:7.1f} GF {theirs:7.1f} GF "
              f"{ours / theirs:5.2f}x {'ok' if good else 'WRONG'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sizes = [int(s) for s in sys.argv[1:]] or [1000, 1024]
    sys.exit(main(sizes))

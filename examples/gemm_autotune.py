"""Tune the CPU GEMM's block sizes, print every config and the winner, then tune again as a new
process would and show that the stored results answer in well under a second.

    python examples/gemm_autotune.py            # 512 x 512 x 512
    python examples/gemm_autotune.py 1024       # another square size
    python examples/gemm_autotune.py --clear    # forget stored tuning results first
    python examples/gemm_autotune.py --ray      # build and measure on a Ray cluster (a local one
                                                # unless this process can reach one: RAY_ADDRESS)

In a program of your own the tuner is a decorator stacked on the kernel factory:

    @tiledsl.autotune(configs=CONFIGS, ref_prog=lambda a, b: np.maximum(a @ b, 0))
    @tiledsl.jit(out_idx=[-1])
    def matmul(M, N, K, block_M=64, block_N=64, block_K=32, ...): ...

    kernel = matmul(512, 512, 512)             # the fastest config's kernel

With `executor="ray"` the same configs are built as Ray tasks, each library travels through
Ray's object store to the task that times it, and the table and the winner come out as they do
locally (docs/autotune_cluster.md).
"""
import os
import sys
import time

import numpy as np

import tiledsl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemm import matmul  # noqa: E402 - the @tiledsl.jit GEMM (with ReLU) of examples/gemm.py

CONFIGS = {"block_M": [32, 64], "block_N": [64, 128], "block_K": [64, 128, 256]}


def tuned_matmul(executor: str = "local"):
    """A tuner over a new @tiledsl.jit factory of the same kernel: nothing of it is in memory yet,
    exactly as in a new process."""
    return tiledsl.autotune(configs=CONFIGS, warmup=2, rep=10, rtol=1e-3, atol=1e-3, executor=executor,
                            ref_prog=lambda a, b: np.maximum(a @ b, 0))(tiledsl.jit(out_idx=[-1])(matmul.factory))


def main(n: int, clear: bool, executor: str = "local") -> int:
    if clear:
        tiledsl.cache.clear("autotune")
    if executor == "ray":
        t0 = time.perf_counter()
        ray = tiledsl.autotune.ray_executor.connect(tiledsl.autotune.RayExecutor())
        cpus = int(ray.cluster_resources().get("CPU", 0))
        print(f"Ray cluster: {len(ray.nodes())} node(s), {cpus} CPUs (connected in {time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    first = tuned_matmul(executor).tune(n, n, n)
    first_s = time.perf_counter() - t0
    print(first.table())
    gflops = 2.0 * n ** 3 / (first.latency * 1e-3) / 1e9
    print(f"\nwinner for {n}x{n}x{n}: {first.config}, {first.latency:.3f} ms ({gflops:.1f} GFLOP/s)")
    print(f"first run:  {first_s:6.2f} s ({first.measured} of {len(first.records)} configs compiled and timed)")

    t0 = time.perf_counter()
    second = tuned_matmul(executor).tune(n, n, n)
    second_s = time.perf_counter() - t0
    print(f"second run: {second_s:6.2f} s ({second.measured} measured; the rest from stored results)")

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    ok = second.config == first.config and np.allclose(second.kernel(a, b), np.maximum(a @ b, 0),
                                                          rtol=1e-3, atol=1e-3)
    print("same winner, correct result" if ok else "MISMATCH between runs")
    return 0 if ok else 1


if __name__ == "__main__":
    args = [x for x in sys.argv[1:] if not x.startswith("--")]
    sys.exit(main(int(args[0]) if args else 512, "--clear" in sys.argv, "ray" if "--ray" in sys.argv else "local"))

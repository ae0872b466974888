"""What one call of a tiny kernel costs: a 1-block `C = A + B` over 16 float32, three numpy arrays.

    python benchmarks/bench_call.py [--rounds 15] [--number 20000]

For each CPU backend (C++ / OpenMP and LLVM), per call in microseconds:
  bare tvm-ffi   the TVM-FFI function itself (`kernel._fn(a, b, c)`): DLPack conversion of the
                 three arrays, the generated host checks and the kernel
  kernel(a,b,c)  the `JITKernel` with every argument (what Python adds on top of the above)
  kernel(a,b)    the `JITKernel` allocating C (out_idx=[-1])
  8 blocks       kernel(a, b, c) of the same kernel over 8 blocks of 16 (the parallel launch)
Each figure is the per-call time of `number` back-to-back calls; min and median over `rounds`
rounds, the backends alternating. The machine may be shared: the minimum is the figure that
interference cannot inflate, and `uptime` is printed beside it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

import tiledsl
import tiledsl.language as T


def add_kernel(blocks: int):
    n = 16 * blocks

    @T.prim_func
    def add(A: T.Tensor((n,), "float32"), B: T.Tensor((n,), "float32"), C: T.Tensor((n,), "float32")):
        with T.Kernel(blocks) as bx:
            for i in T.Parallel(16):
                C[bx * 16 + i] = A[bx * 16 + i] + B[bx * 16 + i]
    return add


def per_call(fn, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--number", type=int, default=20000)
    args = ap.parse_args(argv)
    a, b, c = (np.ones(16, np.float32) for _ in range(3))
    a8, b8, c8 = (np.ones(128, np.float32) for _ in range(3))
    cases = {}
    for be in ("cxx", "llvm"):
        k = tiledsl.compile(add_kernel(1), out_idx=[], backend=be, name=f"call_{be}")
        alloc = tiledsl.compile(add_kernel(1), out_idx=[-1], backend=be, name=f"call_{be}")
        k8 = tiledsl.compile(add_kernel(8), out_idx=[], backend=be, name=f"call8_{be}")
        fn = k._fn
        cases[be] = {"bare tvm-ffi": lambda fn=fn: fn(a, b, c), "kernel(a,b,c)": lambda k=k: k(a, b, c),
                     "kernel(a,b)": lambda k=alloc: k(a, b), "8 blocks": lambda k=k8: k(a8, b8, c8)}
    times = {(be, w): [] for be, ws in cases.items() for w in ws}
    for r in range(args.rounds):
        for be in (("cxx", "llvm") if r % 2 == 0 else ("llvm", "cxx")):
            for w, f in cases[be].items():
                f()
                times[be, w].append(per_call(f, args.number))
    load = os.getloadavg()
    print(f"per-call cost of a 16-element, 1-block kernel, three numpy arrays (us, min / median of "
          f"{args.rounds} rounds of {args.number} calls; load average {load[0]:.2f} {load[1]:.2f})")
    print(f"{'':>14}" + "".join(f"{w:>18}" for w in cases["cxx"]))
    for be in cases:
        print(f"{be:>14}" + "".join(f"{min(times[be, w]) * 1e6:9.2f} / {statistics.median(times[be, w]) * 1e6:5.2f}"
                                    for w in cases[be]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

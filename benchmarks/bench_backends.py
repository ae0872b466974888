"""The two CPU backends side by side: C++ (g++, OpenMP) and LLVM (llvmlite, in process).

    python benchmarks/bench_backends.py                       # everything below
    python benchmarks/bench_backends.py compile --rounds 5     # cold compile of the example GEMM
    python benchmarks/bench_backends.py gemm --sizes 1024 2048 # GFLOP/s, fp32
    python benchmarks/bench_backends.py launch                 # the LLVM backend's two launchers

compile: each round starts a fresh process with an empty cache directory, imports tiledsl and
  the example, and times `matmul(n, n, n)` for the example's two sizes (1024, then 1000): the
  first includes the one-time set-up (for LLVM: asking llvmlite for the host CPU, compiling its
  runtime module), the second is what every further kernel costs. Then three more fresh
  processes on that cache directory: with the kernels removed but the per-machine probes kept
  (`probes/`: what any process after the very first one on a machine has), and twice with
  everything kept (kernels loaded from the disk cache). Min and median of --rounds.
gemm: the example's GEMM (fp32, ReLU epilogue, default tiles) from both backends in one
  process, timed alternately for --rounds rounds, each the fastest of --reps runs after a
  warm-up; the fastest run of each backend is reported.
launch: the LLVM backend's thread pool in the generated code against the TVM-FFI launcher
  (`tiledsl.parallel_launch`, Python threads): the time of a call of a small 64-block kernel,
  and the GEMM at 1024.

The machine may be shared: compare figures taken in the same run, and repeat.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, HERE)
from timing import fastest  # noqa: E402

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import tiledsl
from gemm import default_tiles, matmul
factory = tiledsl.jit(out_idx=[-1], backend=sys.argv[2])(matmul.factory)
out = []
for n in (1024, 1000):
    t0 = time.perf_counter()
    factory(n, n, n, **default_tiles(n, n, n, "float32"))
    out.append(time.perf_counter() - t0)
print(json.dumps(out))
"""


def bench_compile(rounds: int) -> None:
    import statistics
    import shutil
    import statistics
    columns = ("empty cache", "probes kept", "from disk")
    runs = {}  # backend -> column -> [(first, next)]
    for r in range(rounds):
        for backend in ("cxx", "llvm"):
            with tempfile.TemporaryDirectory() as cache:
                env = dict(os.environ, TILEDSL_CACHE_DIR=cache)
                for col in columns + ("from disk",):
                    if col == "probes kept":
                        shutil.rmtree(os.path.join(cache, "kernels"), ignore_errors=True)
                    out = subprocess.run([sys.executable, "-c", CHILD, os.path.join(HERE, "..", "examples"),
                                          backend], capture_output=True, text=True, env=env, check=True)
                    runs.setdefault(backend, {}).setdefault(col, []).append(
                        json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"the example GEMM's compile in a fresh process, first kernel (1024) / next kernel (1000), ms: "
          f"min and median of {rounds} rounds (load average {os.getloadavg()[0]:.2f})")
    print(f"{'backend':>8}" + "".join(f"{c:>30}" for c in columns))
    for backend, cols in runs.items():
        cells = []
        for c in columns:
            first, nxt = zip(*cols[c])
            cells.append(f"{min(first) * 1e3:6.1f} ({statistics.median(first) * 1e3:5.1f}) / "
                         f"{min(nxt) * 1e3:5.1f} ({statistics.median(nxt) * 1e3:5.1f})")
        print(f"{backend:>8}" + "".join(f"{c:>30}" for c in cells))


def bench_gemm(sizes, rounds: int, reps: int) -> None:
    import numpy as np
    import tiledsl
    from gemm import default_tiles, matmul
    rng = np.random.default_rng(0)
    factories = {b: tiledsl.jit(out_idx=[-1], backend=b)(matmul.factory) for b in ("cxx", "llvm")}
    print(f"fp32 GEMM GFLOP/s ({rounds} rounds alternating the backends, each the best of {reps} runs)")
    print(f"{'size':>6} {'cxx':>8} {'llvm':>8} {'llvm/cxx':>9}")
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), np.float32)
        ref = np.maximum(a @ b, 0)
        kernels = {name: f(n, n, n, **default_tiles(n, n, n, "float32")) for name, f in factories.items()}
        gf = {}
        for name, k in kernels.items():
            k(a, b, c)
            assert np.abs(c - ref).max() <= 1e-4 * np.abs(ref).max(), f"{name} is wrong at {n}"
        for r in range(rounds):
            for name in sorted(kernels, reverse=r % 2 == 1):  # neither backend always goes first
                k = kernels[name]
                t = fastest(lambda: k(a, b, c), reps)
                gf[name] = max(gf.get(name, 0.0), 2.0 * n ** 3 / t / 1e9)
        print(f"{n:>6} {gf['cxx']:8.1f} {gf['llvm']:8.1f} {gf['llvm'] / gf['cxx']:8.2f}x")


def bench_launch(rounds: int, reps: int) -> None:
    import numpy as np
    import tiledsl
    import tiledsl.language as T
    from gemm import default_tiles, matmul

    def add_one(N, block=256):
        @T.prim_func
        def main(A: T.Tensor((N,), "float32"), B: T.Tensor((N,), "float32")):
            with T.Kernel(T.ceildiv(N, block)) as bx:
                for i in T.Parallel(block):
                    B[bx * block + i] = A[bx * block + i] + 1.0
        return main

    n = 1024
    a = np.ones(64 * 256, np.float32)
    x = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    y, z = x.copy(), np.empty_like(x)
    small, big = {}, {}
    for mode in ("pool", "ffi"):
        os.environ["TILEDSL_LLVM_PARALLEL"] = mode  # read when a kernel is generated
        small[mode] = tiledsl.compile(add_one(a.size), out_idx=[-1], backend="llvm", name=f"add_{mode}")
        big[mode] = tiledsl.compile(matmul.get_ir(n, n, n, **default_tiles(n, n, n, "float32")),
                                    out_idx=[-1], backend="llvm", name=f"mm_{mode}")
    os.environ.pop("TILEDSL_LLVM_PARALLEL")
    us, gf = {}, {}
    for _ in range(rounds):
        for mode in ("pool", "ffi"):
            b = np.empty_like(a)
            k = small[mode]
            k(a, b)
            calls = 2000
            t0 = time.perf_counter()
            for _ in range(calls):
                k(a, b)
            us[mode] = min(us.get(mode, 1e9), (time.perf_counter() - t0) / calls * 1e6)
            t = fastest(lambda: big[mode](x, y, z), reps)
            gf[mode] = max(gf.get(mode, 0.0), 2.0 * n ** 3 / t / 1e9)
    print(f"LLVM backend launchers (best of {rounds} rounds)")
    print(f"{'launcher':>9} {'64-block call':>14} {'GEMM 1024':>10}")
    for mode, what in (("pool", "pool"), ("ffi", "ffi")):
        print(f"{what:>9} {us[mode]:11.1f} us {gf[mode]:7.1f} GF")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="*", default=["compile", "gemm", "launch"], choices=["compile", "gemm", "launch"])
    p.add_argument("--sizes", nargs="+", type=int, default=[1024, 2048, 4096])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    for what in args.what:
        if what == "compile":
            bench_compile(args.rounds)
        elif what == "gemm":
            bench_gemm(args.sizes, args.rounds, args.reps)
        else:
            bench_launch(args.rounds, args.reps)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

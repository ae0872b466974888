"""CPU GEMM: tiledsl against numpy (OpenBLAS) measured in the same run.

    python benchmarks/bench_gemm.py                    # fp32 + fp64 + bf16, all shapes, 2 threads
    python benchmarks/bench_gemm.py --threads 1 --dtypes float32 --sizes 1024 2048
    python benchmarks/bench_gemm.py --isa avx2         # force tiledsl's AVX2 micro-kernels

Prints GFLOP/s for tiledsl, numpy as installed, and numpy with OPENBLAS_CORETYPE=SkylakeX
(OpenBLAS's AVX-512 kernels; measured in a child process because the variable must be set
before numpy loads), and the ratios. Timing: one warm-up, then the median of --reps runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

# The example supplies the kernel and the timing rule; it is imported only after main() has
# set the thread counts, which numpy and OpenMP read when they load.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

SQUARE = [256, 512, 1024, 2048, 4096]
SKINNY = [(4096, 4096, 64), (64, 4096, 4096)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64", "bfloat16"])
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="square sizes (default: 256..4096)")
    p.add_argument("--no-skinny", action="store_true")
    p.add_argument("--isa", default=None, choices=["avx512", "avx2", "scalar"])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--no-skylakex", action="store_true", help="skip the OPENBLAS_CORETYPE=SkylakeX child")
    p.add_argument("--numpy-only", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def shapes(args):
    out = [(n, n, n) for n in (args.sizes or SQUARE)]
    return out if args.no_skinny else out + SKINNY


def numpy_gflops(m, n, k, dtype, reps):
    import numpy as np
    from gemm import best_time
    rng = np.random.default_rng(0)
    dt = "float32" if dtype == "bfloat16" else dtype  # bf16 is compared with numpy fp32
    a = rng.standard_normal((m, k)).astype(dt)
    b = rng.standard_normal((k, n)).astype(dt)
    return 2.0 * m * n * k / best_time(lambda: a @ b, reps) / 1e9


def skylakex_child(args):
    """numpy's GFLOP/s with OpenBLAS forced to its AVX-512 kernels, from a child process."""
    env = dict(os.environ, OPENBLAS_CORETYPE="SkylakeX")
    cmd = [sys.executable, __file__, "--numpy-only", "--threads", str(args.threads), "--reps", str(args.reps),
           "--dtypes", *args.dtypes]
    if args.sizes:
        cmd += ["--sizes", *map(str, args.sizes)]
    if args.no_skinny:
        cmd.append("--no-skinny")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"(SkylakeX child failed: {out.stderr.strip()[-300:]})")
        return {}
    return {tuple(json.loads(k)): v for k, v in json.loads(out.stdout).items()}


def main(argv=None):
    args = parse_args(argv)
    # Both libraries read their thread counts when they load.
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    if args.numpy_only:
        res = {json.dumps([d, *s]): numpy_gflops(*s, d, args.reps) for d in args.dtypes for s in shapes(args)}
        print(json.dumps(res))
        return 0
    import numpy as np
    import tiledsl
    from gemm import best_time, default_tiles, matmul as example
    target = f"cpu -isa={args.isa}" if args.isa else "cpu"
    matmul = tiledsl.jit(out_idx=[-1], target=target)(example.factory)
    skx = {} if args.no_skylakex else skylakex_child(args)
    print(f"threads={args.threads} target={target!r}; GFLOP/s (ratio = tiledsl / reference)")
    print(f"{'dtype':>9} {'M x N x K':>16} {'tiles':>12} {'tiledsl':>8} {'numpy':>8} {'ratio':>6} "
          f"{'np-SKX':>8} {'ratio':>6}  check")
    rng = np.random.default_rng(0)
    for dtype in args.dtypes:
        for m, n, k in shapes(args):
            tiles = default_tiles(m, n, k, dtype)
            kernel = matmul(m, n, k, **tiles, dtype=dtype, relu=False)
            npdt = np.dtype(kernel.func.params[0].dtype.numpy)
            a = rng.standard_normal((m, k)).astype(npdt)
            b = rng.standard_normal((k, n)).astype(npdt)
            c = kernel(a, b)
            ref = a.astype(np.float64) @ b.astype(np.float64)
            err = float(np.abs(c.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))
            tol = {"float32": 1e-4, "float64": 1e-10}.get(dtype, 2e-2)
            ours = 2.0 * m * n * k / best_time(lambda: kernel(a, b), args.reps) / 1e9
            theirs = numpy_gflops(m, n, k, dtype, args.reps)
            s = skx.get((dtype, m, n, k))
            skx_txt = f"{s:8.1f} {ours / s:5.2f}x" if s else f"{'-':>8} {'-':>6}"
            tile_txt = "x".join(str(tiles[t]) for t in ("block_M", "block_N", "block_K"))
            print(f"{dtype:>9} {f'{m}x{n}x{k}':>16} {tile_txt:>12} {ours:8.1f} {theirs:8.1f} "
                  f"{ours / theirs:5.2f}x {skx_txt}  {'ok' if err < tol else f'WRONG ({err:.1e})'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

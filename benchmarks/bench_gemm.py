"""CPU GEMM: tiledsl against the host's measured peak and against numpy (OpenBLAS), in the same run.

    python benchmarks/bench_gemm.py                    # 1 and 2 threads; fp32, fp64, bf16, int8
    python benchmarks/bench_gemm.py --threads 1 --dtypes float32 --sizes 1024 2048
    python benchmarks/bench_gemm.py --isa avx2         # force tiledsl's AVX2 micro-kernels
    python benchmarks/bench_gemm.py --backend llvm     # the LLVM backend instead of g++

For each thread count (a child process each: numpy and OpenMP read their thread counts when they
load) it first measures the peak with `peak.py`'s probe, compiled by the same backend for the same
ISA and run on the same threads: FMA for float32 / float64, `vdpbf16ps` for bfloat16 and
`vpdpbusd` for int8 where the host has them (else the FMA peak). Then for each GEMM (the README
kernel, examples/gemm.py, with its default tiles; int8 the same kernel with int32 C) it prints
GFLOP/s, the fraction of that peak (the fastest the probe ran in the run so far), numpy's GFLOP/s and the ratio (bfloat16 and int8 are put
beside numpy float32, the fastest matmul numpy has for them), and a second reference: ml_dtypes'
bfloat16 `a @ b` (up to 1024^3: it is slow), numpy's int8 matmul through int32.
tiledsl and numpy are timed in alternating rounds (benchmarks/timing.py): on a shared machine,
interference only adds time, so each figure is the fastest call. `--skylakex` adds numpy with
OPENBLAS_CORETYPE=SkylakeX (OpenBLAS's AVX-512 kernels, from another child process).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The example supplies the kernel; it is imported only after the thread counts are set.
sys.path[:0] = [HERE, os.path.join(HERE, "..", "examples")]

SQUARE = [1024, 2048, 4096]
SKINNY = [(4096, 4096, 64), (64, 4096, 4096)]
PEAK_KIND = {"float32": "float32", "float64": "float64", "bfloat16": "bfloat16", "int8": "int8",
             "float16": "float32"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64", "bfloat16", "int8"],
                   choices=["float32", "float64", "bfloat16", "float16", "int8"])
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="square sizes (default: 1024 2048 4096)")
    p.add_argument("--no-skinny", action="store_true")
    p.add_argument("--isa", default=None, choices=["avx512", "avx2", "scalar"])
    p.add_argument("--backend", default=None, choices=["cxx", "llvm"])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of tiledsl and numpy")
    p.add_argument("--skylakex", action="store_true", help="add numpy with OPENBLAS_CORETYPE=SkylakeX")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--numpy-only", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def shapes(args):
    out = [(n, n, n) for n in (args.sizes or SQUARE)]
    return out if args.no_skinny else out + SKINNY


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def operands(m, n, k, dtype, rng):
    import numpy as np
    if dtype == "int8":
        return (rng.integers(-128, 128, (m, k)).astype(np.int8), rng.integers(-128, 128, (k, n)).astype(np.int8))
    import ml_dtypes
    npdt = {"bfloat16": ml_dtypes.bfloat16}.get(dtype, dtype)
    return rng.standard_normal((m, k)).astype(npdt), rng.standard_normal((k, n)).astype(npdt)


def references(a, b, dtype):
    """name -> callable: numpy's fastest matmul for the dtype, and the second reference (which is
    far slower: timed once, outside the alternating rounds, and only up to 1024^3)."""
    import numpy as np
    if dtype in ("float32", "float64"):
        return {"numpy": lambda: a @ b}
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    refs = {"numpy": lambda: a32 @ b32}
    if a.shape[0] * a.shape[1] * b.shape[1] <= 1 << 30:
        if dtype == "int8":
            refs["ref2"] = lambda: a.astype(np.int32) @ b.astype(np.int32)
        elif dtype == "bfloat16":
            refs["ref2"] = lambda: a @ b
    return refs


def numpy_gflops(m, n, k, dtype):
    import numpy as np
    from timing import fastest
    a, b = operands(m, n, k, dtype, np.random.default_rng(0))
    return 2.0 * m * n * k / fastest(references(a, b, dtype)["numpy"], 3) / 1e9


def skylakex_child(args, threads):
    """numpy's GFLOP/s with OpenBLAS forced to its AVX-512 kernels, from a child process."""
    env = dict(os.environ, OPENBLAS_CORETYPE="SkylakeX", OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--numpy-only", "--dtypes", *args.dtypes]
    if args.sizes:
        cmd += ["--sizes", *map(str, args.sizes)]
    if args.no_skinny:
        cmd.append("--no-skinny")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"(SkylakeX child failed: {out.stderr.strip()[-300:]})")
        return {}
    return {tuple(json.loads(key)): v for key, v in json.loads(out.stdout).items()}


def check(c, a, b, dtype) -> str:
    import numpy as np
    if dtype == "int8":  # exact in float64 (BLAS, not numpy's slow integer matmul): sums < 2**53
        return "ok" if np.array_equal(c, a.astype(np.float64) @ b.astype(np.float64)) else "WRONG"
    ref = a.astype(np.float64) @ b.astype(np.float64)
    err = float(np.abs(c.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))
    tol = {"float32": 1e-4, "float64": 1e-10}.get(dtype, 2e-2)
    return "ok" if err < tol else f"WRONG ({err:.1e})"


def run_one(args, threads: int) -> int:
    """One thread count, in this process (its environment set by the parent)."""
    import numpy as np
    import tiledsl
    from gemm import default_tiles, matmul as example
    from peak import PeakProbe
    from timing import fastest, fastest_alternating
    from tiledsl.jit import cpu_backend
    target = "cpu" + (f" -isa={args.isa}" if args.isa else "") + (f" -backend={args.backend}" if args.backend else "")
    matmul = tiledsl.jit(out_idx=[-1], target=target)(example.factory)
    tgt = tiledsl.Target.parse(target)
    backend = cpu_backend(tgt)
    print(f"== {threads} thread(s), target {target!r} ({backend}, isa {tgt.isa}); CPU: {cpu_name()}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    # The peak is the fastest the probe runs in this process: measured first, then again in the
    # alternating rounds of every GEMM (50 ms calls: shorter ones would time the scheduler more
    # than the cores on a loaded machine), so a quiet moment anywhere in the run raises it.
    probes = {}
    for dtype in args.dtypes:
        kind = _peak_kind(dtype, tgt)
        if kind not in probes:
            probes[kind] = PeakProbe(kind, threads, target)
            probes[kind].fastest(probes[kind].calls_for(0.05), 5)
            print(f"   peak {kind:>8}: {probes[kind].rate / 1e9:7.1f} G op/s before the GEMMs "
                  f"({'vdpbf16ps' if kind == 'bfloat16' else 'vpdpbusd' if kind == 'int8' else 'FMA'})")
    skx = skylakex_child(args, threads) if args.skylakex else {}
    print(f"{'dtype':>9} {'M x N x K':>16} {'tiles':>12} {'tiledsl':>8} {'/peak':>6} {'peak':>6} {'numpy':>8} {'ratio':>6} "
          f"{'ref2':>8} {'ratio':>6}{'  np-SKX ratio' if skx else ''}  check")
    rng = np.random.default_rng(0)
    for dtype in args.dtypes:
        for m, n, k in shapes(args):
            tiles = default_tiles(m, n, k, dtype)
            kernel = matmul(m, n, k, **tiles, dtype=dtype, relu=False)
            a, b = operands(m, n, k, dtype, rng)
            verdict = check(kernel(a, b), a, b, dtype)
            probe = probes[_peak_kind(dtype, tgt)]
            t0 = time.perf_counter()
            kernel(a, b)
            call_s = time.perf_counter() - t0
            n_peak = probe.calls_for(0.05)
            refs = references(a, b, dtype)
            slow = {"ref2": refs.pop("ref2")} if "ref2" in refs else {}
            fns = {"tiledsl": lambda: kernel(a, b), "peak": lambda: probe.call(n_peak), **refs}
            best = fastest_alternating(fns, args.rounds, 3 if call_s < 0.3 else 2)
            best.update({name: fastest(fn, 1) for name, fn in slow.items()})
            gf = {name: 2.0 * m * n * k / t / 1e9 for name, t in best.items() if name != "peak"}
            probe.rate = max(probe.rate, probe.ops(n_peak) / best["peak"])
            peak = probe.rate / 1e9  # the fastest the probe has run so far in this run
            ours = gf["tiledsl"]
            ref2 = f"{gf['ref2']:8.1f} {ours / gf['ref2']:5.2f}x" if "ref2" in gf else f"{'-':>8} {'-':>6}"
            s = skx.get((dtype, m, n, k))
            skx_txt = (f"  {s:6.1f} {ours / s:5.2f}x" if s else "  -      -") if skx else ""
            tile_txt = "x".join(str(tiles[t]) for t in ("block_M", "block_N", "block_K"))
            print(f"{dtype:>9} {f'{m}x{n}x{k}':>16} {tile_txt:>12} {ours:8.1f} {ours / peak:6.2f} {peak:6.0f} "
                  f"{gf['numpy']:8.1f} {ours / gf['numpy']:5.2f}x {ref2}{skx_txt}  {verdict}", flush=True)
    for kind, probe in probes.items():
        print(f"   peak {kind:>8}: {probe.rate / 1e9:7.1f} G op/s, the fastest call of the run")
    print(f"   load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def _peak_kind(dtype: str, tgt) -> str:
    """The probe a dtype's GEMM is measured against: its dot-product instruction where the GEMM
    registry would pick one, else the FMA."""
    from tiledsl.codegen.gemm.cpu_dot import CpuDot
    from tiledsl.codegen.gemm.dot_bf16 import BF16
    from tiledsl.codegen.gemm.dot_vnni import VNNI
    fam = {"bfloat16": BF16, "int8": VNNI}.get(dtype)
    if fam is not None and CpuDot(fam).usable(tgt):
        return dtype
    return "float32" if dtype in ("bfloat16", "int8", "float16") else dtype


def main(argv=None):
    args = parse_args(argv)
    if args.numpy_only:
        res = {json.dumps([d, *s]): numpy_gflops(*s, d) for d in args.dtypes for s in shapes(args)}
        print(json.dumps(res))
        return 0
    if args.child:
        return run_one(args, args.threads[0])
    rc = 0
    for threads in args.threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
        cmd = [sys.executable, __file__, "--child", "--threads", str(threads), "--dtypes", *args.dtypes,
               "--rounds", str(args.rounds)]
        cmd += ["--sizes", *map(str, args.sizes)] if args.sizes else []
        cmd += [f"--{flag}" for flag in ("no_skinny", "skylakex") if getattr(args, flag)]
        cmd += [x for opt in ("isa", "backend") if getattr(args, opt) for x in (f"--{opt}", getattr(args, opt))]
        rc |= subprocess.run([c.replace("no_skinny", "no-skinny") for c in cmd], env=env).returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())

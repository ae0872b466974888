"""The host's arithmetic peak, measured by a tiledsl kernel compiled like the GEMM it is compared
with: same backend (g++ or LLVM), same ISA, same thread pool, one block per thread.

    python benchmarks/peak.py                       # float32 and float64, $OMP_NUM_THREADS threads
    OMP_NUM_THREADS=1 python benchmarks/peak.py --kinds float32 bfloat16 int8 --backend llvm

The block's body is the probe of `tiledsl.codegen.gemm.cpu_peak` (independent chains of FMA,
vdpbf16ps or vpdpbusd, no memory operands), so the figure is what the cores can issue, not what a
GEMM's loads allow. Timing is the fastest of a few calls: interference on a shared machine only
ever adds time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import tiledsl
from tiledsl import ir
from tiledsl.codegen.gemm.cpu_peak import PEAK_KINDS, peak_ops_per_iter, render_llvm_peak, render_peak
from tiledsl.jit import cpu_backend
from tiledsl.target import Target

_OUT_DTYPE = {"float32": "float32", "float64": "float64", "bfloat16": "float32", "int8": "int32"}
_STRIDE = 16  # out elements per block: each block's slot in its own cache line


def peak_kernel(kind: str, threads: int, target: str = "cpu"):
    """A JITKernel `(n, out)` whose `threads` blocks each run the probe `n` times."""
    tgt = Target.parse(target)
    backend = cpu_backend(tgt)
    name = f"tdsl_peak_{tgt.isa}_{kind}"
    render = render_llvm_peak if backend == "llvm" else render_peak
    out = ir.Buffer("out", (threads * _STRIDE,), ir.dtype(_OUT_DTYPE[kind]))
    n, bx = ir.Var("n", ir.dtype("int64")), ir.Var("bx")
    call = ir.ExternCall(name, (n, ir.BufferPtr(out, bx * _STRIDE)), render(name, tgt.isa, kind))
    # The probe writes `out` through a pointer; the Store (a done flag beside its result) is what
    # tells the code generators that `out` is written, so it is not passed as const.
    done = ir.Store(out, (bx * _STRIDE + 2,), ir.const(1, out.dtype))
    body = ir.Kernel((ir.const(threads),), (bx,), 1, (), ir.seq(call, done))
    func = ir.PrimFunc(f"peak_{kind}", (n, out), body)
    return tiledsl.compile(func, target=tgt, backend=backend), tgt


class PeakProbe:
    """The peak kernel with its output buffer: `call(n)` runs `n` iterations on every thread,
    `ops(n)` is what they do, `calls_for(seconds)` the n of a call about that long."""

    def __init__(self, kind: str, threads: int, target: str = "cpu"):
        self.kernel, tgt = peak_kernel(kind, threads, target)
        self.out = np.full(threads * _STRIDE, 1 if kind == "int8" else 0.5, dtype=_OUT_DTYPE[kind])
        self.per_iter = peak_ops_per_iter(tgt.isa, kind) * threads
        self.rate = 0.0  # the best operations per second seen so far

    def call(self, n: int) -> None:
        self.kernel(n, self.out)

    def ops(self, n: int) -> float:
        return float(self.per_iter * n)

    def fastest(self, n: int, calls: int) -> float:
        best = float("inf")
        for _ in range(calls):
            t0 = time.perf_counter()
            self.call(n)
            best = min(best, time.perf_counter() - t0)
        self.rate = max(self.rate, self.ops(n) / best)
        return best

    def calls_for(self, seconds: float) -> int:
        """Iterations of a call about `seconds` long at the best rate seen; calibrates first, each
        step on the fastest of three calls (one slow call, a preempted thread or a pool waking up,
        must not stop the calibration at a tiny n)."""
        if not self.rate:
            n = 1000
            while self.fastest(n, 3) < seconds / 4 and n < 1 << 34:
                n *= 4
        return max(1000, int(seconds * self.rate / self.per_iter))


def measure_peak(kind: str, threads: int, target: str = "cpu", seconds: float = 0.05,
                 reps: int = 10) -> float:
    """Giga-operations per second (a multiply-add is two) of `threads` cores issuing the kind's
    widest multiply-add back to back: the fastest of `reps` calls of about `seconds`."""
    probe = PeakProbe(kind, threads, target)
    probe.fastest(probe.calls_for(seconds), reps)
    return probe.rate / 1e9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", default=["float32", "float64"], choices=list(PEAK_KINDS))
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    p.add_argument("--backend", default=None, choices=["cxx", "llvm"])
    p.add_argument("--isa", default=None, choices=["avx512", "avx2", "scalar"])
    args = p.parse_args(argv)
    target = "cpu" + (f" -isa={args.isa}" if args.isa else "") + (f" -backend={args.backend}" if args.backend else "")
    for kind in args.kinds:
        print(f"{kind:>9} threads={args.threads} {target!r}: {measure_peak(kind, args.threads, target):7.1f} G op/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

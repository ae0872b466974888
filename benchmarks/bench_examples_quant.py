"""The split-K GEMM and the int4 dequantising GEMV / GEMM examples against the obvious numpy
formulations (and split-K against tiledsl's plain GEMM), measured in the same run.

    python benchmarks/bench_examples_quant.py                  # every case, 2 threads
    python benchmarks/bench_examples_quant.py --only dequant --rounds 5

Each case is checked first, then tiledsl and the reference are timed alternately for --rounds
rounds, each round the fastest of --reps runs after a warm-up; the fastest run of each is
reported (the machine may be shared: interference only adds time). ratio = reference time /
tiledsl time, so > 1 means tiledsl is faster. tiledsl runs on --threads OpenMP threads, numpy's
matmul on as many OpenBLAS threads; numpy's elementwise dequantisation uses one.
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, HERE)
from timing import fastest_alternating  # noqa: E402


def cases(rng):
    """(name, shape text, reference name, tiledsl call, reference call, relative tolerance)."""
    import numpy as np
    import dequant_gemm as dq
    import gemm
    import splitk_gemm as sk

    m = n = 256
    k = 16384
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    big = dict(block_M=256, block_N=256, block_K=128)  # one block at 256 x 256 without a split
    split = sk.splitk_matmul(m, n, k, **big, split_k=4)
    plain_big = gemm.matmul(m, n, k, **big, relu=False)
    plain_default = gemm.matmul(m, n, k, block_M=64, block_N=128, block_K=256, relu=False)
    ours = lambda: sk.splitk_gemm(split, a, b)  # noqa: E731
    shape = f"{m}x{n}x{k}"
    yield "splitk4 256^2t", shape, "numpy a @ b", ours, lambda: a @ b, 1e-5
    yield "splitk4 256^2t", shape, "plain 256^2 tiles", ours, lambda: plain_big(a, b), 1e-5
    yield "splitk4 256^2t", shape, "plain 64x128 tiles", ours, lambda: plain_default(a, b), 1e-5

    n = k = 4096
    group = 128
    packed, scales = dq.quantize(rng.standard_normal((n, k), dtype=np.float32), group)
    w = dq.dequantize(packed, scales, group)
    for m in (1, 256):
        x = rng.standard_normal(k if m == 1 else (m, k), dtype=np.float32)
        kernel = dq.dequant_gemv(n, k, group) if m == 1 else dq.dequant_gemm(m, n, k, group)
        name = "dequant gemv" if m == 1 else "dequant gemm"
        ours = lambda kernel=kernel, x=x: kernel(x, packed, scales)  # noqa: E731
        shape = f"{m}x{n}x{k} g{group}"
        yield name, shape, "numpy deq + mm", ours, lambda x=x: dq.reference(x, packed, scales, group), 1e-5
        yield name, shape, "numpy mm (pre-deq)", ours, lambda x=x: x @ w.T, 1e-5


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", nargs="+", default=None, help="case names (prefixes), e.g. splitk dequant")
    args = p.parse_args(argv)
    # Both libraries read their thread counts when they load.
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    import numpy as np

    print(f"threads={args.threads}; fastest of {args.rounds} alternating rounds x {args.reps} runs; "
          f"ratio = reference time / tiledsl time (> 1: tiledsl faster)")
    print(f"{'case':>15} {'shape':>20} {'reference':>19} {'tiledsl':>10} {'reference':>10} {'ratio':>6}  check")
    ok = True
    for name, shape, ref_name, ours, theirs, rtol in cases(np.random.default_rng(0)):
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        got, want = ours(), theirs()
        err = float(np.abs(got - want).max() / np.abs(want).max())
        ok &= err < rtol
        best = fastest_alternating({"tiledsl": ours, "reference": theirs}, args.rounds, args.reps)
        print(f"{name:>15} {shape:>20} {ref_name:>19} {best['tiledsl'] * 1e3:7.2f} ms "
              f"{best['reference'] * 1e3:7.2f} ms {best['reference'] / best['tiledsl']:5.2f}x  "
              f"{'ok' if err < rtol else f'WRONG ({err:.1e})'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

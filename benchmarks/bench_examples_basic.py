"""The basic examples (GEMM + bias + activation, batched GEMM, softmax, LayerNorm / RMSNorm)
against the obvious numpy formulation, measured in the same run.

    python benchmarks/bench_examples_basic.py                   # every case, 2 threads
    python benchmarks/bench_examples_basic.py --only softmax layer_norm --rounds 5

Each case is checked against numpy first, then tiledsl and numpy are timed alternately for
--rounds rounds, each round the fastest of --reps runs after a warm-up; the fastest run of each
is reported (the machine may be shared: interference only adds time). ratio = numpy time /
tiledsl time, so > 1 means tiledsl is faster. tiledsl runs on --threads OpenMP threads, numpy's
matmul on as many OpenBLAS threads; numpy's elementwise operations and reductions use one.
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
    """(name, shape text, tiledsl call, numpy call, relative tolerance of the check)."""
    import numpy as np
    import batched_gemm
    import gemm_epilogue
    import norms
    import softmax
    from tiledsl.autotune import default_gemm_tiles

    n = 1024
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    bias = rng.standard_normal(n, dtype=np.float32)
    for act in ("relu", "gelu", "silu"):
        k = gemm_epilogue.gemm_bias_act(n, n, n, **default_gemm_tiles(n, n, n), act=act)
        yield (f"gemm+bias+{act}", f"{n}x{n}x{n}", lambda k=k: k(a, b, bias),
               lambda act=act: gemm_epilogue.reference(a, b, bias, act), 1e-5)

    bt, m = 8, 512
    x, y = rng.standard_normal((bt, m, m), dtype=np.float32), rng.standard_normal((bt, m, m), dtype=np.float32)
    k_bmm = batched_gemm.batched_matmul(bt, m, m, m, **default_gemm_tiles(m, m, m))
    yield "batched_gemm", f"{bt}x{m}x{m}x{m}", lambda: k_bmm(x, y), lambda: np.matmul(x, y), 1e-5

    rows, cols = 4096, 4096
    s = (rng.standard_normal((rows, cols)) * 4).astype(np.float32)
    for name in ("softmax", "online_softmax"):
        k = getattr(softmax, name)(rows, cols)
        yield name, f"{rows}x{cols}", lambda k=k: k(s), lambda: softmax.reference(s), 1e-4

    w, c = rng.standard_normal(cols, dtype=np.float32), rng.standard_normal(cols, dtype=np.float32)
    k_ln, k_rms = norms.layer_norm(rows, cols), norms.rms_norm(rows, cols)
    yield "layer_norm", f"{rows}x{cols}", lambda: k_ln(s, w, c), lambda: norms.layer_norm_ref(s, w, c), 1e-5
    yield "rms_norm", f"{rows}x{cols}", lambda: k_rms(s, w), lambda: norms.rms_norm_ref(s, w), 1e-5


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--only", nargs="+", default=None, help="case names (prefixes), e.g. gemm softmax")
    args = p.parse_args(argv)
    # Both libraries read their thread counts when they load.
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    import numpy as np

    print(f"threads={args.threads}; fastest of {args.rounds} alternating rounds x {args.reps} runs; "
          f"ratio = numpy time / tiledsl time (> 1: tiledsl faster)")
    print(f"{'case':>16} {'shape':>16} {'tiledsl':>10} {'numpy':>10} {'ratio':>6}  check")
    ok = True
    for name, shape, ours, theirs, rtol in cases(np.random.default_rng(0)):
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        got, want = ours(), theirs()
        err = float(np.abs(got - want).max() / np.abs(want).max())
        ok &= err < rtol
        best = fastest_alternating({"tiledsl": ours, "numpy": theirs}, args.rounds, args.reps)
        print(f"{name:>16} {shape:>16} {best['tiledsl'] * 1e3:7.2f} ms {best['numpy'] * 1e3:7.2f} ms "
              f"{best['numpy'] / best['tiledsl']:5.2f}x  {'ok' if err < rtol else f'WRONG ({err:.1e})'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

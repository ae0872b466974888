"""The FlashAttention, conv2d and top-k examples against their plain numpy formulations,
measured in the same run.

    python benchmarks/bench_examples_attention.py               # all three, 2 threads
    python benchmarks/bench_examples_attention.py --threads 1 --only attention

attention: softmax(Q K^T / sqrt(d) [+ causal mask]) V with numpy matmuls (OpenBLAS) in float32,
  the whole seq x seq score matrix materialised; tiledsl streams it tile by tile.
conv2d: numpy builds the im2col matrix (a strided window view, then one copy) and calls matmul;
  tiledsl gathers each im2col tile into shared memory inside the GEMM.
topk: numpy's argpartition of each row, then a sort of the k winners; tiledsl keeps the k best
  of each row sorted in a fragment while streaming the row.

Timing: the two sides alternate for --rounds rounds, each a warm-up and --reps runs; the
fastest run of each is reported (the machine may be shared: interference only adds time).
Every result is checked against numpy first.
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, HERE)
from timing import fastest_alternating  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", nargs="+", choices=["attention", "conv2d", "topk"],
                   default=["attention", "conv2d", "topk"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=3)
    return p.parse_args(argv)


def report(label: str, ok: bool, times: dict) -> None:
    ours, theirs = times["tiledsl"], times["numpy"]
    print(f"{label:>34} {ours * 1e3:9.2f} ms {theirs * 1e3:9.2f} ms {theirs / ours:6.2f}x  "
          f"{'ok' if ok else 'WRONG'}")


def bench_attention(args, np):
    from flash_attention import attention_ref, flash_attention
    rng = np.random.default_rng(0)
    shape = (1, 8, 1024, 64)
    q, k, v = (rng.standard_normal(shape, dtype=np.float32) for _ in range(3))
    for is_causal in (False, True):
        kernel = flash_attention(*shape, is_causal=is_causal)
        ok = float(np.abs(kernel(q, k, v) - attention_ref(q, k, v, is_causal)).max()) < 1e-4
        times = fastest_alternating({"tiledsl": lambda: kernel(q, k, v),
                         "numpy": lambda: attention_ref(q, k, v, is_causal)}, args.rounds, args.reps)
        report(f"attention b,h,s,d={','.join(map(str, shape))}{' causal' if is_causal else ''}",
               ok, times)


def bench_conv2d(args, np):
    from conv2d import conv2d, conv2d_ref
    rng = np.random.default_rng(0)
    # N, H, W, C, F, K, stride, padding: a ResNet-50 stage-1 3x3, and a strided one
    for N, H, W, C, F, K, s, p in [(8, 56, 56, 64, 64, 3, 1, 1), (8, 56, 56, 64, 128, 3, 2, 1)]:
        x = rng.standard_normal((N, H, W, C), dtype=np.float32)
        w = rng.standard_normal((K, K, C, F), dtype=np.float32)
        kernel = conv2d(N, H, W, C, F, K, K, s, p)
        ref = conv2d_ref(x, w, s, p)
        ok = float(np.abs(kernel(x, w) - ref).max() / np.abs(ref).max()) < 1e-5
        times = fastest_alternating({"tiledsl": lambda: kernel(x, w), "numpy": lambda: conv2d_ref(x, w, s, p)},
                        args.rounds, args.reps)
        report(f"conv2d {N}x{H}x{W}x{C} -> {F} {K}x{K} s{s} p{p}", ok, times)


def bench_topk(args, np):
    from topk import topk, topk_exact, topk_ref
    rng = np.random.default_rng(0)
    M, N = 4096, 4096
    x = rng.standard_normal((M, N), dtype=np.float32)
    for k in (8, 32):
        kernel = topk(M, N, k)
        vals, idx = kernel(x)
        want_vals, want_idx = topk_exact(x, k)
        ok = np.array_equal(vals, want_vals) and np.array_equal(idx, want_idx)
        times = fastest_alternating({"tiledsl": lambda: kernel(x), "numpy": lambda: topk_ref(x, k)},
                        args.rounds, args.reps)
        report(f"topk {M}x{N} k={k}", ok, times)


def main(argv=None) -> int:
    args = parse_args(argv)
    # Both libraries read their thread counts when they load.
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    import numpy as np
    print(f"threads={args.threads}; fastest of {args.rounds} alternating rounds x {args.reps} runs; "
          f"ratio = numpy time / tiledsl time (> 1: tiledsl is faster)")
    print(f"{'example, shape':>34} {'tiledsl':>12} {'numpy':>12} {'ratio':>7}  check")
    benches = {"attention": bench_attention, "conv2d": bench_conv2d, "topk": bench_topk}
    for name in args.only:
        benches[name](args, np)
    return 0


if __name__ == "__main__":
    sys.exit(main())

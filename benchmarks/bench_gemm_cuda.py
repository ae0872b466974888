"""CUDA GEMM: tiledsl against cuBLAS (torch.matmul) measured in the same run, on one GPU.

    python benchmarks/bench_gemm_cuda.py                         # fp16 + bf16, 1024..8192
    python benchmarks/bench_gemm_cuda.py --dtypes float16 --sizes 4096 --block 128 128 32 --threads 256

Prints TFLOP/s for tiledsl and cuBLAS and the ratio, plus the softmax example against
torch.softmax. Timing: CUDA events around `--reps` launches after `--warmup` launches, median.
Needs torch with CUDA (cupy arrays work too, but torch gives cuBLAS and events in one package).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    p.add_argument("--sizes", nargs="+", type=int, default=[1024, 2048, 4096, 8192])
    p.add_argument("--block", nargs=3, type=int, default=[128, 128, 32], metavar=("BM", "BN", "BK"))
    p.add_argument("--threads", type=int, default=256)
    p.add_argument("--stages", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=10)
    return p.parse_args(argv)


def cuda_ms(fn, warmup: int, reps: int) -> float:
    import torch
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    import tiledsl
    from test_cuda import matmul, softmax  # the kernels the tests hold to numpy

    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing to measure")
        return 1
    print(f"device: {torch.cuda.get_device_name()}  block {args.block}  threads {args.threads}  "
          f"stages {args.stages}")
    print(f"{'dtype':9} {'size':>6} {'tiledsl TF/s':>13} {'cuBLAS TF/s':>12} {'ratio':>6}")
    bm, bn, bk = args.block
    for dtype in args.dtypes:
        tdt = getattr(torch, dtype)
        for n in args.sizes:
            k = tiledsl.compile(matmul(n, n, n, bm=bm, bn=bn, bk=bk, dtype=dtype, threads=args.threads,
                                       stages=args.stages), target="cuda")
            a = torch.randn(n, n, device="cuda").to(tdt)
            b = torch.randn(n, n, device="cuda").to(tdt)
            c = torch.empty(n, n, device="cuda", dtype=torch.float32)
            k(a, b, c)
            err = (c - a.float() @ b.float()).abs().max().item()
            t_ours = cuda_ms(lambda: k(a, b, c), args.warmup, args.reps)
            t_ref = cuda_ms(lambda: torch.matmul(a, b), args.warmup, args.reps)
            flops = 2.0 * n ** 3
            print(f"{dtype:9} {n:>6} {flops / t_ours / 1e9:>13.1f} {flops / t_ref / 1e9:>12.1f} "
                  f"{t_ref / t_ours:>6.2f}   max err {err:.2e}")
    s = tiledsl.compile(softmax(4096, 1024, bm=4, threads=256), out_idx=[-1], target="cuda")
    x = torch.randn(4096, 1024, device="cuda")
    t_ours = cuda_ms(lambda: s(x), args.warmup, args.reps)
    t_ref = cuda_ms(lambda: torch.softmax(x, 1), args.warmup, args.reps)
    print(f"softmax 4096x1024 fp32: tiledsl {t_ours:.3f} ms, torch {t_ref:.3f} ms, ratio {t_ref / t_ours:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

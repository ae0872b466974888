"""Cold compile of the example GEMM for CUDA: NVRTC against nvcc (no GPU needed).

    python benchmarks/bench_cuda_compile.py [rounds] [arch]

Each measurement is a fresh process with an empty kernel cache (the CUDA module runtime, built
once per machine, is kept), timing `matmul(1024, 1024, 1024)` for target cuda: the frontend,
passes, code generation, the compilers and loading; `import tiledsl` is not counted. Rounds
alternate the two compilers; the fastest and the median of each are printed.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = r'''
import sys, time, json
sys.path.insert(0, sys.argv[1])
import tiledsl
from gemm import matmul
from tiledsl.jit import JITFactory
f = JITFactory(matmul.factory, [-1], "cuda -arch=%s -compiler=" + sys.argv[2])
t0 = time.perf_counter()
f(1024, 1024, 1024)
print(json.dumps(time.perf_counter() - t0))
'''


def measure(compiler: str, arch: str, cache: str) -> float:
    for kind in ("cuda", "cuda-nvrtc"):
        shutil.rmtree(os.path.join(cache, "kernels", kind), ignore_errors=True)
    env = {**os.environ, "TILEDSL_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD % arch, str(ROOT / "examples"), compiler],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def main(rounds: int = 5, arch: str = "sm_90a") -> int:
    with tempfile.TemporaryDirectory(prefix="tiledsl-bench-") as cache:
        measure("nvrtc", arch, cache)  # builds the module runtime (once per machine)
        times = {"nvrtc": [], "nvcc": []}
        for r in range(rounds):
            for c in (["nvrtc", "nvcc"] if r % 2 == 0 else ["nvcc", "nvrtc"]):
                times[c].append(measure(c, arch, cache))
    for c, ts in times.items():
        print(f"{c:6s} {arch}: fastest {min(ts) * 1e3:7.1f} ms, median {statistics.median(ts) * 1e3:7.1f} ms "
              f"({rounds} cold compiles)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*(int(a) if a.isdigit() else a for a in sys.argv[1:])))

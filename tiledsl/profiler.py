"""Timing kernels: `tiledsl.bench(fn, *args)` and `kernel.bench(*args)`.

    r = tiledsl.bench(kernel, a, b, c, warmup=3, rep=20)
    print(r.median, r.min, r.max)          # milliseconds

`warmup` and `rep` count calls (unlike Triton's `do_bench`, whose arguments are milliseconds):
a fixed number of calls makes two runs of a benchmark do the same work.

On the CPU each timed call starts with cold caches when `flush=True`: a buffer twice the size
of the last-level cache is written before it (outside the timing), so a small problem is not
timed out of the cache its previous call warmed, which a real workload rarely enjoys. Other
cores' private L2s may keep lines; the shared L3 does not. On a GPU (any argument on CUDA,
through torch or cupy) calls are timed with CUDA events on the current stream, and the GPU's
L2 is flushed the same way.
"""
from __future__ import annotations

import functools
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

__all__ = ["bench", "BenchResult", "BenchTimeout", "last_level_cache_bytes"]


@dataclass(frozen=True)
class BenchResult:
    """Timings of `rep` calls, in milliseconds."""

    median: float
    min: float
    max: float
    mean: float
    times: Tuple[float, ...]

    @staticmethod
    def of(times_ms: Sequence[float]) -> "BenchResult":
        t = tuple(float(x) for x in times_ms)
        return BenchResult(statistics.median(t), min(t), max(t), statistics.fmean(t), t)

    def __str__(self) -> str:
        return (f"median {self.median:.4g} ms (min {self.min:.4g}, max {self.max:.4g}, "
                f"{len(self.times)} runs)")


class BenchTimeout(TimeoutError):
    """The calls took longer than the `timeout` given to `bench`."""


def bench(fn: Callable, *args: Any, warmup: int = 3, rep: int = 20, flush: bool = True,
          timeout: Optional[float] = None, clock: Optional[Callable[[], int]] = None) -> BenchResult:
    """Call `fn(*args)` `warmup` times untimed, then `rep` times timed; median / min / max in ms.

    `timeout` (seconds, warm-up included) is checked after every call: a call in C cannot be
    interrupted, so a kernel slower than `timeout` costs one call before `BenchTimeout`.
    `clock` (nanoseconds) replaces `time.perf_counter_ns` for CPU timing, e.g. in tests."""
    if rep < 1 or warmup < 0:
        raise ValueError(f"tiledsl.bench: need rep >= 1 and warmup >= 0, got rep={rep}, warmup={warmup}")
    gpu = _cuda_backend(args)
    if gpu is not None:
        return _bench_cuda(gpu, fn, args, warmup, rep, flush, timeout)
    clock = clock or time.perf_counter_ns
    start = time.monotonic()
    for _ in range(warmup):
        fn(*args)
        _check_timeout(start, timeout)
    times = []
    for _ in range(rep):
        if flush:
            _flush_cpu()
        t0 = clock()
        fn(*args)
        times.append((clock() - t0) / 1e6)
        _check_timeout(start, timeout)
    return BenchResult.of(times)


def _check_timeout(start: float, timeout: Optional[float]) -> None:
    if timeout is not None and time.monotonic() - start > timeout:
        raise BenchTimeout(f"benchmark exceeded its timeout of {timeout:g} s")


@functools.lru_cache(maxsize=None)
def last_level_cache_bytes() -> int:
    """The largest CPU cache of cpu0 per sysfs (32 MiB where sysfs does not say)."""
    best = 0
    for d in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (d / "size").read_text().strip()
        except OSError:
            continue
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
        digits = text[:-1] if unit != 1 else text
        if digits.isdigit():
            best = max(best, int(digits) * unit)
    return best or (32 << 20)


@functools.lru_cache(maxsize=1)
def _flush_buffer() -> np.ndarray:
    return np.empty(min(2 * last_level_cache_bytes(), 512 << 20) // 8, dtype=np.int64)


def _flush_cpu() -> None:
    buf = _flush_buffer()
    buf.fill(len(buf))  # writes every line: evicts the kernel's data from the shared cache


# ---- CUDA ----

def _cuda_backend(args: Sequence[Any]) -> Optional[str]:
    """"torch" or "cupy" when an argument lives on a CUDA device, else None."""
    for a in args:
        dev = getattr(a, "__dlpack_device__", None)
        if dev is None:
            continue
        try:
            kind, _ = dev()
        except Exception:  # noqa: BLE001 - objects with a broken protocol are not ours to judge
            continue
        if int(kind) in (2, 13):  # kDLCUDA, kDLCUDAManaged
            return type(a).__module__.split(".")[0]
    return None


def _bench_cuda(lib: str, fn: Callable, args: Sequence[Any], warmup: int, rep: int, flush: bool,
                timeout: Optional[float]) -> BenchResult:
    if lib == "torch":
        import torch
        make_event = functools.partial(torch.cuda.Event, enable_timing=True)
        sync, elapsed = torch.cuda.synchronize, lambda s, e: s.elapsed_time(e)
        cache = torch.empty(256 << 20, dtype=torch.int8, device="cuda") if flush else None
        zero = (lambda: cache.zero_()) if flush else None
    elif lib == "cupy":
        import cupy
        make_event = cupy.cuda.Event
        sync, elapsed = cupy.cuda.Device().synchronize, cupy.cuda.get_elapsed_time
        cache = cupy.empty(256 << 20, dtype=cupy.int8) if flush else None
        zero = (lambda: cache.fill(0)) if flush else None
    else:
        raise TypeError(f"tiledsl.bench: CUDA arrays from {lib!r} are not supported; use torch or cupy")
    start = time.monotonic()
    for _ in range(warmup):
        fn(*args)
    sync()
    _check_timeout(start, timeout)
    pairs = []
    for _ in range(rep):
        if zero is not None:
            zero()  # evict the previous call's data from L2
        s, e = make_event(), make_event()
        s.record()
        fn(*args)
        e.record()
        pairs.append((s, e))
    sync()
    _check_timeout(start, timeout)
    return BenchResult.of([elapsed(s, e) for s, e in pairs])

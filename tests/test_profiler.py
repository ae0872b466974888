"""tiledsl.bench / kernel.bench: call counts, statistics in ms, cache flushing, timeouts (a fake
clock stands in for time: nothing here depends on how fast the machine is)."""

import numpy as np
import pytest

import tiledsl
import tiledsl.language as T
from tiledsl import profiler


class FakeClock:
    """Each call of the measured function advances the clock by the next step (ms)."""

    def __init__(self, steps_ms):
        self.steps = list(steps_ms)
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def run(self, *args):
        self.now += int(self.steps.pop(0) * 1e6)


def test_statistics_in_ms_and_call_counts(monkeypatch):
    flushes = []
    monkeypatch.setattr(profiler, "_flush_cpu", lambda: flushes.append(1))
    clock = FakeClock([50, 50] + [3, 1, 2, 9, 4])
    r = tiledsl.bench(clock.run, warmup=2, rep=5, clock=clock)
    assert r.times == (3.0, 1.0, 2.0, 9.0, 4.0)  # warm-up calls are not timed
    assert (r.median, r.min, r.max, r.mean) == (3.0, 1.0, 9.0, 3.8)
    assert len(flushes) == 5 and not clock.steps
    assert "median 3 ms" in str(r)


def test_no_flush_when_asked(monkeypatch):
    flushes = []
    monkeypatch.setattr(profiler, "_flush_cpu", lambda: flushes.append(1))
    clock = FakeClock([1] * 4)
    tiledsl.bench(clock.run, warmup=1, rep=3, flush=False, clock=clock)
    assert flushes == []


def test_timeout_stops_after_the_call_that_exceeds_it():
    calls = []
    with pytest.raises(profiler.BenchTimeout, match="timeout"):
        tiledsl.bench(lambda: calls.append(1), warmup=5, rep=5, timeout=-1.0)
    assert len(calls) == 1


def test_bad_counts_are_rejected():
    with pytest.raises(ValueError, match="rep >= 1"):
        tiledsl.bench(lambda: None, rep=0)


def test_flush_buffer_covers_the_last_level_cache():
    llc = profiler.last_level_cache_bytes()
    assert llc >= 1 << 20
    assert profiler._flush_buffer().nbytes >= min(2 * llc, 512 << 20)


@tiledsl.jit(out_idx=[-1])
def add(N, block=64):
    @T.prim_func
    def main(A: T.Tensor((N,), "float32"), B: T.Tensor((N,), "float32"), C: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(N, block)) as bx:
            for i in T.Parallel(block):
                C[bx * block + i] = A[bx * block + i] + B[bx * block + i]
    return main


def test_kernel_bench_allocates_outputs_once_and_computes(monkeypatch):
    k = add(256)
    a = np.arange(256, dtype=np.float32)
    b = np.ones(256, np.float32)
    seen = []
    real = k._fn
    monkeypatch.setattr(k, "_fn", lambda *args: (seen.append(args[2]), real(*args)))
    r = k.bench(a, b, warmup=1, rep=4)
    assert len(r.times) == 4 and r.min <= r.median <= r.max
    assert len(seen) == 5 and all(c is seen[0] for c in seen)  # one output array, reused
    np.testing.assert_array_equal(seen[0], a + b)
    with pytest.raises(TypeError, match="add: expects 2 inputs"):
        k.bench(a)

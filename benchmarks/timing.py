"""Timing shared by the benchmark scripts."""
import time


def fastest(fn, reps: int) -> float:
    """The shortest of `reps` runs after a warm-up: on a shared machine the best run is the one
    least disturbed. Sleeps first, so the other library's spinning threads are asleep."""
    time.sleep(0.3)
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best

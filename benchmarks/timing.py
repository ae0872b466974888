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


def fastest_alternating(fns: dict, rounds: int, reps: int) -> dict:
    """name -> the fastest run of each callable over `rounds` rounds of `fastest`, the order
    reversed every other round so that neither always goes first."""
    best = dict.fromkeys(fns, float("inf"))
    order = list(fns.items())
    for r in range(rounds):
        for name, fn in order[::-1] if r % 2 else order:
            best[name] = min(best[name], fastest(fn, reps))
    return best

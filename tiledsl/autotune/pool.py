"""Compiling configs in parallel: a pool of forked processes, one config per task.

A worker compiles through the factory itself (`factory(*args, **config)`), which leaves the
library in the disk cache; the parent then loads it from there in milliseconds. Workers are
forked, so the factory (often a closure or a function of `__main__`, which another start method
could not pickle) is simply inherited. Each task runs under a SIGALRM `timeout`, which also
stops a stuck C++ compiler (subprocess.run kills its child when interrupted). Where fork is
missing, configs compile one after another in this process, without a timeout.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from typing import Any, Callable, Dict, Mapping, Sequence, Tuple

from ..errors import TileDSLError

__all__ = ["compile_configs", "Outcome"]

# (status, reason, seconds)
Outcome = Tuple[str, str, float]
_JOBS: Dict[int, tuple] = {}


class _Timeout(BaseException):
    """Raised by the SIGALRM handler. Not an Exception: a broad `except Exception` on the way
    (Cython glue, a fallback in a probe) would otherwise turn a timeout into another error, or
    swallow it."""


def compile_configs(factory: Callable, args: Sequence[Any], kwargs: Mapping[str, Any],
                    configs: Dict[int, Dict[str, Any]], timeout: float,
                    on_done: Callable[[int, Outcome], None]) -> Dict[int, Outcome]:
    """Compile `configs` (index -> config) into the disk cache; the outcome of each index."""
    if not configs:
        return {}
    workers = max(1, min(os.cpu_count() or 1, len(configs)))
    if "fork" not in multiprocessing.get_all_start_methods():
        return _serially(factory, args, kwargs, configs, on_done)
    job = id(configs)
    _JOBS[job] = (factory, tuple(args), dict(kwargs), configs, timeout)
    outcomes: Dict[int, Outcome] = {}
    pool = multiprocessing.get_context("fork").Pool(workers)
    try:
        results = pool.imap_unordered(_work, [(job, i) for i in configs])
        # Each task stops itself at `timeout`; this bound only catches a worker that cannot.
        deadline = time.monotonic() + (timeout + 30) * -(-len(configs) // workers)
        for _ in configs:
            try:
                i, outcome = results.next(timeout=max(0.1, deadline - time.monotonic()))
            except multiprocessing.TimeoutError:
                break
            outcomes[i] = outcome
            on_done(i, outcome)
        for i in configs:
            if i not in outcomes:
                outcomes[i] = ("timeout", f"no answer from the compile worker within {timeout:g} s", timeout)
                on_done(i, outcomes[i])
    finally:
        pool.terminate()
        pool.join()
        del _JOBS[job]
    return outcomes


def _work(task: Tuple[int, int]) -> Tuple[int, Outcome]:
    job, i = task
    factory, args, kwargs, configs, timeout = _JOBS[job]
    return i, _compile_one(factory, args, {**kwargs, **configs[i]}, timeout)


def _compile_one(factory: Callable, args: Sequence[Any], kwargs: Mapping[str, Any],
                 timeout: float) -> Outcome:
    def expire(signum, frame):
        raise _Timeout()

    t0 = time.perf_counter()
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        factory(*args, **kwargs)
        took = time.perf_counter() - t0
        if took > timeout:  # the alarm came while Python could not raise it (a finaliser, C code)
            return ("timeout", f"compiling took longer than {timeout:g} s", took)
        return ("ok", "", took)
    except _Timeout:
        return ("timeout", f"compiling took longer than {timeout:g} s", time.perf_counter() - t0)
    except TileDSLError as e:
        return ("compile_error", f"{type(e).__name__}: {e}", time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001 - any failure of one config is that config's result
        where = traceback.extract_tb(e.__traceback__)[-1]
        return ("compile_error", f"{type(e).__name__}: {e} (at {where.filename}:{where.lineno})",
                time.perf_counter() - t0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _serially(factory: Callable, args: Sequence[Any], kwargs: Mapping[str, Any],
              configs: Dict[int, Dict[str, Any]], on_done: Callable[[int, Outcome], None]) -> Dict[int, Outcome]:
    outcomes: Dict[int, Outcome] = {}
    for i, cfg in configs.items():
        t0 = time.perf_counter()
        try:
            factory(*args, **{**kwargs, **cfg})
            outcomes[i] = ("ok", "", time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001
            outcomes[i] = ("compile_error", f"{type(e).__name__}: {e}", time.perf_counter() - t0)
        on_done(i, outcomes[i])
    return outcomes

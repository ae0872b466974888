"""`@tiledsl.autotune`: pick the fastest config of a `@tiledsl.jit` kernel factory, reproducibly.

    @tiledsl.autotune(configs={"block_M": [32, 64], "block_N": [64, 128]}, ref_prog=lambda a, b: a @ b)
    @tiledsl.jit(out_idx=[-1])
    def matmul(M, N, K, block_M=64, block_N=64, block_K=32): ...

    kernel = matmul(512, 512, 512)          # tuned (or answered from stored results), then cached
    result = matmul.tune(512, 512, 512)     # .config, .latency (ms), .kernel, .table()

A run: every config goes through the frontend (milliseconds) to get its result key; configs
with a stored result are not touched again; the others compile in parallel (`pool.py`), then,
one after another in this process, run once on seeded inputs with NaN-filled outputs and are
compared with `ref_prog` when given, then timed with `tiledsl.bench` on fresh outputs. Failed
and timed-out configs are reported in the table with their reason and skipped; the winner is
chosen by `choose.choose` (fastest minimum, near-ties to the config listed first).

With `executor="ray"` the same configs are built and measured as tasks on a Ray cluster
(`ray_executor.py`); records, the result store and the choice are the same as here.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..errors import TileDSLError
from ..profiler import BenchResult
from ..runtime import cache
from ..runtime.kernel import JITKernel
from ..target import Target
from . import store
from .choose import Record, choose, format_table
from .measure import Measurer
from .pool import compile_configs
from .progress import Progress
from .ray_executor import RayExecutor, executor_of
from .space import ConfigSpace, expand_configs

__all__ = ["autotune", "AutoTuner", "AutotuneResult", "AutotuneError"]

log = logging.getLogger("tiledsl.autotune")

Benchmark = Callable[[JITKernel, List[Any], Dict[str, Any]], "float | BenchResult"]


class AutotuneError(TileDSLError):
    """No config compiled, passed the check and ran."""


@dataclass(frozen=True)
class Settings:
    """How configs are measured and judged (see `autotune`)."""

    warmup: int = 3
    rep: int = 20
    timeout: float = 60.0
    ref_prog: Optional[Callable] = None
    supply_prog: Optional[Callable] = None
    rtol: float = 1e-2
    atol: float = 1e-2
    tie_rtol: float = 0.03
    rank_by: str = "min"
    benchmark: Optional[Benchmark] = None
    progress: bool = True
    executor: Optional[RayExecutor] = None  # None: the local process pool


@dataclass(frozen=True)
class AutotuneResult:
    """The winner (`config`, `latency` in ms: its min or median as ranked, its `kernel`) and
    every config's `records`."""

    kernel: JITKernel
    config: Dict[str, Any]
    latency: float
    records: tuple
    seconds: float

    def table(self) -> str:
        winner = next(r for r in self.records if r.config == self.config)
        return format_table(self.records, winner)

    @property
    def measured(self) -> int:
        """How many configs this run measured (the others came from stored results)."""
        return sum(1 for r in self.records if not r.cached)

    def __str__(self) -> str:
        return f"best {self.config} at {self.latency:.4g} ms\n{self.table()}"


class AutoTuner:
    """A tuned kernel factory: call it like the `@tiledsl.jit` factory it wraps."""

    def __init__(self, jit_factory: Any, configs: ConfigSpace, settings: Settings):
        if not hasattr(jit_factory, "get_ir") or not hasattr(jit_factory, "signature"):
            raise TypeError(f"@tiledsl.autotune must be stacked on a @tiledsl.jit factory, got "
                            f"{type(jit_factory).__name__}; write @tiledsl.autotune(...) above @tiledsl.jit(...)")
        self.jit = jit_factory
        self.configs = configs
        self.settings = settings
        self.name = jit_factory.factory.__name__
        self._results: Dict[Any, AutotuneResult] = {}
        functools.update_wrapper(self, jit_factory.factory)

    def __call__(self, *args: Any, **kwargs: Any) -> JITKernel:
        """The best kernel for these arguments; a tuned parameter given explicitly skips tuning."""
        explicit = self.jit.signature.bind_partial(*args, **kwargs).arguments
        space = expand_configs(self.configs, self.jit.signature, self.name, args, kwargs)
        if any(k in explicit for c in space for k in c):
            return self.jit(*args, **kwargs)
        return self._tune(args, kwargs, space).kernel

    def tune(self, *args: Any, **kwargs: Any) -> AutotuneResult:
        """Tune for these arguments (once per process; stored results answer later runs)."""
        return self._tune(args, kwargs)

    def _tune(self, args: tuple, kwargs: dict, space: Optional[list] = None) -> AutotuneResult:
        key = repr((args, sorted(kwargs.items())))
        if key not in self._results:
            if space is None:
                space = expand_configs(self.configs, self.jit.signature, self.name, args, kwargs)
            self._results[key] = _Run(self, args, kwargs, space).run()
        return self._results[key]


def autotune(configs: ConfigSpace, *, warmup: int = 3, rep: int = 20, timeout: float = 60.0,
             ref_prog: Optional[Callable] = None, supply_prog: Optional[Callable] = None,
             rtol: float = 1e-2, atol: float = 1e-2, tie_rtol: float = 0.03, rank_by: str = "min",
             benchmark: Optional[Benchmark] = None, progress: bool = True,
             executor: "str | RayExecutor" = "local") -> Callable[[Any], AutoTuner]:
    """Decorate a `@tiledsl.jit` factory with a search over `configs`.

    configs: a list of dicts of factory parameters, a dict of axes (their product), or a
        callable of the factory's other arguments returning either.
    warmup, rep: untimed and timed calls per config (counts, not ms).
    timeout: seconds allowed to compile one config, and to time one (checked after each call).
    ref_prog: `ref_prog(*inputs)` returns the expected output(s); configs whose outputs differ
        beyond `rtol`/`atol` are skipped. supply_prog: `supply_prog(kernel)` returns the inputs
        (default: seeded random arrays of the parameters' shapes and dtypes).
    tie_rtol, rank_by: configs whose `rank_by` time ("min", the default, or "median") is within
        `tie_rtol` of the fastest count as tied; the tied config listed first wins (choose.py).
    benchmark: `benchmark(kernel, args, config)` returning ms (or a BenchResult) replaces the
        timing, e.g. to test the choice logic without a clock.
    executor: "local" (a pool of this machine's processes) or "ray": build and measure as tasks
        on the Ray cluster this process is connected to (a local one is started when none is);
        a `tiledsl.autotune.RayExecutor(...)` sets what the tasks ask for. Needs `tiledsl[ray]`.
        See docs/autotune_cluster.md.
    """
    if rank_by not in ("min", "median"):
        raise ValueError(f"autotune: rank_by must be 'min' or 'median', got {rank_by!r}")
    settings = Settings(warmup, rep, timeout, ref_prog, supply_prog, rtol, atol, tie_rtol, rank_by,
                        benchmark, progress, executor_of(executor))
    return lambda jit_factory: AutoTuner(jit_factory, configs, settings)


class _Run:
    """One tuning of one argument set."""

    def __init__(self, tuner: AutoTuner, args: Sequence[Any], kwargs: Dict[str, Any], configs: list):
        self.tuner, self.s = tuner, tuner.settings
        self.args, self.kwargs = tuple(args), dict(kwargs)
        self.configs = configs
        self.check_id = store.check_id(self.s.ref_prog, self.s.supply_prog, self.s.rtol, self.s.atol)
        self.records: Dict[int, Record] = {}
        self.keys: Dict[int, str] = {}
        self.funcs: Dict[int, Any] = {}  # index -> specialised IR (what Ray tasks compile)
        self.measurer = Measurer(self.s)
        self.remote: Any = None  # the RayTuning of a run on Ray

    def run(self) -> AutotuneResult:
        t0 = time.perf_counter()
        cache.root()  # with TILEDSL_CACHE=0: make the private directory before workers fork
        target = Target.parse(self.tuner.jit.target)
        for i, cfg in enumerate(self.configs):
            self._look_up(i, cfg, target)
        cached = len(self.records) - sum(1 for r in self.records.values() if r.status == "frontend_error")
        todo = {i: c for i, c in enumerate(self.configs) if i not in self.records}
        bar = Progress(self.tuner.name, len(self.configs), self.s.progress)
        if self.s.executor is not None and todo:
            self._on_ray(todo, target, bar)
        else:
            self._locally(todo, bar)
        bar.end("bench")
        bar.close(cached)
        return self._result(t0)

    def _locally(self, todo: Dict[int, Dict[str, Any]], bar: Progress) -> None:
        bar.start("compile", len(todo))
        outcomes = compile_configs(self.tuner.jit, self.args, self.kwargs, todo, self.s.timeout,
                                   lambda i, o: bar.step("compile", failed=o[0] != "ok"))
        bar.end("compile")
        built = [i for i in todo if outcomes[i][0] == "ok"]
        for i in todo:
            if outcomes[i][0] != "ok":
                self._finish(Record(i, todo[i], outcomes[i][0], reason=outcomes[i][1]))
        bar.start("bench", len(built))
        for i in built:
            rec = self._finish(self._measure(i, todo[i]))
            bar.step("bench", failed=not rec.ok, best=self._best_so_far())

    def _on_ray(self, todo: Dict[int, Dict[str, Any]], target: Target, bar: Progress) -> None:
        from .ray_executor import RayTuning
        from .worker import Job
        from ..jit import cpu_backend
        jit = self.tuner.jit
        backend = cpu_backend(target, jit.backend) if target.kind == "cpu" else ""
        job = Job(jit.factory.__name__, tuple(jit.out_idx), target, backend, self.s.timeout)
        self.remote = RayTuning(self.s.executor, job, self.s, bar)
        bar.start("compile", len(todo))
        bar.start("bench", len(todo))

        def on_record(rec: Record) -> None:
            self._finish(rec)
            bar.best = self._best_so_far()

        self.remote.run(self.funcs, todo, on_record)

    def _best_so_far(self) -> Optional[str]:
        best = choose(list(self.records.values()), self.s.tie_rtol, self.s.rank_by)
        return f"{getattr(best, self.s.rank_by):.4g} ms" if best else None

    def _look_up(self, i: int, cfg: Dict[str, Any], target: Target) -> None:
        try:
            func = self.tuner.jit.get_ir(*self.args, **{**self.kwargs, **cfg})
        except Exception as e:  # noqa: BLE001 - a config the factory rejects is that config's result
            self.records[i] = Record(i, cfg, "frontend_error", reason=f"{type(e).__name__}: {e}")
            return
        backend = [getattr(self.tuner.jit, "backend", None), os.environ.get("TILEDSL_CPU_BACKEND", "")]
        self.funcs[i] = func
        self.keys[i] = store.result_key(store.kernel_fields(func, target, backend), cfg)
        rec = store.load(self.keys[i], i, cfg, self.check_id)
        if rec is not None:
            self.records[i] = rec

    def _measure(self, i: int, cfg: Dict[str, Any]) -> Record:
        return self.measurer.measure(i, cfg, lambda: self.tuner.jit(*self.args, **{**self.kwargs, **cfg}))

    def _finish(self, rec: Record) -> Record:
        self.records[rec.index] = rec
        if rec.index in self.keys:
            store.save(self.keys[rec.index], rec, self.check_id)
        if not rec.ok:
            log.info("autotune %s: config %s %s: %s", self.tuner.name, rec.config, rec.status, rec.reason)
        return rec

    def _result(self, t0: float) -> AutotuneResult:
        records = tuple(self.records[i] for i in sorted(self.records))
        best = choose(records, self.s.tie_rtol, self.s.rank_by)
        if best is None:
            raise AutotuneError(f"{self.tuner.name}: no config compiled, passed the check and ran:\n"
                                f"{format_table(records)}")
        if self.remote is not None:
            self.remote.fetch(best.index)  # its library, so the next line loads rather than compiles
        kernel = self.tuner.jit(*self.args, **{**self.kwargs, **best.config})
        latency = getattr(best, self.s.rank_by)
        result = AutotuneResult(kernel, dict(best.config), latency, records, time.perf_counter() - t0)
        log.info("autotune %s: best %s at %.4g ms (%d of %d configs measured, %.2f s)", self.tuner.name,
                 best.config, latency, result.measured, len(records), result.seconds)
        return result

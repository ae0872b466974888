"""Measuring one built config: run it once against `ref_prog`, then time it.

The same steps whichever executor runs them (this process for the local executor, a Ray
worker for `executor="ray"`), so a config's record depends on its kernel and the clock, never
on where it was measured.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

from ..profiler import BenchResult, bench
from . import check
from .choose import Record

__all__ = ["Measurer"]


class Measurer:
    """Measures configs for one tuning run; inputs and `ref_prog`'s outputs are made once per
    parameter signature and shared by the configs that have it.

    `settings` is the run's `tuner.Settings` (warmup, rep, timeout, ref_prog, supply_prog,
    rtol, atol, benchmark)."""

    def __init__(self, settings: Any):
        self.s = settings
        self._data: Dict[Any, tuple] = {}  # parameter signature -> (inputs, expected outputs)

    def measure(self, index: int, config: Dict[str, Any], make_kernel: Callable[[], Any]) -> Record:
        """The record of config `index`: `make_kernel()` loads (or builds) its kernel."""
        s = self.s
        try:
            kernel = make_kernel()
            inputs, expected = self._data_for(kernel)
            if expected is not None:
                full = check.fresh_outputs(kernel, inputs, poison=True)
                kernel(*full)
                problem = check.compare(kernel, full, expected, s.rtol, s.atol)
                if problem:
                    return Record(index, config, "check_failed", reason=problem)
            full = check.fresh_outputs(kernel, inputs, poison=False)
            if s.benchmark is not None:
                r = s.benchmark(kernel, full, dict(config))
            else:
                r = bench(kernel, *full, warmup=s.warmup, rep=s.rep, timeout=s.timeout)
        except TimeoutError as e:
            return Record(index, config, "timeout", reason=str(e))
        except Exception as e:  # noqa: BLE001 - a config that fails to run is that config's result
            return Record(index, config, "run_error", reason=f"{type(e).__name__}: {e}")
        if not isinstance(r, BenchResult):
            r = BenchResult.of([float(r)])
        return Record(index, config, "ok", r.median, r.min, r.max)

    def _data_for(self, kernel: Any) -> tuple:
        sig = tuple(repr(p) for p in kernel.inputs)
        if sig not in self._data:
            inputs = check.make_inputs(kernel, self.s.supply_prog)
            expected = None
            if self.s.ref_prog is not None:
                if not kernel.out_idx:
                    raise TypeError(f"{kernel.name}: ref_prog needs outputs to compare: give "
                                    f"@tiledsl.jit an out_idx")
                expected = check.as_list(self.s.ref_prog(*inputs))
            self._data[sig] = (inputs, expected)
        return self._data[sig]

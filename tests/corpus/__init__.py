"""The kernel corpus: small kernels, each run on the CPU and in the interpreter and compared
with each other and with numpy (see README.md in this folder).

A corpus file defines `CASE = Case(...)` (or `CASES = [...]`); `test_corpus.py` finds them all.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

import tiledsl

__all__ = ["Case", "all_cases", "run", "check", "as_tuple"]


@dataclass(frozen=True)
class Case:
    """One kernel and how to check it.

    `build()` returns the PrimFunc; `inputs(rng)` the arguments a call takes (outputs at
    `out_idx` are allocated by the kernel); `reference(*inputs)` the expected outputs with
    numpy, or None to compare the targets only. `exact` asks for bitwise equality between
    the targets (integer data, or float data whose every operation is exact). A kernel that
    writes arguments the caller passes (`out_idx=()`) names them in `outputs`."""
    name: str
    build: Callable[[], Any]
    inputs: Callable[[np.random.Generator], tuple]
    reference: Optional[Callable[..., Any]] = None
    out_idx: Sequence[int] = (-1,)
    rtol: float = 1e-5
    atol: float = 1e-5
    exact: bool = False
    seed: int = 0
    note: str = field(default="", compare=False)
    outputs: Sequence[int] = ()


def as_tuple(x) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def _copy(args: tuple) -> tuple:
    return tuple(np.array(a) if isinstance(a, np.ndarray) else a for a in args)


def run(case: Case, target: str, func=None) -> tuple:
    """The outputs of `case` on `target` (a fresh copy of the inputs each time)."""
    func = func if func is not None else case.build()
    kernel = tiledsl.compile(func, out_idx=list(case.out_idx), target=target, name=case.name)
    args = case.inputs(np.random.default_rng(case.seed))
    mine = _copy(args)
    result = kernel(*mine)
    if not case.out_idx:
        return tuple(mine[i] for i in case.outputs), args
    return as_tuple(result), args


def _close(got, want, case: Case, what: str) -> None:
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{case.name}: {what}: shape {got.shape} != {want.shape}"
    if case.exact:
        np.testing.assert_array_equal(got, want, err_msg=f"{case.name}: {what}")
    else:
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=case.rtol,
                                   atol=case.atol, err_msg=f"{case.name}: {what}")


def check(case: Case) -> None:
    """cpu == interp (== numpy when the case has a reference)."""
    func = case.build()
    # Lenient: several cases index past ragged tensor ends unguarded, on purpose (what
    # legalize_memory guards on the CPU); the default interpreter would report those accesses.
    got_i, args = run(case, "interp -lenient", func)
    got_c, _ = run(case, "cpu", func)
    assert len(got_i) == len(got_c)
    for n, (c, i) in enumerate(zip(got_c, got_i)):
        assert c.dtype == i.dtype, f"{case.name}: output {n}: cpu gives {c.dtype}, interp {i.dtype}"
        _close(c, i, case, f"output {n}: cpu vs interp")
    if case.reference is not None:
        want = as_tuple(case.reference(*args))
        for n, (i, w) in enumerate(zip(got_i, want)):
            _close(i, w, case, f"output {n}: interp vs numpy")


def all_cases() -> List[tuple]:
    """(module name, case) for every case defined by a module of this package."""
    out: List[tuple] = []
    skip = {"families", "test_corpus", "add_case"}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in skip:
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        cases = list(getattr(mod, "CASES", [])) + ([mod.CASE] if hasattr(mod, "CASE") else [])
        assert cases, f"corpus module {info.name} defines no CASE"
        out.extend((info.name if len(cases) == 1 else f"{info.name}[{n}]", c) for n, c in enumerate(cases))
    return out

"""Inputs for tuning runs, fresh outputs, and the comparison with `ref_prog`."""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from ..ir import Buffer, Const

__all__ = ["make_inputs", "fresh_outputs", "compare", "as_list"]


def make_inputs(kernel: Any, supply_prog: Optional[Callable] = None, seed: int = 0) -> List[Any]:
    """The kernel's inputs: `supply_prog(kernel)` when given, else seeded random arrays
    (normal floats, small integers) and 1 for scalars."""
    if supply_prog is not None:
        return as_list(supply_prog(kernel))
    rng = np.random.default_rng(seed)
    out: List[Any] = []
    for p in kernel.inputs:
        if not isinstance(p, Buffer):
            out.append(1.0 if p.dtype.is_float else 1)
            continue
        if not all(isinstance(s, Const) for s in p.shape):
            raise TypeError(f"{kernel.name}: input '{p.name}' has a symbolic shape; give autotune a "
                            f"supply_prog(kernel) that returns the inputs")
        out.append(_random(rng, tuple(s.value for s in p.shape), p.dtype))
    return out


def _random(rng: np.random.Generator, shape: tuple, dtype: Any) -> np.ndarray:
    if dtype.is_float:
        return rng.standard_normal(shape, dtype=np.float32).astype(dtype.numpy)
    if dtype.is_bool:
        return rng.random(shape) < 0.5
    lo = 0 if dtype.name.startswith("uint") else -3
    return rng.integers(lo, 4, size=shape).astype(dtype.numpy)


def fresh_outputs(kernel: Any, inputs: Sequence[Any], poison: bool) -> List[Any]:
    """Every argument of the kernel: `inputs` with newly allocated outputs at `out_idx`. With
    `poison`, float outputs start as NaN so an element the kernel never writes fails the check."""
    full = kernel.full_args(list(inputs))
    if poison:
        for i in kernel.out_idx:
            a = full[i]
            if isinstance(a, np.ndarray) and a.dtype.kind == "f":
                a.fill(np.nan)
    return full


def compare(kernel: Any, full: Sequence[Any], expected: Sequence[Any], rtol: float, atol: float) -> str:
    """"" when every output matches `expected` within (rtol, atol), else what differs."""
    outs = [full[i] for i in kernel.out_idx]
    if len(outs) != len(expected):
        return f"ref_prog returned {len(expected)} outputs, the kernel has {len(outs)}"
    for n, (got, want) in enumerate(zip(outs, expected)):
        name = kernel.params[kernel.out_idx[n]].name
        g = _numpy(got).astype(np.float64)
        w = _numpy(want).astype(np.float64)
        if g.shape != w.shape:
            return f"output '{name}' has shape {g.shape}, ref_prog gives {w.shape}"
        bad = ~np.isclose(g, w, rtol=rtol, atol=atol)
        if bad.any():
            err = np.abs(g - w)
            worst = float(np.nanmax(np.where(np.isnan(err), np.inf, err)))
            return (f"output '{name}' differs from ref_prog at {int(bad.sum())} of {bad.size} elements "
                    f"(max abs error {worst:.3g}, rtol={rtol:g}, atol={atol:g})")
    return ""


def as_list(x: Any) -> List[Any]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch
        return x.detach().cpu().numpy()
    if type(x).__module__.split(".")[0] == "cupy":
        return x.get()
    return np.asarray(x)

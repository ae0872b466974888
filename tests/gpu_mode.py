"""The suite's GPU mode: `pytest tests --target=cuda` (or `--target="cuda -emulate"`).

Every kernel a test compiles for the default CPU target is compiled for the named target
instead, so the tests' own numpy references judge the GPU code. Under `cuda -emulate` the
kernels already run on host arrays. Under a real `cuda` target the kernel is wrapped in a
`DeviceKernel`: numpy arguments travel to the GPU (torch, or cupy without torch), and outputs
come back as numpy, including arguments the kernel writes in place, so a test cannot tell the
difference except by the result.

Kernels compiled for an explicit other target (`target="interp"`, `"cuda -emulate"`, ...) are
left alone.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

import tiledsl
from tiledsl.target import Target


def install(spec: str) -> None:
    """Redirect default-target compiles to `spec` for the rest of the process."""
    target = Target.parse(spec)
    tjit = sys.modules["tiledsl.jit"]  # the module; tiledsl.jit the attribute is the decorator
    original = tjit.compile

    def compile_for_target(func, out_idx=None, target_arg: Any = "cpu", *args, **kwargs):
        if "target" in kwargs:
            target_arg = kwargs.pop("target")
        chosen = Target.parse(target_arg)
        if chosen.kind != "cpu":
            return original(func, out_idx, target_arg, *args, **kwargs)
        kwargs.pop("backend", None)  # the CPU backend a factory asked for means nothing here
        kernel = original(func, out_idx, spec, *args, **kwargs)
        return kernel if target.has("emulate") else DeviceKernel(kernel)

    tjit.compile = compile_for_target
    tiledsl.compile = compile_for_target


class DeviceKernel:
    """A CUDA kernel that takes and returns numpy arrays: inputs are copied to the GPU for
    the call, in-place outputs and returned tensors copied back."""

    def __init__(self, kernel: Any):
        self._kernel = kernel
        self._lib = _array_library()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kernel, name)

    def __call__(self, *args: Any) -> Any:
        to_dev, to_host, copy_back = self._lib
        moved = [to_dev(a) if isinstance(a, np.ndarray) else a for a in args]
        out = self._kernel(*moved)
        for a, m in zip(args, moved):
            if isinstance(a, np.ndarray) and a.flags.writeable:
                copy_back(m, a)
        if out is None:
            return None
        kinds = [self._kernel.params[i].dtype.numpy for i in self._kernel.out_idx]
        if isinstance(out, (tuple, list)):
            return type(out)(_as(to_host(o), k) for o, k in zip(out, kinds))
        return _as(to_host(out), kinds[0])


def _as(host: np.ndarray, want: np.dtype) -> np.ndarray:
    """A returned output in its parameter's numpy dtype (cupy hands bfloat16 back as bits)."""
    return host if host.dtype == want else host.view(want)


# ml_dtypes types have no torch / cupy twin that numpy can hand over: they travel as their
# same-width unsigned bits and are reinterpreted on the device side where a twin exists.
def _array_library() -> tuple:
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        return _torch_moves(torch)
    import cupy
    return _cupy_moves(cupy)


def _torch_moves(torch) -> tuple:
    import ml_dtypes
    twins = {np.dtype(ml_dtypes.bfloat16): (np.int16, torch.bfloat16),
             np.dtype(ml_dtypes.float8_e4m3fn): (np.uint8, torch.float8_e4m3fn),
             np.dtype(ml_dtypes.float8_e5m2): (np.uint8, torch.float8_e5m2)}
    back = {t: d for d, (_, t) in twins.items()}

    def to_dev(a: np.ndarray):
        if a.dtype in twins:
            bits, twin = twins[a.dtype]
            return torch.from_numpy(np.ascontiguousarray(a).view(bits)).cuda().view(twin)
        return torch.from_numpy(np.ascontiguousarray(a)).cuda()

    def to_host(t) -> np.ndarray:
        if t.dtype in back:
            host = back[t.dtype]
            bits = np.int16 if host.itemsize == 2 else np.uint8
            width = torch.int16 if host.itemsize == 2 else torch.uint8
            return t.view(width).cpu().numpy().view(bits).view(host)
        return t.cpu().numpy()

    def copy_back(t, a: np.ndarray) -> None:
        np.copyto(a, to_host(t))

    return to_dev, to_host, copy_back


def _cupy_moves(cupy) -> tuple:
    from tiledsl.ir.dtype import numpy_view_dtypes
    views = numpy_view_dtypes()

    def to_dev(a: np.ndarray):
        a = np.ascontiguousarray(a)
        return cupy.asarray(a.view(f"u{a.dtype.itemsize}") if a.dtype in views else a)

    def to_host(t) -> np.ndarray:
        return cupy.asnumpy(t)

    def copy_back(t, a: np.ndarray) -> None:
        host = to_host(t)
        np.copyto(a, host.view(a.dtype) if a.dtype in views else host)

    return to_dev, to_host, copy_back

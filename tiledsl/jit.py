"""`tiledsl.jit` and `tiledsl.compile`: from a PrimFunc to a callable kernel.

    @tiledsl.jit(out_idx=[-1])
    def matmul(M, N, K, block_M=64, ...):
        @T.prim_func
        def main(A: T.Tensor((M, K), dtype), ...): ...
        return main

    kernel = matmul(1024, 1024, 1024)   # specialised, compiled (memory-cached by arguments)
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import re
import threading
import time
from typing import Any, Callable, Dict, Optional, Sequence

from . import ir
from .runtime.cpp import compile_cpp
from .runtime.kernel import JITKernel
from .runtime.report import CompileReport
from .errors import CompileError
from .runtime.build import compiler_info
from .target import CPU_BACKENDS, Target

__all__ = ["jit", "compile", "JITFactory"]


def compile(func: ir.PrimFunc, out_idx: Optional[Sequence[int]] = None, target: Any = "cpu",
            name: Optional[str] = None, report: Optional[CompileReport] = None,
            backend: Optional[str] = None) -> JITKernel:
    """Lower, render, build and load `func`, or load it from the disk cache (keyed by its IR);
    `name` is the exported symbol's suffix; `report` collects stage timings for the log;
    `backend` ("cxx" or "llvm") how CPU code is compiled (see `cpu_backend`)."""
    if not isinstance(func, ir.PrimFunc):
        raise TypeError(f"tiledsl.compile expects a PrimFunc (from @T.prim_func), got {type(func).__name__}")
    tgt = Target.parse(target)
    symbol = _symbol(name or func.name)
    func = ir.PrimFunc(symbol, func.params, func.body, func.attrs, span=func.span)
    if tgt.kind == "cuda":
        from .runtime.cuda import compile_cuda
        return compile_cuda(func, tgt, out_idx or (), report or CompileReport(symbol),
                            emulate=tgt.has("emulate"))
    if tgt.kind == "interp":
        from .interp import InterpKernel
        return InterpKernel(func, out_idx or (), tgt)
    if tgt.kind != "cpu":
        raise ValueError(f"target {tgt.kind!r} is not available yet")
    tgt = dataclasses.replace(tgt, backend=cpu_backend(tgt, backend))
    if tgt.backend == "llvm":
        from .runtime.llvm_jit import compile_llvm
        return compile_llvm(func, tgt, out_idx or (), report or CompileReport(symbol))
    return compile_cpp(func, tgt, out_idx or (), report or CompileReport(symbol))


def cpu_backend(target: Target, backend: Optional[str] = None) -> str:
    """How CPU code is compiled: `backend` if given, else the target's `-backend=`, else
    `$TILEDSL_CPU_BACKEND`, else "cxx" (C++ and g++) when a C++ compiler is on PATH and
    "llvm" (llvmlite, in process) when there is none."""
    choice = backend or target.backend or os.environ.get("TILEDSL_CPU_BACKEND", "")
    if choice:
        if choice not in CPU_BACKENDS:
            raise ValueError(f"unknown CPU backend {choice!r}; expected one of {', '.join(CPU_BACKENDS)}")
        return choice
    try:
        compiler_info()
        return "cxx"
    except CompileError:
        return "llvm"


def _symbol(name: str) -> str:
    s = re.sub(r"\W", "_", name)
    return s if s and not s[0].isdigit() else "k_" + s


def _key(v: Any) -> Any:
    """A hashable, value-based key for one factory argument."""
    try:
        hash(v)
        return (type(v).__name__, v)
    except TypeError:
        if isinstance(v, (list, tuple)):
            return tuple(_key(x) for x in v)
        if isinstance(v, dict):
            return tuple(sorted((k, _key(x)) for k, x in v.items()))
        return (type(v).__name__, repr(v))


class JITFactory:
    """The decorated factory: calling it specialises, compiles once per argument set, and
    returns the `JITKernel`."""

    def __init__(self, factory: Callable, out_idx: Optional[Sequence[int]], target: Any,
                 backend: Optional[str] = None):
        self.factory = factory
        self.out_idx = tuple(out_idx) if out_idx is not None else ()
        self.target = target
        self.backend = backend
        self.signature = inspect.signature(factory)
        self._kernels: Dict[Any, JITKernel] = {}
        self._lock = threading.Lock()
        functools.update_wrapper(self, factory)

    def __call__(self, *args: Any, **kwargs: Any) -> JITKernel:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        backend = self._cpu_backend()
        key = tuple((k, _key(v)) for k, v in bound.arguments.items()) + (("backend", backend),)
        with self._lock:
            kernel = self._kernels.get(key)
            previous = [k.spec_args for k in self._kernels.values()]
        if kernel is not None:
            return kernel
        t0 = time.perf_counter()
        func = self.get_ir(*bound.args, **bound.kwargs)
        report = CompileReport(self.factory.__name__, bound.arguments, time.perf_counter() - t0,
                               previous=previous)
        kernel = compile(func, self.out_idx, self.target, name=self.factory.__name__, report=report,
                         backend=backend or None)
        kernel.spec_args = dict(bound.arguments)
        with self._lock:
            self._kernels[key] = kernel
        return kernel

    def get_ir(self, *args: Any, **kwargs: Any) -> ir.PrimFunc:
        """The PrimFunc the factory builds for these arguments (nothing is compiled)."""
        func = self.factory(*args, **kwargs)
        if not isinstance(func, ir.PrimFunc):
            raise TypeError(f"{self.factory.__name__}: a @tiledsl.jit factory must return the "
                            f"@T.prim_func it defines, got {type(func).__name__}")
        return func

    def _cpu_backend(self) -> str:
        """The CPU backend a compile would use now ("" off the CPU): part of the memo key, as
        `$TILEDSL_CPU_BACKEND` may change between calls."""
        tgt = Target.parse(self.target)
        return cpu_backend(tgt, self.backend) if tgt.kind == "cpu" else ""


def jit(fn: Optional[Callable] = None, *, out_idx: Optional[Sequence[int]] = None,
        target: Any = "auto", backend: Optional[str] = None) -> Any:
    """Decorate a kernel factory; see the module docstring. `backend` ("cxx" or "llvm") picks
    how CPU code is compiled; by default `$TILEDSL_CPU_BACKEND`, else C++ when a C++ compiler
    is on PATH and LLVM (llvmlite, no compiler needed) when there is none."""
    if fn is not None:
        return JITFactory(fn, out_idx, target, backend)
    return lambda f: JITFactory(f, out_idx, target, backend)

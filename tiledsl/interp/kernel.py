"""`InterpKernel`: a kernel run by the numpy interpreter, called like any `JITKernel`."""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from .. import ir
from ..runtime.kernel import JITKernel
from ..target import Target
from .args import bind_arguments
from .errors import UnwrittenOutputError
from .machine import Machine

__all__ = ["InterpKernel"]


class InterpKernel(JITKernel):
    """`target="interp"`: the tile IR executed with numpy, with every run-time check on.

    Same calling convention and argument errors as the compiled kernel; outputs allocated
    for the caller (`out_idx`) must be written completely, or the call fails naming the first
    element the kernel left undefined. `get_kernel_source()` is the tile IR it runs."""

    def __init__(self, func: ir.PrimFunc, out_idx: Sequence[int], target: Target):
        written = ir.stored_buffers(func)
        super().__init__(func, func, func.script, None, self._run, out_idx, target, written=written)
        self._check_numpy = True  # _run is Python: no DLPack to refuse a read-only array
        self.strict = target.has("strict")
        self.lenient = target.has("lenient")
        self._local = threading.local()

    def _allocate(self, i: int, args: Sequence[Any]) -> Any:
        out = super()._allocate(i, args)
        if isinstance(out, np.ndarray) and out.size:
            self._fresh().add(out.ctypes.data)
        return out

    def _fresh(self) -> set:
        if not hasattr(self._local, "fresh"):
            self._local.fresh = set()
        return self._local.fresh

    def _run(self, *args: Any) -> None:
        fresh, self._local.fresh = self._fresh(), set()
        env, mems = bind_arguments(self.name, self.func, args, self._written, fresh)
        Machine(self.func, env, mems, self.strict, self.lenient).run()
        for p in self.func.buffers:
            mem = mems[p.name]
            if mem.written is not None and not mem.written.all():
                missing = ~mem.written
                at = np.unravel_index(int(np.argmax(missing)), missing.shape)
                raise UnwrittenOutputError(
                    f"{self.name}: output '{p.name}' is returned with {int(missing.sum())} of its "
                    f"{missing.size} elements never written, the first at "
                    f"{p.name}[{', '.join(str(int(i)) for i in at)}]", self.func.span,
                    hint="does the grid cover the whole tensor (T.ceildiv(M, block_M), not "
                         "M // block_M), and does every block write its whole tile?")

    def __repr__(self) -> str:
        sig = ", ".join(p.name for p in self.inputs)
        return f"<InterpKernel {self.name}({sig})>"

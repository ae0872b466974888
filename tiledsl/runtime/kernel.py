"""`JITKernel`: a compiled kernel as a Python callable.

The heavy checking happens in the generated host code (it serves every TVM-FFI caller, not
only this wrapper); here we only do what C cannot: allocate `out_idx` outputs with the inputs'
library, hand numpy bfloat16 over as its uint16 view, explain read-only numpy arrays,
which DLPack cannot export, and launch a call on cupy arrays on cupy's current stream.
"""
from __future__ import annotations

import os
import shutil
import sys
import uuid
from typing import Any, Callable, List, Optional, Sequence

import numpy as np

from ..ir import Buffer, Const, PrimFunc, Var, const, free_vars, stored_buffers, substitute
from ..ir.dtype import numpy_view_dtypes

__all__ = ["JITKernel"]

# numpy dtypes from ml_dtypes, which DLPack cannot carry: passed as same-width unsigned views.
_VIEWED = numpy_view_dtypes()


def _on_cupy_stream(fn: Any) -> Any:
    """`fn`, launched on cupy's current stream when an argument is a cupy array.

    tvm-ffi sets the stream the host code launches on (`TVMFFIEnvGetStream`) from a torch
    tensor argument by itself, but knows nothing of cupy: a cupy caller's kernel would run on
    the legacy default stream, unordered with the work of a non-blocking cupy stream."""
    def call(*args: Any) -> Any:
        cupy = sys.modules.get("cupy")  # not imported: no argument can be a cupy array
        if cupy is not None:
            for a in args:
                if isinstance(a, cupy.ndarray):
                    import tvm_ffi
                    with tvm_ffi.use_raw_stream(tvm_ffi.device("cuda", a.device.id),
                                                cupy.cuda.get_current_stream().ptr):
                        return fn(*args)
        return fn(*args)
    return call


class JITKernel:
    """Call with the kernel's inputs (outputs listed in `out_idx` are allocated and returned),
    or with every argument including outputs (nothing is allocated, None is returned)."""

    def __init__(self, func: PrimFunc, lowered: Any, source: Any, library: Optional[str], fn: Any,
                 out_idx: Sequence[int], target: Any, *, written: Optional[Sequence[str]] = None,
                 cache_key: Optional[str] = None, exporter: Optional[Callable[[str], None]] = None):
        """`lowered` and `source` are values or zero-argument callables computing them on first use
        (a kernel loaded from the disk cache was never lowered here). `library` is the shared
        library's path, None for a backend that runs in process; such a backend passes
        `exporter(path)` to make `export_library` work. `written` names the tensors the kernel
        stores to (default: read from `lowered`)."""
        self.func = func
        self._lowered = lowered
        self._source = source
        self.library = library
        self.target = target
        self.name = func.name
        self.cache_key = cache_key
        self.spec_args: Optional[dict] = None  # the factory arguments this kernel was made for
        gpu = getattr(target, "kind", "") == "cuda" and not target.has("emulate")
        self._fn = _on_cupy_stream(fn) if gpu else fn
        self._exporter = exporter
        n = len(func.params)
        self.out_idx = sorted({i % n for i in out_idx})
        for i in self.out_idx:
            if not isinstance(func.params[i], Buffer):
                raise TypeError(f"{self.name}: out_idx {i} names scalar parameter "
                                f"'{func.params[i].name}'; only tensors can be outputs")
        self.params = list(func.params)
        self._nparams = len(self.params)
        self.inputs = [p for i, p in enumerate(self.params) if i not in self.out_idx]
        self._written = set(written) if written is not None else stored_buffers(self.lowered)
        # numpy arrays of ml_dtypes types (bfloat16, float8) have no DLPack dtype: they pass as
        # views, so such a kernel checks every numpy argument before the call. Others rely on
        # DLPack refusing (BufferError) what needs explaining (see _call_again).
        self._check_numpy = any(isinstance(p, Buffer) and p.dtype.numpy_view for p in self.params)
        self._sym_sources = self._symbol_sources()
        # Per output dimension, worked out once: an int, (input position, dim) to read it from, or
        # an expression of symbolic sizes to evaluate at call time.
        self._shape_plans = {i: tuple(self._dim_plan(s) for s in self.params[i].shape) for i in self.out_idx}
        self._fixed_shapes = {i: plan for i, plan in self._shape_plans.items()
                              if all(isinstance(d, int) for d in plan)}
        self._numpy_dtypes = {i: self.params[i].dtype.numpy for i in self.out_idx}

    @property
    def lowered(self) -> PrimFunc:
        if callable(self._lowered):
            self._lowered = self._lowered()
        return self._lowered

    @property
    def source(self) -> str:
        if callable(self._source):
            self._source = self._source()
        return self._source

    # ---- calling ----

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The path of a call with every argument is kept short: it is most of a small kernel's
        # cost (bench_call.py).
        if kwargs:
            args = self._merge_kwargs(args, kwargs)
        n = len(args)
        if n == self._nparams:  # outputs passed in (or none to allocate): nothing to allocate
            if self._check_numpy:
                args = self._numpy_args(args)
            try:
                self._fn(*args)
            except BufferError:
                self._call_again(args)
            return None
        if n != len(self.inputs):
            names = ", ".join(p.name for p in self.inputs)
            raise TypeError(f"{self.name}: expects {len(self.inputs)} argument{'s' if len(self.inputs) != 1 else ''} "
                            f"({names}), got {n}")
        outs = [self._allocate(i, args) for i in self.out_idx]
        full = list(args)
        for i, o in zip(self.out_idx, outs):  # ascending, so each lands at its own index
            full.insert(i, o)
        self._call(full)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _merge_kwargs(self, args: tuple, kwargs: dict) -> tuple:
        names = [p.name for p in (self.params if len(args) + len(kwargs) == len(self.params)
                                  else self.inputs)]
        out = list(args) + [None] * (len(names) - len(args))
        for k, v in kwargs.items():
            if k not in names:
                raise TypeError(f"{self.name}: unexpected argument '{k}'; parameters are {', '.join(names)}")
            pos = names.index(k)
            if pos < len(args):
                raise TypeError(f"{self.name}: argument '{k}' given twice")
            out[pos] = v
        missing = [n for n, v in zip(names, out) if v is None]
        if missing:
            raise TypeError(f"{self.name}: missing argument{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(repr(m) for m in missing)}")
        return tuple(out)

    def _call(self, full: Sequence[Any]) -> None:
        if self._check_numpy:
            full = self._numpy_args(full)
        try:
            self._fn(*full)
        except BufferError:
            self._call_again(full)

    def _call_again(self, full: Sequence[Any]) -> None:
        """DLPack refused an array before the kernel ran: a read-only numpy array, or one of an
        ml_dtypes type (bfloat16, float8) it cannot carry. Say which, or pass the view and call
        again. (Found by the failure, not by checking every array: the checks cost more than
        the call of a small kernel.)"""
        converted = self._numpy_args(full)
        if all(x is y for x, y in zip(converted, full)):
            raise  # nothing of ours to explain: the BufferError being handled goes on
        self._fn(*converted)

    def _numpy_args(self, full: Sequence[Any]) -> list:
        return [self._numpy_arg(p, x) if isinstance(x, np.ndarray) else x for p, x in zip(self.params, full)]

    def _numpy_arg(self, p: Any, a: np.ndarray) -> Any:
        if a.dtype not in _VIEWED and a.flags.writeable and not (isinstance(p, Buffer) and p.dtype.numpy_view
                                                                and a.dtype.kind == "u"):
            return a
        if not a.flags.writeable:
            what = "is written by the kernel" if p.name in self._written else "is an input"
            raise ValueError(f"{self.name}: argument '{p.name}' is a read-only numpy array ({what}); "
                             f"DLPack cannot pass read-only memory: pass a writable array, "
                             f"e.g. np.array(x)")
        if a.dtype in _VIEWED:
            if not isinstance(p, Buffer) or p.dtype.numpy != a.dtype:
                want = p.dtype if isinstance(p, (Buffer, Var)) else "a scalar"
                raise TypeError(f"{self.name}: argument '{p.name}' expects {want}, got {_VIEWED[a.dtype]}")
            return a.view(f"uint{8 * a.dtype.itemsize}")
        if isinstance(p, Buffer) and p.dtype.numpy_view and a.dtype.kind == "u":
            raise TypeError(f"{self.name}: argument '{p.name}' expects {p.dtype}, got {a.dtype}")
        return a

    # ---- outputs ----

    def _symbol_sources(self) -> dict:
        """Where each symbolic dimension can be read from the inputs: var -> (input pos, dim)."""
        out = {}
        for pos, p in enumerate(self.inputs):
            if isinstance(p, Buffer):
                for d, s in enumerate(p.shape):
                    if isinstance(s, Var) and s not in out:
                        out[s] = (pos, d)
        return out

    def _dim_plan(self, s: Any) -> Any:
        if isinstance(s, Const):
            return s.value
        return self._sym_sources.get(s, s) if isinstance(s, Var) else s

    def _input_dim(self, args: Sequence[Any], pos: int, d: int) -> int:
        shape = getattr(args[pos], "shape", None)
        if shape is None or len(shape) <= d:
            raise TypeError(f"{self.name}: argument '{self.inputs[pos].name}' expects a tensor")
        return int(shape[d])

    def _shape_of(self, i: int, args: Sequence[Any]) -> tuple:
        if i in self._fixed_shapes:
            return self._fixed_shapes[i]
        dims = []
        for plan in self._shape_plans[i]:
            if isinstance(plan, int):
                dims.append(plan)
            elif isinstance(plan, tuple):
                dims.append(self._input_dim(args, *plan))
            else:  # an expression of symbolic sizes
                env = {}
                for v in free_vars(plan):
                    if v not in self._sym_sources:
                        raise TypeError(f"{self.name}: cannot allocate output '{self.params[i].name}': its "
                                        f"size {v.name} appears in no input; pass the output explicitly")
                    env[v] = const(self._input_dim(args, *self._sym_sources[v]))
                dims.append(substitute(plan, env).value)
        return tuple(dims)

    def _allocate(self, i: int, args: Sequence[Any]) -> Any:
        p = self.params[i]
        shape = self._shape_of(i, args)
        for a in args:
            if type(a) is np.ndarray:
                continue
            mod = type(a).__module__.split(".")[0]
            if mod == "torch":
                import torch
                tdt = getattr(torch, {"float8_e4m3": "float8_e4m3fn"}.get(p.dtype.name, p.dtype.name))
                return torch.empty(shape, dtype=tdt, device=a.device)
            if mod == "cupy":
                import cupy
                # cupy has no float8 (and bfloat16 only in some versions): such outputs are their
                # unsigned bits, which the host code accepts for them, as numpy hands them over.
                dt = f"uint{8 * p.dtype.itemsize}" if p.dtype.numpy_view else p.dtype.numpy
                with cupy.cuda.Device(a.device.id):
                    return cupy.empty(shape, dtype=dt)
        return np.empty(shape, dtype=self._numpy_dtypes[i])

    # ---- benchmarking and export ----

    def full_args(self, args: Sequence[Any]) -> List[Any]:
        """All the kernel's arguments: `args` when it has them all, else the inputs followed, at
        their `out_idx` places, by freshly allocated outputs."""
        if len(args) == len(self.params):
            return list(args)
        if len(args) != len(self.inputs):
            names = ", ".join(p.name for p in self.inputs)
            raise TypeError(f"{self.name}: expects {len(self.inputs)} inputs ({names}) or all "
                            f"{len(self.params)} arguments, got {len(args)}")
        full: List[Any] = []
        it = iter(args)
        for i, p in enumerate(self.params):
            full.append(self._allocate(i, args) if i in self.out_idx else next(it))
        return full

    def bench(self, *args: Any, warmup: int = 3, rep: int = 20, flush: bool = True,
              timeout: Optional[float] = None) -> Any:
        """Time the kernel on `args` (see `tiledsl.bench`): median / min / max in ms.

        Given only the inputs, outputs are allocated once, outside the timed calls."""
        from ..profiler import bench
        return bench(self, *self.full_args(args), warmup=warmup, rep=rep, flush=flush, timeout=timeout)

    def export_library(self, path: "str | os.PathLike", archs: Optional[Sequence[str]] = None) -> str:
        """Write the kernel as one shared library at `path` and return the path.

        `tvm_ffi.load_module(path)[kernel.name]` calls it, with the same argument checks, in a
        process that never imports tiledsl; C++ loads it with `tvm::ffi::Module::LoadFromFile`;
        `tiledsl.load(path)` makes it a JITKernel again. It links to the libtvm_ffi of this
        environment's apache-tvm-ffi. `archs` (CUDA kernels built with NVRTC): also code for
        these GPUs, e.g. `archs=["sm_80", "sm_90a"]`."""
        path = os.fspath(path)
        if archs is not None and not (self.target.kind == "cuda" and self.target.backend == "nvrtc"):
            raise ValueError(f"{self.name}: archs= is for CUDA kernels compiled with NVRTC")
        if self._exporter is not None:
            self._exporter(path, archs=archs) if archs is not None else self._exporter(path)
            return path
        if self.library is None:
            raise NotImplementedError(f"{self.name}: the {self.target.kind} backend runs this kernel in "
                                      f"process and cannot export a library")
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        # Copy then rename: a process that has the old file at `path` loaded keeps its mapping.
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}")
        shutil.copyfile(self.library, tmp)
        os.replace(tmp, path)
        return path

    # ---- inspection ----

    def get_kernel_source(self) -> str:
        """The generated C++ (kernel body and TVM-FFI host wrapper)."""
        return self.source

    @property
    def metadata(self) -> Any:
        """What the kernel's library says of it (an ffi.Map: parameters, out_idx, target, cache
        key; see runtime/metadata.py), or None for a kernel with no library module loaded (the
        LLVM backend in process, the interpreter)."""
        module = getattr(self, "_module", None)
        if module is None:
            return None
        from .metadata import read_metadata
        return read_metadata(module, self.name)

    def get_ir(self, lowered: bool = False) -> str:
        return (self.lowered if lowered else self.func).script()

    def __repr__(self) -> str:
        sig = ", ".join(p.name for p in self.inputs)
        return f"<JITKernel {self.name}({sig}) target={self.target.kind} lib={self.library}>"

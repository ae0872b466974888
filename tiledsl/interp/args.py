"""Argument checks of the interpreter: the same checks, order and messages as the C host
wrapper (`codegen/host.py`), so a kernel rejects a bad call the same way on every target."""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import numpy as np

from .. import ir
from ..ir import Buffer, Const, Var
from .memory import Mem
from .values import compute_dtype

__all__ = ["bind_arguments"]

_DEVICES = {1: "cpu", 2: "cuda", 3: "cuda_host", 10: "rocm", 8: "metal"}
_INT_RANGE = {"int8": (-2**7, 2**7 - 1), "int16": (-2**15, 2**15 - 1), "int32": (-2**31, 2**31 - 1),
              "int64": (-2**63, 2**63 - 1), "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1),
              "uint32": (0, 2**32 - 1), "uint64": (-2**63, 2**64 - 1)}


def _type_name(a: Any) -> str:
    """What tvm-ffi calls a non-tensor argument (host.py's tdsl_type_name)."""
    if a is None:
        return "None"
    if isinstance(a, (bool, int, float, str, bytes)):
        return type(a).__name__
    if isinstance(a, (list, tuple)):
        return "list"
    if isinstance(a, dict):
        return "dict"
    if isinstance(a, np.ndarray) or hasattr(a, "__dlpack__"):
        return "tensor"
    return "Python object"


def _shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _dtype_name(dt: np.dtype) -> str:
    if not dt.isnative:
        return f"{dt.name} (non-native byte order)"
    return dt.name


def _tensor(kernel: str, p: Buffer, a: Any) -> np.ndarray:
    if isinstance(a, np.ndarray):
        arr = a
    elif hasattr(a, "__dlpack__") and hasattr(a, "__dlpack_device__"):
        dev, dev_id = a.__dlpack_device__()
        if int(dev) != 1:
            raise ValueError(f"{kernel}: argument '{p.name}' expects a cpu tensor, got one on "
                             f"{_DEVICES.get(int(dev), 'another device')}:{dev_id}")
        arr = np.from_dlpack(a)
    else:
        raise TypeError(f"{kernel}: argument '{p.name}' expects a tensor, got {_type_name(a)}")
    want = p.dtype.numpy
    if p.dtype.numpy_view and arr.dtype == np.dtype(f"uint{8 * want.itemsize}"):
        arr = arr.view(want)  # numpy's bfloat16 / float8 travel as unsigned views (runtime/kernel.py)
    if arr.dtype != want or not arr.dtype.isnative:
        raise TypeError(f"{kernel}: argument '{p.name}' expects {p.dtype}, got {_dtype_name(arr.dtype)}")
    if arr.ndim != p.ndim:
        raise ValueError(f"{kernel}: argument '{p.name}' expects {p.ndim} dimensions, got {arr.ndim}")
    if arr.ctypes.data % max(1, arr.dtype.itemsize) != 0:
        raise ValueError(f"{kernel}: argument '{p.name}' is not aligned to its element size")
    return arr


def _check_shape(kernel: str, p: Buffer, arr: np.ndarray, env: dict) -> None:
    for d, s in enumerate(p.shape):
        if isinstance(s, Var) and s not in env:
            env[s] = np.int64(arr.shape[d])
    sub = {v: ir.const(int(x)) for v, x in env.items() if isinstance(v, Var) and v.dtype.is_int}
    want = []
    for s in p.shape:
        c = s if isinstance(s, Const) else ir.substitute(s, sub)
        want.append(int(c.value) if isinstance(c, Const) else -1)
    if tuple(want) != tuple(arr.shape):
        if all(isinstance(s, Const) for s in p.shape):
            raise ValueError(f"{kernel}: argument '{p.name}' expects shape {_shape_str(want)}, "
                             f"got {_shape_str(arr.shape)}")
        label = "(" + ", ".join(str(s) for s in p.shape) + ("," if p.ndim == 1 else "") + ")"
        raise ValueError(f"{kernel}: argument '{p.name}' expects shape {label} = {_shape_str(want)}, "
                         f"got {_shape_str(arr.shape)}")
    if arr.size == 0:
        return
    expect = 1
    for n, st in zip(reversed(arr.shape), reversed(arr.strides)):
        if n != 1 and st != expect * arr.itemsize:
            strides = tuple(x // arr.itemsize for x in arr.strides)
            raise ValueError(f"{kernel}: argument '{p.name}' must be contiguous (row-major); got strides "
                             f"{_shape_str(strides)} (in elements)")
        expect *= n


def _scalar(kernel: str, p: Var, a: Any) -> np.ndarray:
    dt = p.dtype
    is_int = isinstance(a, (bool, int, np.integer))
    if dt.is_float:
        if not (is_int or isinstance(a, (float, np.floating))):
            raise TypeError(f"{kernel}: argument '{p.name}' expects a {dt} scalar, got {_type_name(a)}")
        return np.asarray(float(a) if not is_int else int(a), compute_dtype(dt))
    if not is_int:
        raise TypeError(f"{kernel}: argument '{p.name}' expects an integer ({dt}), got {_type_name(a)}")
    v = int(a)
    lo, hi = _INT_RANGE.get(dt.name, (-2**63, 2**63 - 1))
    if not lo <= v <= hi:
        raise ValueError(f"{kernel}: argument '{p.name}' = {v} does not fit in {dt}")
    if dt.is_bool:
        return np.asarray(v != 0)
    return np.asarray(v, np.uint64 if v >= 2 ** 63 else np.int64).astype(compute_dtype(dt))


def _bytes(arr: np.ndarray) -> Tuple[int, int]:
    start = arr.ctypes.data
    return start, start + arr.nbytes


def bind_arguments(kernel: str, func: ir.PrimFunc, args: Sequence[Any], written: set,
                   fresh: set) -> Tuple[dict, Dict[str, Mem]]:
    """(values of scalar parameters and symbolic sizes, Mem of each tensor parameter).

    `fresh` holds the data addresses of outputs allocated for this call: those start
    undefined, so their elements are tracked until written."""
    params = func.params
    if len(args) != len(params):
        names = ", ".join(p.name for p in params)
        raise TypeError(f"{kernel}: expects {len(params)} argument{'s' if len(params) != 1 else ''} "
                        f"({names}), got {len(args)}")
    env: dict = {}
    mems: Dict[str, Mem] = {}
    for p, a in zip(params, args):
        if isinstance(p, Buffer):
            arr = _tensor(kernel, p, a)
            _check_shape(kernel, p, arr, env)
            track = arr.size > 0 and arr.ctypes.data in fresh
            mems[p.name] = Mem(p, arr, written=np.zeros(arr.shape, bool) if track else None)
        else:
            env[p] = _scalar(kernel, p, a)
    tensors = [(p, mems[p.name].data) for p in params if isinstance(p, Buffer)]
    for p, arr in tensors:
        if p.name not in written or arr.nbytes == 0:
            continue
        a0, a1 = _bytes(arr)
        for q, other in tensors:
            if q is not p and other.nbytes:
                b0, b1 = _bytes(other)
                if a0 < b1 and b0 < a1:
                    raise ValueError(f"{kernel}: argument '{p.name}' is written by the kernel and "
                                     f"overlaps argument '{q.name}' in memory")
    return env, mems

"""NVRTC: CUDA device code to a cubin in this process, through ctypes.

libnvrtc comes from the `nvidia-cuda-nvrtc` wheel (the `cuda-test` extra), `$TILEDSL_NVRTC`, or
the CUDA toolkit (`$CUDA_HOME/lib64`, `/usr/local/cuda/lib64`). A compile is one
`nvrtcCompileProgram` with `-arch=sm_XX`, so the result is SASS for that arch (a cubin the
driver loads without JIT), at a fraction of nvcc's cost: nvcc runs a preprocessor, the front
end, ptxas, fatbinary and the host compiler as separate processes.

The device code's own includes are answered from memory (NVRTC has no C library): the C headers
it names become empty (NVRTC declares memcpy, printf and the math functions itself), the tvm-ffi
and CUDA runtime headers too (only host code uses them), and `cuda_fp16.h` is four conversions
written as the PTX `cvt` instructions the toolkit's header compiles them to: the device code
stores 16-bit floats as uint16_t and uses nothing else of it, and parsing the real header would
cost more than compiling a small kernel (and need a toolkit, which the wheel is meant to spare).
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os
import re
import sys
from typing import List, Optional, Sequence

from ..errors import CompileError

__all__ = ["find_nvrtc", "nvrtc_version", "nvrtc_compile", "nvrtc_ptx", "nvrtc_options"]

# Headers the device prelude includes that NVRTC has no use for (see the module docstring).
_EMPTY_HEADERS = ("tvm/ffi/c_api.h", "tvm/ffi/extra/c_env_api.h", "stdint.h", "stddef.h", "string.h",
                  "stdio.h", "math.h", "cuda_runtime.h")
# NVRTC knows the fixed-width integer types as built-ins only through cuda/std; a typedef per
# name is what <stdint.h> would give the device code.
_STDINT = """
typedef signed char int8_t; typedef short int16_t; typedef int int32_t; typedef long long int64_t;
typedef unsigned char uint8_t; typedef unsigned short uint16_t; typedef unsigned int uint32_t;
typedef unsigned long long uint64_t; typedef unsigned long size_t; typedef long ptrdiff_t;
typedef unsigned long uintptr_t; typedef long intptr_t;
#define INT64_MAX 9223372036854775807LL
#define INT32_MAX 2147483647
"""

# NVRTC declares the math functions but not <math.h>'s constants, which the code generator uses.
_MATH = """
#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fffffff)
"""
_FP16 = """
struct __half { unsigned short x; };
__device__ __forceinline__ __half __ushort_as_half(unsigned short h) { __half r; r.x = h; return r; }
__device__ __forceinline__ unsigned short __half_as_ushort(__half h) { return h.x; }
__device__ __forceinline__ float __half2float(__half h) {
  float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.x)); return f;
}
__device__ __forceinline__ __half __float2half_rn(float f) {
  __half r; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r.x) : "f"(f)); return r;
}
"""


def _candidates() -> List[str]:
    out = []
    if os.environ.get("TILEDSL_NVRTC"):
        out.append(os.environ["TILEDSL_NVRTC"])
    for site in sys.path:  # the wheel: site-packages/nvidia/cu13/lib (cu12: nvidia/cuda_nvrtc/lib)
        out += sorted(glob.glob(os.path.join(site, "nvidia", "cu1[3-9]", "lib", "libnvrtc.so.*")))
        out += sorted(glob.glob(os.path.join(site, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.*")))
    for home in filter(None, (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda")):
        out += sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*")))
    return [p for p in out if "builtins" not in os.path.basename(p) and os.path.exists(p)]


@functools.lru_cache(maxsize=None)
def find_nvrtc() -> Optional[ctypes.CDLL]:
    """The loaded libnvrtc, or None when there is none (callers fall back to nvcc)."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        _declare(lib)
        lib.tdsl_path = path
        return lib
    return None


def _declare(lib: ctypes.CDLL) -> None:
    p, c, i, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t
    sigs = {
        "nvrtcVersion": [ctypes.POINTER(i), ctypes.POINTER(i)],
        "nvrtcCreateProgram": [ctypes.POINTER(p), c, c, i, ctypes.POINTER(c), ctypes.POINTER(c)],
        "nvrtcCompileProgram": [p, i, ctypes.POINTER(c)],
        "nvrtcGetProgramLogSize": [p, ctypes.POINTER(sz)], "nvrtcGetProgramLog": [p, c],
        "nvrtcGetCUBINSize": [p, ctypes.POINTER(sz)], "nvrtcGetCUBIN": [p, c],
        "nvrtcGetPTXSize": [p, ctypes.POINTER(sz)], "nvrtcGetPTX": [p, c],
        "nvrtcDestroyProgram": [ctypes.POINTER(p)],
    }
    for name, args in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, i
    lib.nvrtcGetErrorString.argtypes, lib.nvrtcGetErrorString.restype = [i], c


@functools.lru_cache(maxsize=None)
def nvrtc_version() -> Optional[str]:
    """"nvrtc 13.5 <path>" (for cache keys), or None without NVRTC."""
    lib = find_nvrtc()
    if lib is None:
        return None
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return f"nvrtc {major.value}.{minor.value} {lib.tdsl_path}"


def nvrtc_options(arch: str) -> List[str]:
    """-arch=sm_XX gives SASS (a cubin); the rest matches nvcc_flags (-O3 is NVRTC's default)."""
    if not re.fullmatch(r"sm_\d+[af]?", arch):
        raise CompileError(f"NVRTC needs a real GPU arch like sm_90a, got {arch!r}")
    return [f"-arch={arch}", "-std=c++17", "-default-device", "-w"]


def _check(lib, rc: int, what: str) -> None:
    if rc != 0:
        raise CompileError(f"NVRTC {what} failed: {lib.nvrtcGetErrorString(rc).decode()}")


def _compile(lib, source: str, name: str, options: Sequence[str]):
    headers = {h: "" for h in _EMPTY_HEADERS}
    headers["stdint.h"] = headers["stddef.h"] = _STDINT
    headers["cuda_fp16.h"] = _FP16
    headers["math.h"] = _MATH
    names = list(headers)
    arr = ctypes.c_char_p * len(names)
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), f"{name}.cu".encode(),
                                       len(names), arr(*(headers[n].encode() for n in names)),
                                       arr(*(n.encode() for n in names))), "program creation")
    opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
    rc = lib.nvrtcCompileProgram(prog, len(options), opts)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    buf = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, buf)
    return prog, rc, buf.value.decode(errors="replace")


def _take(lib, prog, getsize, get) -> bytes:
    size = ctypes.c_size_t()
    _check(lib, getsize(prog, ctypes.byref(size)), "output size")
    buf = ctypes.create_string_buffer(size.value)
    _check(lib, get(prog, buf), "output")
    return buf.raw


def _run(source: str, arch: str, name: str, ptx: bool) -> bytes:
    lib = find_nvrtc()
    if lib is None:
        raise CompileError("NVRTC is not installed (pip install nvidia-cuda-nvrtc, or set "
                           "TILEDSL_NVRTC to libnvrtc.so)")
    options = nvrtc_options(arch)
    if ptx:  # a virtual arch: NVRTC then stops at PTX
        options[0] = "-arch=compute_" + arch[3:]
    prog, rc, log = _compile(lib, source, name, options)
    try:
        if rc != 0:
            raise CompileError(f"NVRTC rejected the code generated for '{name}' "
                               f"(a bug in tiledsl, please report it):\n{log[-4000:]}")
        if ptx:
            return _take(lib, prog, lib.nvrtcGetPTXSize, lib.nvrtcGetPTX).rstrip(b"\0")
        return _take(lib, prog, lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def nvrtc_compile(source: str, arch: str, name: str) -> bytes:
    """The cubin (SASS for `arch`) of `source`, device code only. A rejected program is
    tiledsl's bug and is reported as a CompileError with NVRTC's log."""
    return _run(source, arch, name, ptx=False)


def nvrtc_ptx(source: str, arch: str, name: str) -> str:
    """The PTX of `source` for `arch`'s virtual arch: a second compile, as NVRTC gives PTX or
    SASS from one compile, not both; so only exports (and asks for the PTX) pay for it."""
    return _run(source, arch, name, ptx=True).decode()

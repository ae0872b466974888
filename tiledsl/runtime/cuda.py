"""The CUDA backend: specialised tile IR -> nvcc -> cached shared library -> `JITKernel`.

`compile_cuda` builds with nvcc for the target's arch (`Target.parse("cuda")` asks the GPU,
else `$TILEDSL_CUDA_ARCH`, else sm_90a), through the same disk cache as the C++ backend
(kind "cuda", keyed by the IR, nvcc's version, the flags and the arch). `emulate=True` builds
the same CUDA text with the host C++ compiler against `cuda_emu.h` (kind "cuda-emu"): the
kernel then runs on CPU arrays, one OS thread per CUDA thread, which is how the tests check
generated CUDA code on a machine without a GPU. `cuda_source` and `nvcc_compile` expose the two
halves for compile-only checks.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Optional, Sequence

import tvm_ffi
import tvm_ffi.libinfo as libinfo

from .. import ir
from ..errors import CompileError
from ..target import Target
from . import cache
from .build import compile_shared, compiler_info
from .cpp import tiledsl_fingerprint, tvm_ffi_version
from .kernel import JITKernel
from .report import CompileReport

__all__ = ["compile_cuda", "cuda_source", "nvcc_compile", "find_nvcc", "nvcc_flags", "EMU_HEADER"]

EMU_HEADER = Path(__file__).with_name("cuda_emu.h")


@functools.lru_cache(maxsize=None)
def find_nvcc() -> Optional[tuple]:
    """(nvcc path, CUDA_HOME, version line), or None when there is no CUDA toolkit."""
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    for home in filter(None, homes):
        path = os.path.join(home, "bin", "nvcc")
        if os.path.exists(path):
            break
    else:
        path = shutil.which("nvcc")
        if path is None:
            return None
        home = os.path.dirname(os.path.dirname(os.path.realpath(path)))
    out = subprocess.run([path, "--version"], capture_output=True, text=True,
                         env={**os.environ, "CUDA_HOME": home})
    lines = [l for l in out.stdout.splitlines() if l.strip()]
    return path, home, (lines[-1] if lines else "unknown")


def nvcc_flags(arch: str) -> List[str]:
    num = arch[3:]
    return ["-O3", "-std=c++17", f"-gencode=arch=compute_{num},code=sm_{num}", "-Xcompiler", "-fPIC",
            "-shared", "-w"]


def emu_flags() -> List[str]:
    return ["-O1", "-std=c++20", "-fPIC", "-shared", "-pthread", "-w", "-DTDSL_EMU",
            "-include", str(EMU_HEADER), "-x", "c++"]


def cuda_source(func: ir.PrimFunc, target: Target) -> tuple:
    """(lowered IR, CUDA source) for `func` (named as its symbol)."""
    from .. import transform
    from ..codegen.cuda import render_cuda
    lowered = transform.run(func, target)
    return lowered, render_cuda(lowered, func, func.name)


def nvcc_compile(src: Path, out: Path, arch: str, what: str) -> None:
    found = find_nvcc()
    if found is None:
        raise CompileError("no CUDA toolkit found (set CUDA_HOME, or put nvcc on PATH)")
    nvcc, home, _ = found
    libdir = os.path.dirname(libinfo.find_libtvm_ffi())
    cmd = [nvcc, *nvcc_flags(arch), f"-I{libinfo.find_include_path()}",
           f"-I{libinfo.find_dlpack_include_path()}", str(src), "-o", str(out),
           f"-L{libdir}", "-ltvm_ffi", f"-Xlinker=-rpath,{libdir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CUDA_HOME": home})
    if proc.returncode != 0:
        raise CompileError(f"nvcc rejected the code generated for '{what}' "
                           f"(a bug in tiledsl, please report it):\n{proc.stderr[-4000:]}")


def compile_cuda(func: ir.PrimFunc, target: Target, out_idx: Sequence[int] = (),
                 report: Optional[CompileReport] = None, emulate: bool = False) -> JITKernel:
    """Build (or load from the disk cache) `func` for CUDA; see the module docstring."""
    report = report or CompileReport(func.name)
    symbol = func.name
    if emulate:
        cxx, version = compiler_info()
        tool, flags = [cxx, version], emu_flags()
    else:
        found = find_nvcc()
        if found is None:
            raise CompileError("no CUDA toolkit found (set CUDA_HOME, or put nvcc on PATH)")
        tool, flags = [found[0], found[2]], nvcc_flags(target.arch)
    fields = {"ir": func.script(), "target": {"kind": "cuda", "arch": target.arch},
              "compiler": tool, "flags": flags, "tiledsl": tiledsl_fingerprint(),
              "tvm_ffi": tvm_ffi_version()}
    kind = "cuda-emu" if emulate else "cuda"

    def build(tmp: Path) -> dict:
        with report.stage("passes+codegen"):
            lowered, source = cuda_source(func, target)
        lib = cache.library_name(symbol, cache.make_key(kind, fields))
        (tmp / f"{symbol}.cu").write_text(source)
        with report.stage("g++ (emulation)" if emulate else "nvcc"):
            if emulate:
                compile_shared(tmp / f"{symbol}.cu", tmp / lib, flags, symbol)
            else:
                nvcc_compile(tmp / f"{symbol}.cu", tmp / lib, target.arch, symbol)
        return {"library": lib, "source": f"{symbol}.cu", "symbol": symbol,
                "written": sorted(ir.stored_buffers(lowered))}

    with report.stage("cache"):
        entry = cache.lookup_or_build(kind, fields, build)
    module = tvm_ffi.load_module(str(entry.file(entry.meta["library"])))
    report.log("compiled" if entry.built else "loaded", target, entry.key)
    from .. import transform
    kernel = JITKernel(func, lambda: transform.run(func, target), entry.file(entry.meta["source"]).read_text,
                       str(entry.file(entry.meta["library"])), module[symbol], out_idx, target,
                       written=entry.meta["written"], cache_key=entry.key)
    kernel._module = module
    return kernel

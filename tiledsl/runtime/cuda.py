"""The CUDA backend: specialised tile IR -> cubin + host library (cached) -> `JITKernel`.

Two ways to build, chosen by `cuda_compiler` (like the CPU backend): "nvrtc" compiles the
device code in process to a cubin for the target's arch (runtime/nvrtc.py) while the host
compiler builds the argument-checking host library (codegen/cuda_host.py) in parallel; the
cubin becomes a `tiledsl.cuda` module object (runtime/cuda_module.cc) that the host library
imports and calls. "nvcc" builds one library from the whole `.cu` text, launching with `<<<>>>`.
Both go through the disk cache (kinds "cuda-nvrtc", "cuda"), keyed by the IR, the compilers'
versions, flags, arch and out_idx; the arch comes from `Target.parse("cuda")` (the GPU, else
`$TILEDSL_CUDA_ARCH`, else sm_90a). `emulate=True` builds
the same CUDA text with the host C++ compiler against `cuda_emu.h` (kind "cuda-emu"): the
kernel then runs on CPU arrays, one OS thread per CUDA thread, which is how the tests check
generated CUDA code on a machine without a GPU. `cuda_source`, `nvcc_compile` and
`nvrtc_cubin` expose the halves for compile-only checks.

`export_library` of an NVRTC-built kernel writes one library: the host code, the module in
`__tvm_ffi__library_bin` (with its PTX) and the module runtime's object, so `tvm_ffi.load_module`
restores it in a process that never imports tiledsl.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Sequence

import tvm_ffi
import tvm_ffi.libinfo as libinfo

from .. import ir
from ..errors import CompileError
from ..target import CUDA_COMPILERS, Target
from . import cache
from .build import compile_shared, compiler_info
from .cpp import normal_out_idx, tiledsl_fingerprint, tvm_ffi_version
from .cuda_module import (KIND, ModuleImage, c_data_symbol, library_bin, module_bytes, module_from_bytes,
                          runtime_files)
from .kernel import JITKernel
from .metadata import c_metadata_function, describe
from .nvrtc import find_nvrtc, nvrtc_compile, nvrtc_options, nvrtc_ptx, nvrtc_version
from .report import CompileReport

__all__ = ["compile_cuda", "cuda_source", "nvcc_compile", "find_nvcc", "nvcc_flags", "EMU_HEADER",
           "cuda_compiler", "nvrtc_cubin", "HOST_FLAGS"]

EMU_HEADER = Path(__file__).with_name("cuda_emu.h")
NVRTC_KIND = "cuda-nvrtc"


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


HOST_FLAGS = ["-O1", "-std=c++17", "-fPIC", "-shared", "-w"]  # argument checks: -O2 costs 50% more for nothing


def cuda_compiler(target: Target) -> str:
    """How device code is compiled: the target's `-compiler=`, else `$TILEDSL_CUDA_COMPILER`,
    else "nvrtc" when libnvrtc is found, else "nvcc"."""
    choice = target.backend or os.environ.get("TILEDSL_CUDA_COMPILER", "")
    if choice:
        if choice not in CUDA_COMPILERS:
            raise ValueError(f"unknown CUDA compiler {choice!r}; expected one of {', '.join(CUDA_COMPILERS)}")
        return choice
    return "nvrtc" if find_nvrtc() is not None else "nvcc"


def nvrtc_cubin(func: ir.PrimFunc, target: Target) -> tuple:
    """(lowered IR, CudaParts, cubin) of `func` for `target.arch`, compiled by NVRTC."""
    from .. import transform
    from ..codegen.cuda import cuda_parts
    lowered = transform.run(func, target)
    parts = cuda_parts(lowered, func, func.name)
    return lowered, parts, nvrtc_compile(parts.device, target.arch, func.name)


def compile_cuda(func: ir.PrimFunc, target: Target, out_idx: Sequence[int] = (),
                 report: Optional[CompileReport] = None, emulate: bool = False) -> JITKernel:
    """Build (or load from the disk cache) `func` for CUDA; see the module docstring."""
    report = report or CompileReport(func.name)
    if not emulate:
        target = dataclasses.replace(target, backend=cuda_compiler(target))
        if target.backend == "nvrtc":
            return _compile_nvrtc(func, target, out_idx, report)
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
              "tvm_ffi": tvm_ffi_version(), "out_idx": normal_out_idx(func, out_idx)}
    kind = "cuda-emu" if emulate else "cuda"
    key = cache.make_key(kind, fields)

    def build(tmp: Path) -> dict:
        with report.stage("passes+codegen"):
            lowered, source = cuda_source(func, target)
        written = sorted(ir.stored_buffers(lowered))
        source += c_metadata_function(symbol, describe(func, out_idx, target, key, written))
        lib = cache.library_name(symbol, key)
        (tmp / f"{symbol}.cu").write_text(source)
        with report.stage("g++ (emulation)" if emulate else "nvcc"):
            if emulate:
                compile_shared(tmp / f"{symbol}.cu", tmp / lib, flags, symbol)
            else:
                nvcc_compile(tmp / f"{symbol}.cu", tmp / lib, target.arch, symbol)
        return {"library": lib, "source": f"{symbol}.cu", "symbol": symbol, "written": written}

    with report.stage("cache"):
        entry = cache.lookup_or_build(kind, fields, build)
    module = tvm_ffi.load_module(str(entry.file(entry.meta["library"])))
    report.log("compiled" if entry.built else "loaded", target, entry.key)
    kernel = JITKernel(func, lambda: _lower(func, target), entry.file(entry.meta["source"]).read_text,
                       str(entry.file(entry.meta["library"])), module[symbol], out_idx, target,
                       written=entry.meta["written"], cache_key=entry.key)
    kernel._module = module
    return kernel


def _lower(func: ir.PrimFunc, target: Target) -> ir.PrimFunc:
    from .. import transform
    return transform.run(func, target)


def _compile_nvrtc(func: ir.PrimFunc, target: Target, out_idx: Sequence[int],
                   report: CompileReport) -> JITKernel:
    symbol = func.name
    cxx, version = compiler_info()
    fields = {"ir": func.script(), "target": {"kind": "cuda", "arch": target.arch},
              "compiler": [nvrtc_version(), cxx, version], "flags": [nvrtc_options(target.arch), HOST_FLAGS],
              "tiledsl": tiledsl_fingerprint(), "tvm_ffi": tvm_ffi_version(),
              "out_idx": normal_out_idx(func, out_idx)}
    key = cache.make_key(NVRTC_KIND, fields)

    def build(tmp: Path) -> dict:
        from ..codegen.cuda import cuda_parts
        from ..codegen.cuda_host import kernel_table, render_module_host
        with report.stage("passes+codegen"):
            lowered = _lower(func, target)
            parts = cuda_parts(lowered, func, symbol)
            written = sorted(ir.stored_buffers(lowered))
            host = render_module_host(parts, func, symbol) + c_metadata_function(
                symbol, describe(func, out_idx, target, key, written, compiler="nvrtc"))
        lib = cache.library_name(symbol, key)
        (tmp / f"{symbol}.cu").write_text(parts.device)
        (tmp / f"{symbol}_host.cc").write_text(host)
        (tmp / f"{symbol}.kernels").write_text(kernel_table(parts, func.params))
        # The host compiler runs in another process meanwhile: NVRTC (through ctypes) and the
        # wait for g++ both release the GIL.
        with report.stage("nvrtc+c++"), ThreadPoolExecutor(1) as pool:
            host_build = pool.submit(compile_shared, tmp / f"{symbol}_host.cc", tmp / lib, HOST_FLAGS, symbol)
            (tmp / f"{symbol}.cubin").write_bytes(nvrtc_compile(parts.device, target.arch, symbol))
            host_build.result()
        return {"library": lib, "source": f"{symbol}.cu", "host": f"{symbol}_host.cc",
                "cubin": f"{symbol}.cubin", "kernels": f"{symbol}.kernels", "symbol": symbol,
                "written": written}

    entry = cache.lookup_or_build_reported(NVRTC_KIND, fields, build, report, ("passes+codegen", "nvrtc+c++"))
    with report.stage("load"):
        image = _image(entry, target)
        module = tvm_ffi.load_module(str(entry.file(entry.meta["library"])))
        device = module_from_bytes(module_bytes([image]))
        module.import_module(device)
        fn = module[symbol]
    report.log("compiled" if entry.built else "loaded", target, entry.key)
    # Read now: a later tiledsl.cache.clear() must not take the host code from the kernel's export.
    host = entry.file(entry.meta["host"]).read_text()
    kernel = JITKernel(func, lambda: _lower(func, target), image.source + "\n" + host,
                       str(entry.file(entry.meta["library"])), fn, out_idx, target,
                       written=entry.meta["written"], cache_key=entry.key,
                       exporter=lambda path, archs=None: export_nvrtc(host, image, func, target, path, archs))
    kernel._module = module
    kernel._device_module = device
    return kernel


def _image(entry: "cache.Entry", target: Target, ptx: str = "") -> ModuleImage:
    return ModuleImage(entry.meta["symbol"], target.arch, entry.file(entry.meta["kernels"]).read_text(),
                       entry.file(entry.meta["cubin"]).read_bytes(),
                       entry.file(entry.meta["source"]).read_text(), ptx)


def _arch_image(func: ir.PrimFunc, target: Target, arch: str, like: ModuleImage) -> ModuleImage:
    """`func` lowered and compiled again for `arch` (the GEMM rows and layouts may differ by arch);
    its kernels must take what the host code passes, as `like`'s do."""
    from ..codegen.cuda_host import kernel_table
    t = dataclasses.replace(target, arch=arch)
    _, parts, cubin = nvrtc_cubin(func, t)
    table = kernel_table(parts, func.params)
    shape = lambda tab: [(line.split()[0], line.split()[3]) for line in tab.splitlines()]  # noqa: E731
    if shape(table) != shape(like.table):
        raise CompileError(f"{func.name}: for {arch} the kernel splits into other GPU kernels than for "
                           f"{like.arch}; export the archs as separate libraries")
    return ModuleImage(func.name, arch, table, cubin, parts.device)


def export_nvrtc(host: str, image: ModuleImage, func: ir.PrimFunc, target: Target,
                 path: "str | os.PathLike", archs: Optional[Sequence[str]] = None) -> str:
    """One library at `path`: the host code, the module (with PTX) in `__tvm_ffi__library_bin` as
    [_lib imports tiledsl.cuda], and the module runtime's object, so it needs nothing of tiledsl
    to load. `archs` puts code for more GPUs in it (the kernel's own arch first if listed);
    each device runs its own arch's, else the newest of its major version below it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [image]
    for arch in archs or ():
        if arch != image.arch and arch not in (i.arch for i in images):
            nvrtc_options(arch)  # rejects a malformed arch before any work
            images.append(_arch_image(func, target, arch, image))
    images = [dataclasses.replace(i, ptx=nvrtc_ptx(i.source, i.arch, i.symbol)) for i in images]
    blob = library_bin([("_lib", b""), (KIND, module_bytes(images))], [[1], []])
    _, runtime_object = runtime_files()
    with tempfile.TemporaryDirectory(prefix="tiledsl-export-", dir=path.parent) as tmp:
        src = Path(tmp) / "export.cc"
        src.write_text(host + "\n" + c_data_symbol("__tvm_ffi__library_bin", blob))
        out = Path(tmp) / path.name
        compile_shared(src, out, HOST_FLAGS + [str(runtime_object), "-ldl"], image.symbol)
        os.replace(out, path)  # a process that has the old file loaded keeps its mapping
    return str(path)

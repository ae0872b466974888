"""tiledsl's CUDA module (`cuda_module.cc`) from Python: building its runtime once per machine,
writing its serialised bytes, and the `__tvm_ffi__library_bin` blob of an exported library.

The runtime is compiled once per machine into the disk cache (kind "cuda-runtime", keyed by its
source, the C++ compiler and tvm-ffi) as a shared library, which this process loads so that
`ffi.Module.load_from_bytes.tiledsl.cuda` exists, and as a PIC object that `export_library`
links into each exported CUDA library, so those load in a process without tiledsl.

Both byte layouts are written here and read back by C++ (the module's `FromBytes`, tvm-ffi's
`ProcessLibraryBin`); `parse_module_bytes` and `parse_library_bin` read them in Python for tests.
"""
from __future__ import annotations

import functools
import hashlib
import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

import tvm_ffi
import tvm_ffi.libinfo as libinfo

from ..errors import CompileError
from . import cache
from .build import compiler_info

__all__ = ["KIND", "ModuleImage", "module_bytes", "parse_module_bytes", "library_bin",
           "parse_library_bin", "runtime_files", "load_runtime", "module_from_bytes", "save_to_bytes"]

KIND = "tiledsl.cuda"  # the module's kind(): ffi.Module.load_from_bytes.<KIND> restores it
MAGIC = b"TDSLCU01"
SOURCE = Path(__file__).with_name("cuda_module.cc")
_FIELDS = ("symbol", "arch", "table", "cubin", "source", "ptx")


@dataclass(frozen=True)
class ModuleImage:
    """One kernel's device side: the cubin for `arch`, the kernel table (see cuda_module.cc), and
    the CUDA source and PTX that `InspectSource` shows (PTX may be empty)."""
    symbol: str
    arch: str
    table: str
    cubin: bytes
    source: str
    ptx: str = ""


def _field(b: bytes) -> bytes:
    return struct.pack("<Q", len(b)) + b


def module_bytes(images: Sequence[ModuleImage]) -> bytes:
    """The bytes `SaveToBytes` gives for a module of `images` (one per arch, one symbol), which
    `load_from_bytes` takes: MAGIC <symbol> then per image <arch> <table> <cubin> <source> <ptx>."""
    symbols = {img.symbol for img in images}
    if len(symbols) != 1:
        raise ValueError(f"a module holds one kernel's code, got {sorted(symbols)}")
    out = MAGIC + _field(images[0].symbol.encode())
    for img in images:
        for f in _FIELDS[1:]:
            v = getattr(img, f)
            out += _field(v if isinstance(v, bytes) else v.encode())
    return out


def _take(data: bytes, pos: int) -> Tuple[bytes, int]:
    if pos + 8 > len(data):
        raise ValueError("truncated tiledsl.cuda module")
    n, = struct.unpack_from("<Q", data, pos)
    if pos + 8 + n > len(data):
        raise ValueError("truncated tiledsl.cuda module")
    return data[pos + 8:pos + 8 + n], pos + 8 + n


def parse_module_bytes(data: bytes) -> List[ModuleImage]:
    """The images of a module's bytes (the inverse of `module_bytes`)."""
    if not data.startswith(MAGIC):
        raise ValueError("not a tiledsl.cuda module")
    symbol, pos = _take(data, len(MAGIC))
    images = []
    while pos < len(data):
        vals = []
        for f in _FIELDS[1:]:
            v, pos = _take(data, pos)
            vals.append(v if f == "cubin" else v.decode())
        images.append(ModuleImage(symbol.decode(), *vals))
    return images


def library_bin(modules: Sequence[Tuple[str, bytes]], imports: Sequence[Sequence[int]]) -> bytes:
    """tvm-ffi's `__tvm_ffi__library_bin` layout: <nbytes: u64> then the import tree (CSR:
    <indptr: vec<u64>> <children: vec<u64>>) and per module <kind: str> [<bytes>], where "_lib"
    (the library itself) has no bytes; str, bytes and vec are <u64 count> <items>."""
    indptr, children = [0], []
    for kids in imports:
        children += kids
        indptr.append(len(children))
    body = b"".join(struct.pack(f"<Q{len(v)}Q", len(v), *v) for v in (indptr, children))
    for kind, data in modules:
        body += _field(kind.encode()) + (b"" if kind == "_lib" else _field(data))
    return struct.pack("<Q", len(body)) + body


def parse_library_bin(blob: bytes) -> Tuple[List[Tuple[str, bytes]], List[List[int]]]:
    """(modules as (kind, bytes), each module's imports) from a `__tvm_ffi__library_bin` blob."""
    nbytes, = struct.unpack_from("<Q", blob, 0)
    data, pos = blob[8:8 + nbytes], 0
    vecs = []
    for _ in range(2):
        n, = struct.unpack_from("<Q", data, pos)
        vecs.append(list(struct.unpack_from(f"<{n}Q", data, pos + 8)))
        pos += 8 + 8 * n
    indptr, children = vecs
    modules = []
    for _ in range(len(indptr) - 1):
        kind, pos = _take(data, pos)
        payload = b""
        if kind != b"_lib":
            payload, pos = _take(data, pos)
        modules.append((kind.decode(), payload))
    if pos != len(data):
        raise ValueError("trailing bytes in __tvm_ffi__library_bin")
    return modules, [children[indptr[i]:indptr[i + 1]] for i in range(len(indptr) - 1)]


def c_data_symbol(name: str, data: bytes) -> str:
    """C defining the exported byte array `name` (the blob is binary: hex, 16 per line)."""
    rows = ",\n".join(", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16))
    return (f'extern "C" __attribute__((visibility("default"))) const unsigned char {name}[{len(data)}] = {{\n'
            f"{rows}\n}};\n")


# ---- the runtime library, built once per machine ----

def _fields() -> dict:
    cxx, version = compiler_info()
    return {"source": hashlib.sha256(SOURCE.read_bytes()).hexdigest(), "compiler": [cxx, version],
            "tvm_ffi": f"{tvm_ffi.__version__} {os.path.dirname(libinfo.find_libtvm_ffi())}"}


def _cxx(args: List[str], what: str) -> None:
    cxx, _ = compiler_info()
    cmd = [cxx, "-std=c++17", "-O2", "-fPIC", "-fvisibility=hidden", "-w", f"-I{libinfo.find_include_path()}",
           f"-I{libinfo.find_dlpack_include_path()}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(f"building the CUDA module runtime ({what}) failed:\n{proc.stderr[-4000:]}")


def runtime_files() -> Tuple[Path, Path]:
    """(shared library, PIC object) of the CUDA module runtime, from the disk cache."""
    def build(tmp: Path) -> dict:
        _cxx(["-c", str(SOURCE), "-o", str(tmp / "cuda_module.o")], "object")
        libdir = os.path.dirname(libinfo.find_libtvm_ffi())
        _cxx(["-shared", str(tmp / "cuda_module.o"), "-o", str(tmp / "libtiledsl_cuda_module.so"),
              f"-L{libdir}", "-ltvm_ffi", f"-Wl,-rpath,{libdir}", "-ldl"], "library")
        return {"library": "libtiledsl_cuda_module.so", "object": "cuda_module.o"}

    entry = cache.lookup_or_build("cuda-runtime", _fields(), build)
    return entry.file(entry.meta["library"]), entry.file(entry.meta["object"])


@functools.lru_cache(maxsize=None)
def load_runtime() -> tvm_ffi.Module:
    """Load the runtime library into this process (once): it registers the module's loader."""
    return tvm_ffi.load_module(str(runtime_files()[0]))


def module_from_bytes(data: bytes) -> tvm_ffi.Module:
    """A CUDA module object from its bytes, through the loader tvm-ffi itself would call."""
    load_runtime()
    return tvm_ffi.get_global_func(f"ffi.Module.load_from_bytes.{KIND}")(data)


def save_to_bytes(module: tvm_ffi.Module) -> bytes:
    """`module->SaveToBytes()` (tvm-ffi has no Python binding for it)."""
    load_runtime()
    return bytes(tvm_ffi.get_global_func("tiledsl.cuda.SaveToBytes")(module))

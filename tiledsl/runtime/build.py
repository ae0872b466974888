"""The C++ compiler: which one, with which flags, and one invocation of it.

What the cache needs to know about the compiler (its path and version line) is probed once per
compiler binary: `g++ --version` costs ~5 ms, most of a warm load from disk, so the answer is
remembered in `<cache>/probes/` under the binary's (path, size, mtime, inode): a compiler
replaced in place gets probed again. (This is a memo of a probe, as ccache's default
`compiler_check=mtime`; cache keys themselves hold the version text, never a file time.)
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Sequence

import tvm_ffi.libinfo as libinfo

from ..errors import CompileError
from . import cache

__all__ = ["compiler_info", "cpu_flags", "compile_shared", "build_cpu", "cache_dir"]

log = logging.getLogger("tiledsl.build")


def cache_dir() -> Path:
    """The cache root (kept for callers of the first version; see `tiledsl.runtime.cache.root`)."""
    return cache.root()


@functools.lru_cache(maxsize=None)
def compiler_info() -> tuple:
    """(path, version line) of the C++ compiler: `$CXX`, else g++, else c++ / clang++."""
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    for c in candidates:
        path = shutil.which(c)
        if path:
            return path, _version_line(path)
    raise CompileError("no C++ compiler found (set CXX, or install g++)")


def _version_line(path: str) -> str:
    real = os.path.realpath(path)
    st = os.stat(real)
    probe = f"{real}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    memo = cache.root() / "probes" / f"cxx-{hashlib.sha256(probe.encode()).hexdigest()[:24]}.json"
    try:
        return cache.read_json_private(memo, "compiler probe")["version"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    out = subprocess.run([path, "--version"], capture_output=True, text=True)
    version = (out.stdout.splitlines() or ["unknown"])[0]
    try:
        cache.write_json_atomic(memo, {"compiler": real, "version": version})
    except OSError:
        pass  # a read-only cache only costs the probe next time
    return version


def cpu_flags(isa_flags: Sequence[str] = ("-march=native",)) -> List[str]:
    # -fno-math-errno lets sqrt and friends vectorise; no -ffast-math: results must match numpy.
    return ["-O3", *isa_flags, "-fopenmp", "-std=c++17", "-fPIC", "-shared",
            "-fno-math-errno", "-fno-semantic-interposition", "-w"]


def compile_shared(src: Path, out: Path, flags: Sequence[str], what: str) -> None:
    """Compile the C++ file `src` into the shared library `out`, linked against libtvm_ffi."""
    cxx, _ = compiler_info()
    libdir = os.path.dirname(libinfo.find_libtvm_ffi())
    cmd = [cxx, *flags, f"-I{libinfo.find_include_path()}", f"-I{libinfo.find_dlpack_include_path()}",
           str(src), "-o", str(out), f"-L{libdir}", "-ltvm_ffi", f"-Wl,-rpath,{libdir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompileError(f"the C++ compiler rejected the code generated for '{what}' "
                           f"(a bug in tiledsl, please report it):\n{proc.stderr[-4000:]}")


def build_cpu(source: str, name: str, isa_flags: Sequence[str] = ("-march=native",),
              machine: str = "") -> Path:
    """Compile C++ `source` exporting `__tvm_ffi_<name>` through the disk cache; the library path.

    `machine` names what `-march=native` means here (CPU name and features). Kernels go through
    `tiledsl.runtime.cpp`, which keys on the IR instead and skips lowering on a hit."""
    from .cpp import tiledsl_fingerprint, tvm_ffi_version
    cxx, version = compiler_info()
    flags = cpu_flags(isa_flags)
    fields = {"source": source, "compiler": [cxx, version], "flags": flags, "machine": machine,
              "tiledsl": tiledsl_fingerprint(), "tvm_ffi": tvm_ffi_version()}

    def build(tmp: Path) -> dict:
        lib = cache.library_name(name, cache.make_key("cpp-source", fields))
        (tmp / f"{name}.cc").write_text(source)
        compile_shared(tmp / f"{name}.cc", tmp / lib, flags, name)
        return {"library": lib, "symbol": name}

    entry = cache.lookup_or_build("cpp-source", fields, build)
    return entry.file(entry.meta["library"])

"""Compile generated C++ into a shared library whose file name carries its content hash.

A library loaded once stays loaded under its path (dlopen caches handles), so a changed
kernel must never reuse a path: the name is the hash of everything that shapes the binary
(source, compiler and its version, flags, tiledsl and tvm-ffi versions). Builds write to a
temporary name and rename into place, so concurrent builds of one kernel all succeed.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Sequence

import tvm_ffi
import tvm_ffi.libinfo as libinfo

from ..errors import CompileError

__all__ = ["build_cpu", "cache_dir", "compiler_info"]

log = logging.getLogger("tiledsl")


def cache_dir() -> Path:
    """`$TILEDSL_CACHE_DIR`, else `$XDG_CACHE_HOME/tiledsl`, else `~/.cache/tiledsl`."""
    env = os.environ.get("TILEDSL_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tiledsl"


@functools.lru_cache(maxsize=None)
def compiler_info() -> tuple:
    """(path, version line) of the C++ compiler: `$CXX`, else g++, else c++ / clang++."""
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    for c in candidates:
        path = shutil.which(c)
        if path:
            out = subprocess.run([path, "--version"], capture_output=True, text=True)
            return path, (out.stdout.splitlines() or ["unknown"])[0]
    raise CompileError("no C++ compiler found (set CXX, or install g++)")


def cpu_flags(isa_flags: Sequence[str] = ("-march=native",)) -> List[str]:
    # -fno-math-errno lets sqrt and friends vectorise; no -ffast-math: results must match numpy.
    return ["-O3", *isa_flags, "-fopenmp", "-std=c++17", "-fPIC", "-shared",
            "-fno-math-errno", "-fno-semantic-interposition", "-w"]


def build_cpu(source: str, name: str, isa_flags: Sequence[str] = ("-march=native",),
              machine: str = "") -> Path:
    """Compile `source` (or reuse the identical earlier build) and return the library path.

    `machine` names what `-march=native` means here (CPU name and features): two hosts
    sharing a cache directory must not share a binary built for only one of them.
    """
    cxx, version = compiler_info()
    flags = cpu_flags(isa_flags)
    key = hashlib.sha256("\n".join([source, cxx, version, *flags, machine, _versions()]).encode()).hexdigest()
    folder = cache_dir() / "lib" / key[:2]
    lib = folder / f"{name}_{key[:24]}.so"
    if lib.exists():
        return lib
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
        src = Path(tmp) / f"{name}.cc"
        src.write_text(source)
        obj = Path(tmp) / lib.name
        libdir = os.path.dirname(libinfo.find_libtvm_ffi())
        cmd = [cxx, *flags, f"-I{libinfo.find_include_path()}", f"-I{libinfo.find_dlpack_include_path()}",
               str(src), "-o", str(obj), f"-L{libdir}", "-ltvm_ffi", f"-Wl,-rpath,{libdir}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompileError(f"the C++ compiler rejected the code generated for '{name}' "
                               f"(a bug in tiledsl, please report it):\n{proc.stderr[-4000:]}")
        log.info("compiled %s in %.2f s", name, time.perf_counter() - t0)
        os.replace(src, lib.with_suffix(".cc"))  # kept beside the library, for reading
        os.replace(obj, lib)
    return lib


@functools.lru_cache(maxsize=None)
def _versions() -> str:
    from .. import __version__
    return f"tiledsl={__version__} tvm_ffi={tvm_ffi.__version__}"

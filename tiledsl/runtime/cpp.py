"""The C++ backend: specialised tile IR -> cached shared library -> `JITKernel`.

The disk key is computed before any lowering, from the printed specialised IR and everything
else that shapes the binary (`key_fields`), so a kernel found on disk skips the passes, the
code generator and the compiler: a fresh process gets it in milliseconds. Lowering (for
`kernel.get_ir(lowered=True)`) then happens only when asked for; the C++ source is read from
the entry.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Optional, Sequence

import tvm_ffi
import tvm_ffi.libinfo as libinfo

from .. import ir
from ..target import Target, cpu_isa_flags
from . import cache
from .build import compile_shared, compiler_info, cpu_flags
from .kernel import JITKernel
from .metadata import c_metadata_function, describe
from .report import CompileReport

__all__ = ["compile_cpp", "key_fields", "normal_out_idx", "tiledsl_fingerprint", "tvm_ffi_version", "KIND"]

KIND = "cpp"


@functools.lru_cache(maxsize=None)
def tiledsl_fingerprint() -> str:
    """tiledsl's version and a hash of its own source files.

    The version alone would keep serving binaries built by an older code generator to anyone
    who edits or upgrades tiledsl without bumping it; hashing the ~70 files costs ~3 ms. It is
    taken when tiledsl is imported (below), as close as it gets to the code this process runs."""
    from .. import __version__
    pkg = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for p in sorted(pkg.rglob("*")):
        if p.suffix in (".py", ".h", ".cc", ".cu") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(pkg)).encode() + b"\0" + p.read_bytes() + b"\0")
    return f"{__version__}+{h.hexdigest()[:16]}"


@functools.lru_cache(maxsize=None)
def tvm_ffi_version() -> str:
    """The tvm-ffi version and the directory its library is linked from (the libraries' rpath)."""
    return f"{tvm_ffi.__version__} {os.path.dirname(libinfo.find_libtvm_ffi())}"


def key_fields(func: ir.PrimFunc, target: Target, out_idx: Sequence[int] = ()) -> dict:
    """Everything that determines the library built for `func` (already named as its symbol);
    `out_idx` is in the library's metadata, hence in the key."""
    cxx, version = compiler_info()
    return {
        "out_idx": normal_out_idx(func, out_idx),
        "ir": func.script(),
        "target": {"kind": target.kind, "arch": target.arch, "features": list(target.features),
                   "isa": target.isa},
        "compiler": [cxx, version],
        "flags": cpu_flags(cpu_isa_flags(target)),
        "tiledsl": tiledsl_fingerprint(),
        "tvm_ffi": tvm_ffi_version(),
    }


def normal_out_idx(func: ir.PrimFunc, out_idx: Sequence[int]) -> list:
    """`out_idx` as JITKernel reads it: sorted non-negative positions, each once."""
    n = len(func.params)
    return sorted({int(i) % n for i in out_idx}) if n else []


def compile_cpp(func: ir.PrimFunc, target: Target, out_idx: Sequence[int] = (),
                report: Optional[CompileReport] = None) -> JITKernel:
    """Build (or load from the disk cache) `func`, whose name is the exported symbol."""
    report = report or CompileReport(func.name)
    symbol = func.name
    with report.stage("key"):
        fields = key_fields(func, target, out_idx)
        key = cache.make_key(KIND, fields)

    def build(tmp: Path) -> dict:
        # Imported here (counted in the stages): a process that only loads kernels from disk
        # never pays for importing the passes and the code generator (~40 ms).
        with report.stage("passes"):
            from .. import transform
            lowered = transform.run(func, target)
        with report.stage("codegen"):
            from ..codegen.cpu import render_cpu
            written = sorted(ir.stored_buffers(lowered))
            meta = describe(func, out_idx, target, key, written)
            source = render_cpu(lowered, func, symbol) + c_metadata_function(symbol, meta)
        lib = cache.library_name(symbol, key)
        (tmp / f"{symbol}.cc").write_text(source)
        with report.stage("c++"):
            compile_shared(tmp / f"{symbol}.cc", tmp / lib, fields["flags"], symbol)
        return {"library": lib, "source": f"{symbol}.cc", "symbol": symbol,
                "written": written}

    entry = cache.lookup_or_build_reported(KIND, fields, build, report, ("passes", "codegen", "c++"))
    with report.stage("load"):
        module = tvm_ffi.load_module(str(entry.file(entry.meta["library"])))
        fn = module[symbol]
    report.log("compiled" if entry.built else "loaded", target, key)
    # Read now (~20 us): a later tiledsl.cache.clear() must not take the source from the kernel.
    source = entry.file(entry.meta["source"]).read_text()
    kernel = JITKernel(func, lambda: _lower(func, target), source,
                       str(entry.file(entry.meta["library"])), fn, out_idx, target,
                       written=entry.meta["written"], cache_key=key)
    kernel._module = module  # the library stays loaded as long as the kernel lives
    return kernel


def _lower(func: ir.PrimFunc, target: Target) -> ir.PrimFunc:
    from .. import transform
    return transform.run(func, target)


tiledsl_fingerprint()  # at import: the source this process runs, not a later edit of it

"""Kernel metadata in the library, and `tiledsl.load`: a `JITKernel` back from an exported `.so`.

Every library tiledsl builds exports `__tvm_ffi__metadata_<name>`, tvm-ffi's own metadata symbol
(`Module.get_function_metadata(name)` in Python, `ModuleObj::GetFunctionMetadata` in C++): a
function returning a JSON string, in the JSON form of ffi containers (objects, arrays, strings,
plain ints). `read_metadata(module, name)` hands it back parsed by tvm-ffi's own JSON parser, so
it arrives as an `ffi.Map` of `ffi.Array`s, like TVM's function metadata.

What is in it (`FORMAT` 1): the kernel's name and parameters (tensor or scalar, dtype, shape with
symbolic dimensions), which tensors it writes, `out_idx`, the target (kind, arch, features, ISA,
backend), tiledsl's version and the cache key. That is all `JITKernel` needs besides the
function itself, so `load(path)` rebuilds a kernel, output allocation included, from the library
alone; the kernel's Python source and its IR body are not needed (nor kept: `get_ir` has only
the signature).

Shapes: an int, a symbolic dimension's name, or `[op, a, b]` for an expression of them.
"""
from __future__ import annotations

import json
import os
from typing import Any, List, Optional, Sequence

from .. import ir
from ..ir import Buffer, Const, Var
from ..ir.dtype import dtype as parse_dtype
from ..target import Target

__all__ = ["FORMAT", "describe", "encode", "c_metadata_function", "llvm_metadata_function",
           "read_metadata", "kernel_names", "signature", "load"]

FORMAT = 1
PREFIX = "__tvm_ffi__metadata_"  # tvm::ffi::symbol::tvm_ffi_metadata_prefix


def _shape_dim(e: Any) -> Any:
    if isinstance(e, Const):
        return int(e.value)
    if isinstance(e, Var):
        return e.name
    if isinstance(e, ir.BinOp):
        return [e.op, _shape_dim(e.a), _shape_dim(e.b)]
    raise ValueError(f"cannot describe shape expression {e!r} in kernel metadata")


def _param(p: Any) -> dict:
    if isinstance(p, Buffer):
        return {"name": p.name, "kind": "tensor", "dtype": p.dtype.name,
                "shape": [_shape_dim(s) for s in p.shape]}
    return {"name": p.name, "kind": "scalar", "dtype": p.dtype.name}


def describe(func: ir.PrimFunc, out_idx: Sequence[int], target: Target, cache_key: str,
             written: Sequence[str], **extra: Any) -> dict:
    """The metadata of `func` (named as its symbol) as plain JSON values; `extra` adds
    target-specific entries (CUDA: the kernels' launch shapes)."""
    from .. import __version__
    n = len(func.params)
    return {
        "format": FORMAT, "name": func.name, "tiledsl": __version__, "cache_key": cache_key,
        "target": {"kind": target.kind, "arch": target.arch, "features": list(target.features),
                   "isa": target.isa, "backend": target.backend},
        "params": [_param(p) for p in func.params],
        "out_idx": sorted({int(i) % n for i in out_idx}) if n else [],
        "written": sorted(written), **extra,
    }


def encode(meta: dict) -> str:
    """The JSON text stored in the library (ASCII, key order fixed: it is part of the binary)."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def c_metadata_function(symbol: str, meta: dict) -> str:
    """C for `__tvm_ffi__metadata_<symbol>` (against tvm/ffi/c_api.h only). The string is made by
    TVMFFIStringFromByteArray so it lives in libtvm_ffi, as tvm-ffi's own export macro does."""
    text = encode(meta)
    return (f"\nstatic const char tdsl_metadata_{symbol}[] = {_c_string(text)};\n"
            f'#ifdef __cplusplus\nextern "C"\n#endif\n'
            f'__attribute__((visibility("default"))) int {PREFIX}{symbol}(void* self, const TVMFFIAny* args, '
            f"int32_t num_args, TVMFFIAny* result) {{\n"
            f"  TVMFFIByteArray s = {{tdsl_metadata_{symbol}, {len(text)}}};\n"
            f"  return TVMFFIStringFromByteArray(&s, result);\n}}\n")


def llvm_metadata_function(symbol: str, meta: dict, declared: str = "") -> str:
    """The same function as LLVM IR text, appended to a kernel's module; `declared` is that
    module's text, so a declaration it already has is not repeated."""
    data = encode(meta).encode()
    body = "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:02X}" for b in data)
    decl = "declare i32 @TVMFFIStringFromByteArray(ptr, ptr)\n"
    return (f"\n@tdsl_metadata_{symbol} = private unnamed_addr constant [{len(data)} x i8] c\"{body}\"\n"
            + ("" if "@TVMFFIStringFromByteArray(" in declared else decl)
            + f"define i32 @{PREFIX}{symbol}(ptr %self, ptr %args, i32 %n, ptr %result) {{\n"
            f"  %s = alloca {{ ptr, i64 }}, align 8\n"
            f"  store ptr @tdsl_metadata_{symbol}, ptr %s, align 8\n"
            f"  %len = getelementptr inbounds {{ ptr, i64 }}, ptr %s, i32 0, i32 1\n"
            f"  store i64 {len(data)}, ptr %len, align 8\n"
            f"  %rc = call i32 @TVMFFIStringFromByteArray(ptr %s, ptr %result)\n"
            f"  ret i32 %rc\n}}\n")


def read_metadata(module: Any, name: str) -> Any:
    """The metadata of kernel `name` in a loaded `tvm_ffi.Module`, as an `ffi.Map` (parsed by
    tvm-ffi's `ffi.json.Parse`); None when the library has none."""
    import tvm_ffi
    from tvm_ffi import _ffi_api
    text = _ffi_api.ModuleGetFunctionMetadata(module, name, True)
    return None if text is None else tvm_ffi.get_global_func("ffi.json.Parse")(text)


def kernel_names(path: str) -> List[str]:
    """The tiledsl kernels a library exports, found by their metadata symbols (a loaded
    `tvm_ffi.Module` cannot list its functions, so the file's dynamic symbols are read)."""
    from .elf import dynamic_symbols
    return sorted(s[len(PREFIX):] for s in dynamic_symbols(path) if s.startswith(PREFIX))


def _expr(v: Any, syms: dict) -> Any:
    if isinstance(v, int):
        return Const(v)
    if isinstance(v, str):
        return syms.setdefault(v, Var(v))
    op, a, b = v
    return ir.binop(op, _expr(a, syms), _expr(b, syms))


def signature(meta: Any) -> ir.PrimFunc:
    """A PrimFunc with the kernel's parameters and an empty body: what `JITKernel` reads."""
    syms: dict = {}
    params = []
    for p in meta["params"]:
        dt = parse_dtype(str(p["dtype"]))
        if p["kind"] == "tensor":
            params.append(Buffer(str(p["name"]), tuple(_expr(_plain(s), syms) for s in p["shape"]), dt))
        else:
            params.append(Var(str(p["name"]), dt))
    return ir.PrimFunc(str(meta["name"]), tuple(params), ir.Seq(()))


def _plain(v: Any) -> Any:
    """ffi containers -> Python values (ffi.Array of str / int -> list)."""
    if isinstance(v, (int, str)):
        return int(v) if isinstance(v, int) else str(v)
    return [_plain(x) for x in v]


def load(path: "str | os.PathLike", name: Optional[str] = None) -> Any:
    """A `JITKernel` from a library written by `kernel.export_library(path)` (any target):
    the same calling convention, `out_idx` outputs allocated, argument checks in the library.

        k = tiledsl.load("gemm.so")
        c = k(a, b)
    """
    import tvm_ffi
    from .kernel import JITKernel
    path = os.fspath(path)
    if name is None:
        names = kernel_names(path)
        if len(names) != 1:
            raise ValueError(f"{path} exports {len(names)} tiledsl kernels ({', '.join(names) or 'none'}); "
                             f"pass name= to choose one")
        name = names[0]
    module = tvm_ffi.load_module(path)
    meta = read_metadata(module, name)
    if meta is None:
        raise ValueError(f"{path}: kernel '{name}' has no tiledsl metadata (exported by an older "
                         f"tiledsl, or not by tiledsl); load it with tvm_ffi.load_module instead")
    if int(meta["format"]) > FORMAT:
        raise ValueError(f"{path}: metadata format {meta['format']} is newer than this tiledsl reads ({FORMAT})")
    func = signature(meta)
    t = meta["target"]
    target = Target(str(t["kind"]), str(t["arch"]), tuple(str(f) for f in t["features"]), str(t["isa"]),
                    str(t["backend"]))

    def no_ir() -> ir.PrimFunc:
        raise ValueError(f"{name}: loaded from {path}, which holds the compiled kernel only; its "
                         f"lowered IR is not in the library")

    def source() -> str:  # a CUDA library's module keeps its CUDA source; a CPU library none
        for m in [module, *module.imports]:
            text = m.inspect_source("cuda")
            if text:
                return text
        return "(the library holds no source)"

    kernel = JITKernel(func, no_ir, source, path, module[name], [int(i) for i in meta["out_idx"]],
                       target, written=[str(w) for w in meta["written"]], cache_key=str(meta["cache_key"]))
    kernel._module = module
    return kernel

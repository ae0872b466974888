"""The LLVM backend's code generator: the flattened loop IR and its `__tvm_ffi_<name>` entry
point as one LLVM IR module, with no C++ compiler involved (tiledsl.runtime.llvm_jit compiles
it in process). The statements and expressions keep the C++ backend's meaning
(codegen/cpu.py), the entry point its checks and messages (codegen/host.py).
"""
from __future__ import annotations

from ... import ir
from ...ir import Buffer, stored_buffers
from ..cpu import _shape_vars
from .builder import Module, Val
from .expr import PRELUDE, value_type
from .host import render_entry
from .kernel import BodyEmitter, RenderOptions, ident
from .runtime import RUNTIME_SYMBOLS, render_runtime

__all__ = ["render_llvm", "render_runtime", "RenderOptions", "RUNTIME_SYMBOLS"]


def render_llvm(lowered: ir.PrimFunc, original: ir.PrimFunc, opts: RenderOptions) -> str:
    """LLVM IR for `lowered` (flattened loop IR) exporting `__tvm_ffi_<opts.symbol>`.

    `original` is the function before lowering: its parameters carry the N-d shapes the entry
    point checks, as for the C++ backend.
    """
    m = Module(f"; tiledsl: kernel '{opts.symbol}' for the CPU (LLVM backend)")
    m.define("prelude", PRELUDE)
    written = stored_buffers(lowered)
    shape_vars = _shape_vars(original)
    params, buffers, values = [], {}, {}
    for p in original.params:
        if isinstance(p, Buffer):
            name = "b." + ident(p.name)
            params.append(("ptr", name, "noalias" + ("" if p.name in written else " readonly")))
            buffers[p.name] = Val("%" + name, "ptr")
        else:
            params.append((value_type(p.dtype), "v." + ident(p.name), ""))
            values[p] = Val("%v." + ident(p.name), value_type(p.dtype))
    for v in shape_vars:
        params.append((value_type(v.dtype), "v." + ident(v.name), ""))
        values[v] = Val("%v." + ident(v.name), value_type(v.dtype))
    body = f"{opts.symbol}_body"
    fn = m.function(body, "i32", params, attrs=opts.fn_attrs)
    e = BodyEmitter(fn, m, opts, [0])
    e.buffers, e.values = buffers, values
    e.stmt(lowered.body)
    fn.emit("ret i32 0")
    render_entry(m, original, opts.symbol, body, written, shape_vars, opts.f16_hw)
    return m.render()

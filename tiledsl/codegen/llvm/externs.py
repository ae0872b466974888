"""LLVM IR for the extern functions whose definitions the IR carries as C (`ExternCall`s made
by the frontend, not by a GEMM row of this backend): `T.print`'s printing functions.

A print's line is fixed by its `PrintSpec` (language/printing.py), so the LLVM function
printf's the same format the C one does: `msg [bx=0, i=3]: 1.5`.
"""
from __future__ import annotations

from ... import ir
from ...ir import ExternCall
from .builder import c_string
from .expr import value_type

__all__ = ["llvm_definition"]


def llvm_definition(call: ExternCall) -> str:
    """The LLVM IR defining `call.name`: the definition itself when it is LLVM IR already."""
    text = call.definition.lstrip()
    if text.startswith(("define", "declare", ";")):
        return call.definition
    if call.name.startswith("tdsl_print_"):
        from ...language.printing import SPECS
        return _print_function(call.name, SPECS[call.name])
    raise NotImplementedError(f"extern '{call.name}' has only a C++ definition; the LLVM backend cannot "
                              f"compile it (a GEMM row for the C++ backend chosen on the LLVM one is a bug "
                              f"in tiledsl)")


def _print_function(name: str, spec) -> str:
    dt = ir.dtype(spec.dtype)
    n_int = len(spec.context) + (spec.ndim if spec.buffer is not None else 0)
    parts = [_pct(spec.msg)] if spec.msg else []
    if spec.context:
        parts.append("[" + ", ".join(f"{_pct(n)}=%lld" for n in spec.context) + "]")
    if spec.buffer is not None:
        parts.append(_pct(spec.buffer) + "[" + ", ".join(["%lld"] * spec.ndim) + "]")
    vt = value_type(dt)
    lines = []
    if dt.is_bool:
        vfmt = "%s"
        lines += [f"  %vs = select i1 %v, ptr @{name}.true, ptr @{name}.false"]
        varg = "ptr %vs"
    elif dt.is_int:
        vfmt = "%llu" if dt.kind == "uint" else "%lld"
        ext = "" if dt.bits == 64 else f"  %vw = {'zext' if dt.kind == 'uint' else 'sext'} {vt} %v to i64"
        lines += [ext] if ext else []
        varg = "i64 " + ("%v" if not ext else "%vw")
    else:
        vfmt = "%.17g" if dt.name == "float64" else "%.9g"
        if vt != "double":
            lines += ["  %vw = fpext float %v to double"]
        varg = "double " + ("%v" if vt == "double" else "%vw")
    fmt, n = c_string((" ".join(parts) + ": " if parts else "") + vfmt + "\n")
    params = [f"i64 %c{k}" for k in range(n_int)] + [f"{vt} %v"]
    args = [f"i64 %c{k}" for k in range(n_int)] + [varg]
    t_lit, t_n = c_string("True")
    f_lit, f_n = c_string("False")
    return "\n".join([
        "declare i32 @printf(ptr, ...) nounwind",
        "declare i32 @fflush(ptr) nounwind",
        f"@{name}.fmt = private unnamed_addr constant [{n} x i8] {fmt}",
        f"@{name}.true = private unnamed_addr constant [{t_n} x i8] {t_lit}",
        f"@{name}.false = private unnamed_addr constant [{f_n} x i8] {f_lit}",
        f"define internal void @{name}({', '.join(params)}) nounwind {{",
        *lines,
        f"  %r = call i32 (ptr, ...) @printf(ptr @{name}.fmt, {', '.join(args)})",
        "  %f = call i32 @fflush(ptr null)",  # every stream: the C version flushes stdout
        "  ret void",
        "}"])


def _pct(text: str) -> str:
    return text.replace("%", "%%")

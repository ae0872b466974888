"""`T.print(value_or_buffer, msg="")`: debug printing that every target agrees on.

A print becomes an `ExternCall` to a generated C function (so it flows through every pass
untouched, and global loads in it are guarded like any other), one per distinct format. The
format is a `PrintSpec` kept in `SPECS` under the function's name, which the numpy interpreter
reads to print the same line the C code prints:

    msg [bx=0, i=3]: 1.5            T.print(x, "msg") inside a block and a T.Parallel loop
    msg [bx=0] A_s[2, 7]: 1.5       T.print(A_s, "msg"): one line per element, row-major

The bracket lists the block indices and the loop variables around the print. On the CPU the
blocks run on several cores, so lines of different blocks may interleave.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

from .. import ir
from ..errors import TypeCheckError
from ..ir import Buffer, Expr, Var
from ..codegen.names import c_value_type

__all__ = ["PrintSpec", "SPECS", "print_handler", "format_line"]


@dataclass(frozen=True)
class PrintSpec:
    """What one print call shows: `msg`, the names of the context variables passed first,
    the buffer (and its rank) when it prints elements, and the value's dtype."""
    msg: str
    context: tuple
    buffer: Optional[str]
    ndim: int
    dtype: str

    @property
    def name(self) -> str:
        return "tdsl_print_" + hashlib.sha1(repr(self).encode()).hexdigest()[:12]


SPECS: dict = {}


def format_line(spec: PrintSpec, context: tuple, index: tuple, value: str) -> str:
    """The printed line, given the context values, element index and formatted value."""
    parts = [spec.msg] if spec.msg else []
    if spec.context:
        parts.append("[" + ", ".join(f"{n}={v}" for n, v in zip(spec.context, context)) + "]")
    if spec.buffer is not None:
        parts.append(f"{spec.buffer}[{', '.join(str(i) for i in index)}]")
    return (" ".join(parts) + ": " if parts else "") + value


def _c_string(text: str) -> str:
    out = []
    for b in text.encode():
        ch = chr(b)
        if ch == "%":
            out.append("%%")
        elif ch in "\\\"":
            out.append("\\" + ch)
        elif 32 <= b < 127:
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return "".join(out)


def _c_definition(spec: PrintSpec) -> str:
    dt = ir.dtype(spec.dtype)
    n_int = len(spec.context) + (spec.ndim if spec.buffer is not None else 0)
    params = [f"int64_t c{k}" for k in range(n_int)] + [f"{c_value_type(dt)} v"]
    fmt_parts = [_c_string(spec.msg)] if spec.msg else []
    if spec.context:
        fmt_parts.append("[" + ", ".join(f"{_c_string(n)}=%lld" for n in spec.context) + "]")
    if spec.buffer is not None:
        fmt_parts.append(_c_string(spec.buffer) + "[" + ", ".join(["%lld"] * spec.ndim) + "]")
    if dt.is_bool:
        vfmt, varg = "%s", 'v ? "True" : "False"'
    elif dt.is_int:
        vfmt, varg = ("%llu", "(unsigned long long)v") if dt.kind == "uint" else ("%lld", "(long long)v")
    else:
        vfmt, varg = ("%.17g" if dt.name == "float64" else "%.9g"), "(double)v"
    fmt = (" ".join(fmt_parts) + ": " if fmt_parts else "") + vfmt + "\\n"
    args = [f"(long long)c{k}" for k in range(n_int)] + [varg]
    return (f"static void {spec.name}({', '.join(params)}) {{\n"
            f"  printf(\"{fmt}\", {', '.join(args)});\n  fflush(stdout);\n}}")


def _context(p) -> list:
    """(name, value) of the block indices and loop variables visible at the print."""
    out, seen = [], set()
    for scope in p.scopes[1:]:
        for name, value in scope.items():
            if isinstance(value, Expr) and not isinstance(value, ir.Const) and name not in seen \
                    and not (isinstance(value, Var) and value in p.mutable) and value.dtype.is_int:
                seen.add(name)
                out.append((name, value))
    return out


def _call(p, node, spec: PrintSpec, args: tuple) -> ir.ExternCall:
    SPECS.setdefault(spec.name, spec)
    return ir.ExternCall(spec.name, args, _c_definition(spec), span=p.span(node))


def print_handler(p, node, args, kwargs):
    """`T.print(obj, msg="")` inside a kernel."""
    if not 1 <= len(args) <= 2 or kwargs.keys() - {"msg"} or (len(args) == 2 and "msg" in kwargs):
        raise p.error(node, "T.print(value, msg=\"\") takes a value or buffer and an optional message",
                      cls=TypeCheckError)
    obj = args[0]
    msg = args[1] if len(args) == 2 else kwargs.get("msg", "")
    if not isinstance(msg, str):
        raise p.error(node, f"T.print: the message must be a Python string, got {type(msg).__name__}",
                      cls=TypeCheckError)
    ctx = _context(p)
    names = tuple(n for n, _ in ctx)
    ctx_args = tuple(ir.cast(v, "int64") for _, v in ctx)
    if isinstance(obj, Buffer):
        idx = [Var(p.unique("print_i")) for _ in obj.shape]
        spec = PrintSpec(msg, names, obj.name, obj.ndim, obj.dtype.name)
        body = _call(p, node, spec, ctx_args + tuple(idx) + (ir.Load(obj, tuple(idx), obj.dtype),))
        for v, n in reversed(list(zip(idx, obj.shape))):
            body = ir.For(v, ir.const(0), n, "serial", body, span=p.span(node))
        return body
    if isinstance(obj, (bool, int, float)) or isinstance(obj, Expr):
        value = ir.convert(obj)
        spec = PrintSpec(msg, names, None, 0, value.dtype.name)
        return _call(p, node, spec, ctx_args + (value,))
    raise p.error(node, f"T.print prints a run-time value or a whole buffer, got {type(obj).__name__}",
                  hint="print one element (T.print(A_s[i, j])) or the buffer (T.print(A_s))",
                  cls=TypeCheckError)

"""The stable text form of the IR.

The same text is used for golden tests, error messages and as the cache key, so it must not
depend on anything but the IR's value: no ids, no spans, no dict order.
"""
from __future__ import annotations

from .buffer import Buffer, Region
from .expr import BinOp, Call, Cast, Const, Expr, Load, Select, UnOp, Var
from .stmt import (Assign, BufferPtr, Copy, CumSum, Decl, Evaluate, Fill, For, Gemm, If, Kernel, PrimFunc, Reduce,
                   Seq, Stmt, Store)

__all__ = ["expr_str", "stmt_str", "func_str"]

_PREC = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "|": 5, "^": 6,
         "&": 7, "<<": 8, ">>": 8, "+": 9, "-": 9, "*": 10, "/": 10, "//": 10, "%": 10}


def expr_str(e: Expr, prec: int = 0) -> str:
    if isinstance(e, Const):
        if e.dtype.is_bool:
            return "True" if e.value else "False"
        if e.dtype.is_int:
            return str(e.value) if e.dtype.name == "int64" else f"T.{e.dtype}({e.value})"
        v = float(e.value)
        if v != v or v in (float("inf"), float("-inf")):
            text = ("-" if v < 0 else "") + f'T.infinity("{e.dtype}")' if v == v else f'T.nan("{e.dtype}")'
            return f"({text})" if text.startswith("-") and prec > 0 else text
        text = repr(v)
        return text if e.dtype.name == "float32" else f"T.{e.dtype}({text})"
    if isinstance(e, Var):
        return e.name
    if isinstance(e, BinOp):
        if e.op in ("min", "max"):
            return f"T.{e.op}({expr_str(e.a)}, {expr_str(e.b)})"
        p = _PREC[e.op]
        # Left-associative: the right operand needs parentheses at equal precedence; Python
        # chains comparisons, so a comparison operand of a comparison needs them on both sides.
        left = p + 1 if p == 4 else p
        text = f"{expr_str(e.a, left)} {e.op} {expr_str(e.b, p + 1)}"
        return f"({text})" if p < prec else text
    if isinstance(e, UnOp):
        return f"not {expr_str(e.a, 3)}" if e.op == "not" else f"~{expr_str(e.a, 11)}"
    if isinstance(e, Call):
        return f"T.{e.op}({', '.join(expr_str(a) for a in e.args)})"
    if isinstance(e, Cast):
        return f"T.cast({expr_str(e.value)}, \"{e.dtype}\")"
    if isinstance(e, Select):
        return f"T.if_then_else({expr_str(e.cond)}, {expr_str(e.t)}, {expr_str(e.f)})"
    if isinstance(e, Load):
        return f"{e.buffer.name}[{', '.join(expr_str(i) for i in e.indices)}]"
    raise TypeError(f"cannot print {type(e).__name__}")


def region_str(r: Region) -> str:
    parts = []
    for s, x in zip(r.starts, r.extents):
        if isinstance(x, Const) and x.value == 1:
            parts.append(expr_str(s))
        else:
            parts.append(f"{expr_str(s)}:{expr_str(s + x)}")
    return f"{r.buffer.name}[{', '.join(parts)}]"


def buffer_decl(b: Buffer) -> str:
    shape = ", ".join(expr_str(s) for s in b.shape) + ("," if b.ndim == 1 else "")
    text = f"T.{'Tensor' if b.scope == 'global' else 'alloc_' + b.scope}(({shape}), \"{b.dtype}\")"
    if b.layout is not None:
        text += f"  # layout: {b.layout!r}"
    return text


class _Printer:
    def __init__(self):
        self.lines: list[str] = []

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def stmt(self, s: Stmt, d: int) -> None:
        getattr(self, "s_" + type(s).__name__)(s, d)

    def s_Seq(self, s: Seq, d):
        for x in s.stmts:
            self.stmt(x, d)

    def s_For(self, s: For, d):
        ann = "".join(f", {k}={v!r}" for k, v in s.annotations)
        if isinstance(s.start, Const) and s.start.value == 0:
            bounds = expr_str(s.extent)
        else:  # the frontend reads (start, stop)
            bounds = f"{expr_str(s.start)}, {expr_str(s.start + s.extent)}"
        kind = {"serial": "serial", "parallel": "Parallel", "pipelined": "Pipelined",
                "unroll": "unroll", "vectorized": "vectorized"}[s.kind]
        self.emit(d, f"for {s.var.name} in T.{kind}({bounds}{ann}):")
        self.stmt(s.body, d + 1)

    def s_If(self, s: If, d):
        self.emit(d, f"if {expr_str(s.cond)}:")
        self.stmt(s.then, d + 1)
        if s.else_ is not None:
            self.emit(d, "else:")
            self.stmt(s.else_, d + 1)

    def s_Store(self, s: Store, d):
        idx = ", ".join(expr_str(i) for i in s.indices)
        if s.atomic:
            self.emit(d, f"T.atomic_{s.atomic}({s.buffer.name}[{idx}], {expr_str(s.value)})")
        else:
            self.emit(d, f"{s.buffer.name}[{idx}] = {expr_str(s.value)}")

    def s_Decl(self, s: Decl, d):
        self.emit(d, f"{s.var.name}: T.{s.var.dtype} = {expr_str(s.value)}")

    def s_Assign(self, s: Assign, d):
        self.emit(d, f"{s.var.name} = {expr_str(s.value)}")

    def s_Evaluate(self, s: Evaluate, d):
        self.emit(d, expr_str(s.value))

    def s_Kernel(self, s: Kernel, d):
        grid = ", ".join(expr_str(g) for g in s.grid)
        names = ", ".join(v.name for v in s.block_vars)
        names = f"({names})" if len(s.block_vars) > 1 else names
        self.emit(d, f"with T.Kernel({grid}, threads={s.threads}) as {names}:")
        for b in s.allocs:
            self.emit(d + 1, f"{b.name} = {buffer_decl(b)}")
        self.stmt(s.body, d + 1)

    def s_Copy(self, s: Copy, d):
        if s.atomic:
            self.emit(d, f"T.atomic_{s.atomic}({region_str(s.dst)}, {region_str(s.src)})")
        else:
            self.emit(d, f"T.copy({region_str(s.src)}, {region_str(s.dst)})")

    def s_Gemm(self, s: Gemm, d):
        flags = "".join(f", {k}=True" for k, v in (("transpose_A", s.trans_a), ("transpose_B", s.trans_b),
                                                   ("clear_accum", s.clear_accum)) if v)
        self.emit(d, f"T.gemm({region_str(s.a)}, {region_str(s.b)}, {region_str(s.c)}{flags}, "
                     f"policy={s.policy!r})")

    def s_Fill(self, s: Fill, d):
        self.emit(d, f"T.fill({region_str(s.dst)}, {expr_str(s.value)})")

    def s_ExternCall(self, s, d):
        args = ", ".join(f"T.address_of({a.buffer.name}[{expr_str(a.offset)}])" if isinstance(a, BufferPtr)
                         else expr_str(a) for a in s.args)
        self.emit(d, f"T.call_extern({s.name!r}, {args})")

    def s_Reduce(self, s: Reduce, d):
        self.emit(d, f"T.reduce_{s.kind}({s.src.name}, {s.dst.name}, dim={s.dim}, clear={s.clear})")

    def s_CumSum(self, s: CumSum, d):
        self.emit(d, f"T.cumsum({s.src.name}, {s.dst.name}, dim={s.dim}, reverse={s.reverse})")


def stmt_str(s: Stmt) -> str:
    p = _Printer()
    p.stmt(s, 0)
    return "\n".join(p.lines)


def func_str(f: PrimFunc) -> str:
    p = _Printer()
    from .functor import free_vars
    sym = sorted({v for b in f.params if isinstance(b, Buffer) for d in b.shape for v in free_vars(d)}
                 - set(f.params), key=lambda v: v.name)
    for v in sym:
        p.emit(0, f'{v.name} = T.dynamic("{v.name}", "{v.dtype}")')
    params = []
    for x in f.params:
        if isinstance(x, Buffer):
            params.append(f"{x.name}: {buffer_decl(x)}")
        else:
            params.append(f"{x.name}: T.{x.dtype}")
    p.emit(0, "@T.prim_func")
    p.emit(0, f"def {f.name}({', '.join(params)}):")
    for k, v in f.attrs:
        p.emit(1, f"T.func_attr({{{k!r}: {v!r}}})")
    p.stmt(f.body, 1)
    return "\n".join(p.lines) + "\n"

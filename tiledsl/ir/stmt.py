"""Statements of the IR, tile operations among them, and `PrimFunc`.

Every node is a frozen dataclass; `span` (the user's file and line) is carried for error
messages but excluded from equality and from the printed text, so a kernel moved in its file
keeps its cache key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from .buffer import Buffer, Region
from .expr import INDEX, Expr, Var

__all__ = ["Span", "Stmt", "Seq", "For", "If", "Store", "Decl", "Assign", "Evaluate",
           "Kernel", "THREAD_X", "Copy", "Gemm", "Fill", "Reduce", "PrimFunc", "BufferPtr", "ExternCall", "seq", "FOR_KINDS", "TILE_OPS"]

FOR_KINDS = ("serial", "parallel", "pipelined", "unroll", "vectorized")


@dataclass(frozen=True)
class Span:
    file: str
    line: int
    col: int = 0
    end_col: Optional[int] = None
    func: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class Stmt:
    __slots__ = ()
    span: Optional[Span]

    def __str__(self) -> str:
        from .printer import stmt_str
        return stmt_str(self)


def _span():
    return field(default=None, compare=False, kw_only=True, repr=False)


@dataclass(frozen=True)
class Seq(Stmt):
    stmts: tuple
    span: Optional[Span] = _span()


@dataclass(frozen=True)
class For(Stmt):
    """`for var in [start, start + extent)`; `kind` says how iterations may run.

    `annotations` is a sorted tuple of (key, value) pairs, e.g. (("num_stages", 2),).
    """
    var: Var
    start: Expr
    extent: Expr
    kind: str
    body: Stmt
    annotations: tuple = ()
    span: Optional[Span] = _span()

    def annotation(self, key: str, default=None):
        return dict(self.annotations).get(key, default)


@dataclass(frozen=True)
class If(Stmt):
    cond: Expr
    then: Stmt
    else_: Optional[Stmt] = None
    span: Optional[Span] = _span()


@dataclass(frozen=True)
class Store(Stmt):
    """`buffer[indices] = value`; with `atomic` ("add", "max" or "min") an atomic
    read-modify-write `buffer[indices] = op(buffer[indices], value)` instead."""
    buffer: Buffer
    indices: tuple
    value: Expr
    span: Optional[Span] = _span()
    atomic: str = ""


@dataclass(frozen=True)
class Decl(Stmt):
    """Declares a mutable scalar local variable with an initial value."""
    var: Var
    value: Expr
    span: Optional[Span] = _span()


@dataclass(frozen=True)
class Assign(Stmt):
    var: Var
    value: Expr
    span: Optional[Span] = _span()


@dataclass(frozen=True)
class Evaluate(Stmt):
    value: Expr
    span: Optional[Span] = _span()


@dataclass(frozen=True)
class Kernel(Stmt):
    """A grid of blocks; `block_vars[d]` runs over `[0, grid[d])`.

    `allocs` are the block's shared / fragment / local buffers (fresh per block).
    `threads` is the GPU block size; the CPU runs a block on one core.
    `layout_spans` are (buffer name, Span) of each `T.annotate_layout`, for error messages only.
    `smem` is (buffer name, byte offset, bytes) of each shared tile in the GPU block's dynamic
    shared memory: set by `plan_shared_memory`, rendered by `codegen/cuda.py`; () before.
    """
    grid: tuple
    block_vars: tuple
    threads: int
    allocs: tuple
    body: Stmt
    span: Optional[Span] = _span()
    layout_spans: tuple = field(default=(), compare=False, kw_only=True, repr=False)
    smem: tuple = field(default=(), kw_only=True, repr=False)


THREAD_X = Var("thread_x", INDEX)
"""The thread's index within its block (GPU targets): introduced by `partition_threads`."""


# ---- tile operations: they exist until lower_tile_ops turns them into loops ----

@dataclass(frozen=True)
class Copy(Stmt):
    """Element-wise copy between regions whose squeezed extents agree; reads outside the
    source tensor give zero, writes outside the destination tensor are dropped. With `atomic`
    ("add", "max", "min") each destination element is combined with the source atomically
    (`T.atomic_add(C[by * 64, bx * 64], C_f)`)."""
    src: Region
    dst: Region
    span: Optional[Span] = _span()
    atomic: str = ""


@dataclass(frozen=True)
class Gemm(Stmt):
    """`C += op(A) @ op(B)` on 2-D on-chip tiles (`C = ...` when clear_accum)."""
    a: Region
    b: Region
    c: Region
    trans_a: bool = False
    trans_b: bool = False
    clear_accum: bool = False
    policy: str = "square"
    span: Optional[Span] = _span()


@dataclass(frozen=True)
class Fill(Stmt):
    dst: Region
    value: Expr
    span: Optional[Span] = _span()


@dataclass(frozen=True)
class Reduce(Stmt):
    """`dst = kind-reduction of src along dim` (combined with dst's old value unless clear)."""
    kind: str  # "max", "min", "sum", "abssum", "absmax"
    src: Buffer
    dst: Buffer
    dim: int
    clear: bool = True
    span: Optional[Span] = _span()


def reduce_identity(kind: str, dt) -> "int | float":
    """The start value of a `kind` reduction accumulating in `dt`: what every lowering and the
    interpreter start from (the type's extreme value for an integer max / min)."""
    if kind in ("sum", "abssum", "absmax"):
        return 0
    if dt.is_float:
        return -math.inf if kind == "max" else math.inf
    if dt.kind == "int":
        top = (1 << (dt.bits - 1)) - 1
        return -top - 1 if kind == "max" else top
    return 0 if kind == "max" else (1 << dt.bits) - 1  # uint; bool: False / True


@dataclass(frozen=True)
class CumSum(Stmt):
    """`dst = inclusive prefix sum of src along dim` (from the end when reverse); src and
    dst are on-chip tiles of one shape and may be the same tile."""
    src: Buffer
    dst: Buffer
    dim: int
    reverse: bool = False
    span: Optional[Span] = _span()


TILE_OPS = (Copy, Gemm, Fill, Reduce, CumSum)


@dataclass(frozen=True)
class BufferPtr:
    """The address of `buffer[offset]` (flat, physical), passed to an extern function."""
    buffer: Buffer
    offset: Expr


@dataclass(frozen=True)
class ExternCall(Stmt):
    """A call of a target function defined by `definition` (C++ source, e.g. a GEMM micro-kernel).

    `args` are Exprs or `BufferPtr`s. The printer shows the name and arguments; the definition
    belongs to the generated source (and so to the library's content hash).
    """
    name: str
    args: tuple
    definition: str = field(default="", repr=False)
    span: Optional[Span] = _span()


@dataclass(frozen=True)
class PrimFunc:
    """A kernel: its parameters (global `Buffer`s and scalar `Var`s) and body."""
    name: str
    params: tuple
    body: Stmt
    attrs: tuple = ()
    span: Optional[Span] = field(default=None, compare=False, repr=False)

    def with_body(self, body: Stmt) -> "PrimFunc":
        if body is self.body:
            return self
        return PrimFunc(self.name, self.params, body, self.attrs, span=self.span)

    @property
    def buffers(self) -> tuple:
        return tuple(p for p in self.params if isinstance(p, Buffer))

    def script(self) -> str:
        from .printer import func_str
        return func_str(self)

    def __str__(self) -> str:
        return self.script()


def seq(*stmts: Stmt, span: Optional[Span] = None) -> Stmt:
    """Flatten nested sequences; a single statement stands for itself."""
    out = []
    for s in stmts:
        if s is None:
            continue
        if isinstance(s, Seq):
            out.extend(s.stmts)
        else:
            out.append(s)
    if len(out) == 1:
        return out[0]
    return Seq(tuple(out), span=span)

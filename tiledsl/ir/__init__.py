"""The IR: immutable nodes compared by value, a stable printer, a verifier.

Tile IR and loop IR use the same node types: a function is "tile IR" while it still holds
tile operations (`Copy`, `Gemm`, `Fill`, `Reduce`, `CumSum`) and "loop IR" once `lower_tile_ops` has
replaced them by loops over elements.
"""
from .dtype import DType, dtype
from .expr import (BinOp, Call, Cast, Const, Expr, Load, Select, UnOp, Var, binop, call, cast,
                   const, convert, eq, logical_and, logical_not, logical_or, max_, min_, select,
                   INDEX)
from .buffer import Buffer, Region
from .stmt import (Assign, Copy, Decl, Evaluate, Fill, For, Gemm, If, Kernel, PrimFunc, Reduce, CumSum,
                   Seq, Span, Stmt, Store, seq, BufferPtr, ExternCall, THREAD_X)
from .printer import expr_str, func_str, stmt_str
from .functor import (ExprRewriter, StmtRewriter, free_vars, replace_buffers, stored_buffers,
                      substitute, walk)
from .verifier import verify

__all__ = [
    "DType", "dtype", "Expr", "Const", "Var", "BinOp", "UnOp", "Call", "Cast", "Select", "Load",
    "binop", "call", "cast", "const", "convert", "eq", "logical_and", "logical_or",
    "logical_not", "max_", "min_", "select", "INDEX", "Buffer", "Region", "Stmt", "Seq", "For",
    "If", "Store", "Decl", "Assign", "Evaluate", "Kernel", "Copy", "Gemm", "Fill", "Reduce", "CumSum",
    "PrimFunc", "Span", "seq", "THREAD_X", "BufferPtr", "ExternCall", "expr_str", "stmt_str", "func_str", "ExprRewriter",
    "StmtRewriter", "walk", "substitute", "free_vars", "replace_buffers", "stored_buffers", "verify",
]

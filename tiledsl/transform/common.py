"""Small helpers shared by passes: fresh names and loop nests."""
from __future__ import annotations

from typing import Sequence

from .. import ir
from ..ir import Expr, Var


class Namer:
    """Fresh names for variables a pass introduces; `__` keeps them apart from user names."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.n = 0
        self.block_threads = 0  # the enclosing T.Kernel's threads, for lowerings that split over them

    def __call__(self, base: str, dtype=ir.INDEX) -> Var:
        self.n += 1
        return Var(f"{base}__{self.prefix}{self.n}", ir.dtype(dtype))


def loop_nest(vars_: Sequence[Var], extents: Sequence[Expr], body: ir.Stmt, kind: str = "parallel",
              span=None) -> ir.Stmt:
    for v, e in reversed(list(zip(vars_, extents))):
        body = ir.For(v, ir.const(0), ir.convert(e), kind, body, span=span)
    return body

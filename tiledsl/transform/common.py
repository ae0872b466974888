"""Small helpers shared by passes: fresh names, loop nests over tile regions, var ranges."""
from __future__ import annotations

import itertools
from typing import Callable, Iterable, Sequence

from .. import ir
from ..ir import Const, Expr, Region, Var

_counter = itertools.count()


class Namer:
    """Fresh names for variables a pass introduces; `__` keeps them apart from user names."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.n = 0

    def __call__(self, base: str, dtype=ir.INDEX) -> Var:
        self.n += 1
        return Var(f"{base}__{self.prefix}{self.n}", ir.dtype(dtype))


def loop_nest(vars_: Sequence[Var], extents: Sequence[Expr], body: ir.Stmt, kind: str = "parallel",
              span=None) -> ir.Stmt:
    for v, e in reversed(list(zip(vars_, extents))):
        body = ir.For(v, ir.const(0), ir.convert(e), kind, body, span=span)
    return body


def nonunit_dims(region: Region) -> list:
    return [d for d, e in enumerate(region.extents) if not (isinstance(e, Const) and e.value == 1)]


def region_index(region: Region, coords: Sequence[Expr]) -> tuple:
    """Full buffer index for `coords` over the region's non-unit dims (right-aligned)."""
    dims = nonunit_dims(region)
    if len(dims) < len(coords):
        # A tile with unit extents in its matrix dims (e.g. a 1xN tile): use the last dims.
        dims = list(range(region.buffer.ndim - len(coords), region.buffer.ndim))
    dims = dims[len(dims) - len(coords):]
    idx = list(region.starts)
    for d, c in zip(dims, coords):
        idx[d] = idx[d] + c
    return tuple(idx)


def matrix_extents(region: Region, rank: int) -> tuple:
    dims = nonunit_dims(region)
    if len(dims) < rank:
        dims = list(range(region.buffer.ndim - rank, region.buffer.ndim))
    return tuple(region.extents[d] for d in dims[len(dims) - rank:])

"""The GEMM implementation registry: rows of (name, predicate, implementation).

`resolve` picks the one row whose predicate accepts a `T.gemm` call on a target. No row, or
more than one, is an error at the call's source line: dispatch is never a silent guess.
A row's `priority` lets a specialised implementation (SIMD micro-kernel) shadow the portable
one without both predicates having to know about each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Protocol

from ...errors import LoweringError
from ...ir import Gemm
from ...target import Target

__all__ = ["GemmImpl", "register", "resolve", "rows"]


class GemmImpl(Protocol):
    def lower(self, gemm: Gemm, target: Target, namer) -> object: ...


@dataclass(frozen=True)
class Row:
    name: str
    predicate: Callable[[Gemm, Target], bool]
    impl: GemmImpl
    priority: int = 0


_ROWS: List[Row] = []


def register(name: str, predicate: Callable[[Gemm, Target], bool], impl: GemmImpl,
             priority: int = 0) -> None:
    if any(r.name == name for r in _ROWS):
        raise ValueError(f"GEMM implementation {name!r} is already registered")
    _ROWS.append(Row(name, predicate, impl, priority))


def rows() -> tuple:
    return tuple(_ROWS)


def resolve(gemm: Gemm, target: Target) -> GemmImpl:
    """The implementation for this call: the highest-priority matching row, which must be unique."""
    matches = [r for r in _ROWS if r.predicate(gemm, target)]
    if not matches:
        raise LoweringError(
            f"no GEMM implementation for {gemm.a.buffer.dtype} x {gemm.b.buffer.dtype} -> "
            f"{gemm.c.buffer.dtype} on target {target.kind}", gemm.span,
            hint="registered: " + ", ".join(r.name for r in _ROWS))
    best = max(r.priority for r in matches)
    top = [r for r in matches if r.priority == best]
    if len(top) > 1:
        raise LoweringError(f"ambiguous GEMM dispatch: {', '.join(r.name for r in top)} all match",
                            gemm.span)
    return top[0].impl

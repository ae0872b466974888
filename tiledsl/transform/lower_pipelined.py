"""lower_pipelined_cpu: afterwards no loop is `pipelined`; on the CPU it is a serial loop.

A CPU core has no asynchronous copy engine to overlap with, and the hardware prefetcher
already streams the next tile's rows, so the stages collapse to one; `num_stages` is kept
as an annotation for the record.
"""
from __future__ import annotations

import dataclasses

from .. import ir
from ..ir import For, StmtRewriter

__all__ = ["lower_pipelined_cpu"]


def lower_pipelined_cpu(func: ir.PrimFunc) -> ir.PrimFunc:
    """Turn T.Pipelined loops into serial loops."""

    class _P(StmtRewriter):
        def visit_For(self, s: For):
            s = self.generic(s)
            return dataclasses.replace(s, kind="serial") if s.kind == "pipelined" else s

    return _P()(func)

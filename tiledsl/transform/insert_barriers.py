"""insert_barriers (GPU): a `__syncthreads()` wherever one thread may read or overwrite shared
(or global) memory that another thread wrote or read since the last barrier, and nowhere else.

Works on the statements of the block as a whole, after `partition_threads`: each thread-split
slot loop, and each statement every thread runs alike, is one unit whose shared reads and
writes are compared with those since the last barrier (read after write, write after read,
write after write). Serial loops are walked twice, so a hazard from the end of one
iteration to the start of the next (the next tile's copy over the tile the GEMM still
reads) gets its barrier at the top of the body. Units are conservative: a thread re-reading
only what it wrote itself still gets a barrier.
"""
from __future__ import annotations

import dataclasses
from typing import Set, Tuple

from .. import ir
from ..ir import THREAD_X, BufferPtr, ExternCall, For, If, Kernel, Load, Seq, Store
from ..target import Target
from .partition_threads import PARTITION

__all__ = ["insert_barriers", "SYNC"]

SYNC = "__syncthreads"
# Memory other threads of the block see: shared tiles, and global tensors (a nest may write an
# element that a later nest, split another way, reads in another thread).
_SHARED = ("shared", "global")


def barrier() -> ExternCall:
    return ExternCall(SYNC, ())


class _State:
    def __init__(self, read: Set[str] = None, written: Set[str] = None):
        self.read, self.written = set(read or ()), set(written or ())

    def copy(self) -> "_State":
        return _State(self.read, self.written)

    def merge(self, other: "_State") -> None:
        self.read |= other.read
        self.written |= other.written


def insert_barriers(func: ir.PrimFunc, target: Target) -> ir.PrimFunc:
    class _K(ir.StmtRewriter):
        def visit_Kernel(self, k: Kernel):
            return dataclasses.replace(k, body=_block(k.body, _State()))
    return _K()(func)


def _shared_access(s) -> Tuple[Set[str], Set[str]]:
    reads, writes = set(), set()

    def visit(n):
        if isinstance(n, Load) and n.buffer.scope in _SHARED:
            reads.add(n.buffer.name)
        elif isinstance(n, Store) and n.buffer.scope in _SHARED:
            writes.add(n.buffer.name)
        elif isinstance(n, ExternCall):
            for a in n.args:  # the GPU's extern calls (mma) only read the shared tiles they get
                if isinstance(a, BufferPtr) and a.buffer.scope == "shared":
                    reads.add(a.buffer.name)
    ir.walk(s, visit)
    return reads, writes


def _is_unit(s) -> bool:
    if isinstance(s, For):
        return s.annotation(PARTITION) is not None
    if isinstance(s, If):
        # Only some threads enter a branch on the thread index: a barrier inside would wait
        # for the others forever, so the branch is one unit (its barrier goes before it).
        return THREAD_X in ir.free_vars(s.cond)
    return not isinstance(s, Seq)


def _block(s, state: _State):
    """`s` with barriers; `state` is updated to what is unsynchronised after it."""
    if isinstance(s, Seq):
        return ir.seq(*[_block(x, state) for x in s.stmts])
    if isinstance(s, ExternCall) and s.name == SYNC:
        state.read.clear(), state.written.clear()
        return s
    if _is_unit(s):
        reads, writes = _shared_access(s)
        if (reads & state.written) or (writes & (state.read | state.written)):
            state.read, state.written = set(reads), set(writes)
            return ir.seq(barrier(), s)
        state.read |= reads
        state.written |= writes
        return s
    if isinstance(s, If):
        then_state, else_state = state.copy(), state.copy()
        then = _block(s.then, then_state)
        else_ = _block(s.else_, else_state) if s.else_ is not None else None
        then_state.merge(else_state)
        state.read, state.written = then_state.read, then_state.written
        return dataclasses.replace(s, then=then, else_=else_)
    assert isinstance(s, For)
    # A hazard with what came before the loop is settled once, before it ...
    reads, writes = _shared_access(s.body)
    before = None
    if (reads & state.written) or (writes & (state.read | state.written)):
        before = barrier()
        state.read.clear(), state.written.clear()
    # ... one from the end of an iteration to the start of the next, inside the body.
    tail = _State()
    _block(s.body, tail)               # what one iteration leaves unsynchronised
    entry = state.copy()
    entry.merge(tail)
    body = _block(s.body, entry)
    state.merge(entry)                 # zero iterations leave `state`; one or more, `entry`
    return ir.seq(before, dataclasses.replace(s, body=body))

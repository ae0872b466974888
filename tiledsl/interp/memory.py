"""The interpreter's buffers: data plus what it needs to catch reads that no target defines.

Every access goes through `Mem.read` / `Mem.write` with a numpy index `key` (a tuple of ints
and slices for a tile region, or of equally long index arrays for the active lanes of an
element access), so tile operations and element accesses share one set of checks:

- `written`: which elements of an on-chip tile (or of an output the interpreter allocated)
  have been stored; reading one that has not is an error (the CPU would read stale data).
- `owner`: for a global tensor, which block of the running `T.Kernel` wrote each element;
  another block reading it, or writing a different value, is a race (blocks run in any order).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..ir import Buffer

__all__ = ["Mem", "first_index", "OWNER_LIMIT"]

# Global tensors up to this many elements get per-element block ownership tracking; beyond it
# (a > 2^31-element tensor in a 64-bit index test) the cost is not worth it.
OWNER_LIMIT = 1 << 26


@dataclass
class Mem:
    buffer: Buffer
    data: np.ndarray
    written: Optional[np.ndarray] = None   # bool per element; None: always initialised
    owner: Optional[np.ndarray] = None     # int32 writer block id + 1 in the running kernel
    writer: Optional[tuple] = field(default=None)  # (lane shape, int64 lane id + 1) in a T.Parallel nest

    @property
    def name(self) -> str:
        return self.buffer.name

    @property
    def on_chip(self) -> bool:
        return self.buffer.scope != "global"

    def read(self, key: tuple, block: int, fail: Callable) -> np.ndarray:
        """`data[key]` after checking that every element was written and is not another
        block's; `fail(kind, index, other)` raises."""
        if self.written is not None:
            ok = self.written[key]
            if not np.all(ok):
                fail("uninitialized", first_index(key, ~np.asarray(ok)), None)
        if self.owner is not None and block:
            who = self.owner[key]
            bad = (who != 0) & (who != block)
            if np.any(bad):
                at = first_index(key, bad)
                fail("block-read", at, int(self.owner[at]))
        return self.data[key]

    def write(self, key: tuple, values: np.ndarray, block: int, fail: Callable) -> None:
        values = np.asarray(values).astype(self.data.dtype, copy=False)
        if self.owner is not None and block:
            who = self.owner[key]
            old = self.data[key]
            bad = (who != 0) & (who != block) & ~_same(old, values)
            if np.any(bad):
                at = first_index(key, bad)
                fail("block-write", at, int(self.owner[at]))
            self.owner[key] = block
        self.data[key] = values
        if self.written is not None:
            self.written[key] = True


    def atomic(self, keys: list, values: list, combine) -> None:
        """`T.atomic_*`: apply `combine(old, value)` to each element in turn (a repeated element
        accumulates, in the order given). Atomics are how blocks share an element, so no block
        owns what they write."""
        for key, value in zip(keys, values):
            self.data[key] = combine(self.data[key], value)
            if self.written is not None:
                self.written[key] = True


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise equality with NaN equal to NaN (ml_dtypes floats, whose numpy kind is not
    always "f", included)."""
    with np.errstate(invalid="ignore"):
        eq = a == b
        if a.dtype.kind in "biu":
            return eq
        return eq | (np.isnan(a) & np.isnan(b))


def first_index(key: tuple, bad: np.ndarray) -> tuple:
    """The buffer index of the first True element of `bad` (shaped like `data[key]`)."""
    bad = np.asarray(bad)
    pos = np.unravel_index(int(np.argmax(bad)), bad.shape) if bad.ndim else ()
    out, d = [], 0
    for k in key:
        if isinstance(k, slice):
            out.append(int(k.start or 0) + int(pos[d]))
            d += 1
        elif isinstance(k, np.ndarray) and k.ndim:
            out.append(int(k[pos[0]]))
        else:
            out.append(int(k))
    return tuple(out)

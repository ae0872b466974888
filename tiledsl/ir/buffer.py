"""Buffers: a named, typed, shaped piece of memory in one scope, and regions of them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .dtype import DType
from .expr import Const, INDEX, convert

__all__ = ["Buffer", "Region", "SCOPES"]

# global: a kernel argument; shared: per block (GPU shared memory / CPU per-worker scratch);
# fragment: per block, spread over threads' registers on the GPU; local: per thread.
SCOPES = ("global", "shared", "fragment", "local")


@dataclass(frozen=True)
class Buffer:
    """`layout` is None until layout inference gives shared / fragment buffers one."""

    name: str
    shape: tuple
    dtype: DType
    scope: str = "global"
    layout: Optional[Any] = None

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"buffer {self.name}: unknown scope {self.scope!r}")
        object.__setattr__(self, "shape", tuple(convert(s, INDEX) for s in self.shape))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def static_shape(self) -> Optional[tuple]:
        """The shape as Python ints, or None when some dimension is symbolic."""
        if all(isinstance(s, Const) for s in self.shape):
            return tuple(s.value for s in self.shape)
        return None

    def with_layout(self, layout: Any) -> "Buffer":
        return Buffer(self.name, self.shape, self.dtype, self.scope, layout)

    def __getitem__(self, idx):
        from .expr import Load
        idx = idx if isinstance(idx, tuple) else (idx,)
        return Load(self, tuple(convert(i, INDEX) for i in idx), self.dtype)

    def __repr__(self) -> str:
        dims = ", ".join(str(s) for s in self.shape)
        return f"Buffer({self.name}, ({dims}), {self.dtype}, {self.scope})"


@dataclass(frozen=True)
class Region:
    """The canonical form of a tile operand: `buffer[starts[d] : starts[d] + extents[d]]`.

    Every dimension of the buffer is present; extents are positive.
    """

    buffer: Buffer
    starts: tuple
    extents: tuple

    def __post_init__(self):
        object.__setattr__(self, "starts", tuple(convert(s, INDEX) for s in self.starts))
        object.__setattr__(self, "extents", tuple(convert(e, INDEX) for e in self.extents))
        if len(self.starts) != self.buffer.ndim or len(self.extents) != self.buffer.ndim:
            raise ValueError(f"region of {self.buffer.name} must give all {self.buffer.ndim} dims")

    @staticmethod
    def full(buffer: Buffer) -> "Region":
        return Region(buffer, (0,) * buffer.ndim, buffer.shape)

    @property
    def static_extents(self) -> Optional[tuple]:
        if all(isinstance(e, Const) for e in self.extents):
            return tuple(e.value for e in self.extents)
        return None

    def squeezed(self) -> tuple:
        """Extents with the unit dimensions removed: what two regions must agree on to be copied."""
        return tuple(self.extents[d] for d in self.nonunit_dims())

    def nonunit_dims(self) -> list:
        return [d for d, e in enumerate(self.extents) if not (isinstance(e, Const) and e.value == 1)]

    def matrix_dims(self, rank: int) -> list:
        """The `rank` innermost non-unit dims; for a tile with unit extents among them (a 1 x N
        tile), the buffer's last `rank` dims."""
        dims = self.nonunit_dims()
        if len(dims) < rank:
            dims = list(range(self.buffer.ndim - rank, self.buffer.ndim))
        return dims[len(dims) - rank:]

    def matrix_extents(self, rank: int) -> tuple:
        return tuple(self.extents[d] for d in self.matrix_dims(rank))

    def index(self, coords) -> tuple:
        """The full buffer index of `coords`, given over `matrix_dims(len(coords))`."""
        idx = list(self.starts)
        for d, c in zip(self.matrix_dims(len(coords)), coords):
            idx[d] = idx[d] + c
        return tuple(idx)

"""`Layout`: a map from a buffer's logical index space to physical coordinates.

A layout is data: the logical shape, one index `Var` per logical dimension and one IR
expression per physical coordinate. The same object renders addresses in codegen, is
brute-forced in tests (bijective? conflict-free?) and is printed in the IR. Index variables
are canonical (`i, j, k, l`, then `i0, i1, ...`) so two layouts written with different
lambda parameter names but the same expressions compare equal.

The physical coordinates are flattened row-major over `output_shape` to give the element
offset (`offset`); a layout with one physical coordinate is a plain offset map.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from tiledsl.errors import TileDSLError
from tiledsl.ir.analysis import bound
from tiledsl.ir.expr import Expr, Load, Var, convert
from tiledsl.ir.functor import walk
from tiledsl.ir.printer import expr_str

from ._eval import compile_exprs
from ._simplify import domain_ranges, simplify, subst

__all__ = ["Layout", "LayoutError", "index_vars", "MAX_ENUMERATE"]

# Brute-force checks enumerate the whole logical domain with numpy; beyond this many points
# they refuse (and output extents fall back to interval analysis).
MAX_ENUMERATE = 1 << 22

_NAMES = ("i", "j", "k", "l")


class LayoutError(TileDSLError, ValueError):
    """A layout or fragment is malformed, or an operation does not apply to it."""


def index_vars(ndim: int) -> tuple:
    """The canonical index variables of an `ndim`-dimensional layout."""
    if ndim <= len(_NAMES):
        return tuple(Var(n) for n in _NAMES[:ndim])
    return tuple(Var(f"i{d}") for d in range(ndim))


def _to_exprs(result: Any, what: str) -> tuple:
    items = list(result) if isinstance(result, (list, tuple)) else [result]
    out = []
    for x in items:
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (Expr, int, np.integer)):
            raise LayoutError(f"{what} must be integer expressions, got {x!r}")
        e = convert(int(x)) if isinstance(x, np.integer) else convert(x)
        if not e.dtype.is_int:
            raise LayoutError(f"{what} must be integer expressions, got {expr_str(e)} "
                              f"of type {e.dtype}")
        out.append(e)
    if not out:
        raise LayoutError(f"{what} must give at least one coordinate")
    return tuple(out)


def _check_shape(shape: Any) -> tuple:
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not shape or any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s <= 0
                        for s in shape):
        raise LayoutError(f"a layout's shape must be positive ints, got {shape!r}")
    return tuple(int(s) for s in shape)


def _n_params(fn: Callable) -> Optional[int]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _row_major(coords: Sequence, extents: Sequence[int]):
    """Row-major flattening; works for ints, Exprs and numpy arrays alike."""
    flat: Any = 0
    for c, n in zip(coords, extents):
        flat = flat * n + c
    return flat


def domain_arrays(shape: tuple) -> tuple:
    """Every index of `shape` in row-major order, one flat int64 array per dimension."""
    size = math.prod(shape)
    if size > MAX_ENUMERATE:
        raise LayoutError(f"domain {shape} has {size} points, more than the {MAX_ENUMERATE} "
                          "a brute-force check may enumerate")
    return tuple(a.reshape(-1).astype(np.int64) for a in np.indices(shape, dtype=np.int64))


@dataclass(frozen=True, init=False)
class Layout:
    """Logical index (over `shape`) -> physical coordinates (over `output_shape`).

    >>> Layout((64, 32), lambda i, j: [j, i])
    Layout((64, 32) -> (32, 64): (i, j) -> (j, i))

    `output_shape` is computed by evaluating the layout over its domain unless given (give it
    to declare padding: the packed GEMM panels do). `tables` holds the lookup tables a
    table-backed layout's expressions read (`Load`s of 1-D int64 buffers); see `inverse`.
    """

    shape: tuple
    vars: tuple
    forward: tuple
    output_shape: tuple
    tables: tuple

    def __init__(self, shape: Any, fn: Union[Callable, Sequence, Expr],
                 output_shape: Optional[Sequence[int]] = None, *, tables: tuple = ()):
        shape = _check_shape(shape)
        vars_ = index_vars(len(shape))
        if callable(fn) and not isinstance(fn, Expr):
            n = _n_params(fn)
            if n is not None and n != len(shape):
                raise LayoutError(f"layout function takes {n} indices but shape {shape} has "
                                  f"{len(shape)} dimensions")
            forward = _to_exprs(fn(*vars_), "a layout's physical coordinates")
        else:
            forward = _to_exprs(fn, "a layout's physical coordinates")
        table_names = {name for name, _ in tables}

        def check(node):
            if isinstance(node, Var) and node not in vars_:
                raise LayoutError(f"layout expression uses {node.name!r}, which is not one of "
                                  f"its indices {tuple(v.name for v in vars_)}")
            if isinstance(node, Load) and node.buffer.name not in table_names:
                raise LayoutError(f"layout expression reads buffer {node.buffer.name!r}")
        for e in forward:
            walk(e, check)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "vars", vars_)
        object.__setattr__(self, "forward", forward)
        object.__setattr__(self, "tables", tuple(tables))
        object.__setattr__(self, "output_shape", self._derive_output_shape(output_shape))

    @staticmethod
    def from_exprs(shape: Sequence[int], vars: Sequence[Var], forward: Sequence[Any],
                   output_shape: Optional[Sequence[int]] = None) -> "Layout":
        """A layout from expressions over arbitrary `vars` (renamed to the canonical ones)."""
        canon = dict(zip(vars, index_vars(len(vars))))
        return Layout(shape, [subst(convert(e), canon) for e in forward], output_shape)

    @staticmethod
    def identity(shape: Sequence[int]) -> "Layout":
        """Physical coordinates equal to the logical ones."""
        return Layout(shape, lambda *idx: list(idx))

    @staticmethod
    def row_major(shape: Sequence[int]) -> "Layout":
        """A single physical coordinate: the row-major linear index."""
        shape = _check_shape(shape)
        return Layout(shape, lambda *idx: _row_major(idx, shape))

    # -- evaluation -------------------------------------------------------------------------

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of logical elements."""
        return math.prod(self.shape)

    @property
    def physical_size(self) -> int:
        """Number of physical slots, padding included."""
        return math.prod(self.output_shape)

    @cached_property
    def _scalar_fn(self) -> Callable:
        return compile_exprs(self.forward, self.vars, False, self.tables)

    @cached_property
    def _vector_fn(self) -> Callable:
        return compile_exprs(self.forward, self.vars, True, self.tables)

    def __call__(self, *indices: Any) -> tuple:
        return self.apply(*indices)

    def apply(self, *indices: Any) -> tuple:
        """Physical coordinates of one logical index: ints in, ints out; Exprs in, Exprs out
        (substituted); numpy arrays in, arrays out."""
        if len(indices) == 1 and isinstance(indices[0], (tuple, list)):
            indices = tuple(indices[0])
        if len(indices) != self.ndim:
            raise LayoutError(f"layout over {self.shape} takes {self.ndim} indices, "
                              f"got {len(indices)}")
        if any(isinstance(x, Expr) for x in indices):
            mapping = {v: convert(x) for v, x in zip(self.vars, indices)}
            return tuple(subst(e, mapping) for e in self.forward)
        if any(isinstance(x, np.ndarray) for x in indices):
            return self.evaluate(*indices)
        return tuple(int(x) for x in self._scalar_fn(*(int(x) for x in indices)))

    def evaluate(self, *arrays: Any) -> tuple:
        """Vectorised `apply`: one int64 array per physical coordinate."""
        arrays = [np.asarray(a, dtype=np.int64) for a in arrays]
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        return tuple(np.broadcast_to(np.asarray(r, dtype=np.int64), shape)
                     for r in self._vector_fn(*arrays))

    def offset(self, *indices: Any):
        """Row-major flattening of the physical coordinates over `output_shape`: an int for
        ints, an Expr for Exprs (simplified assuming `Var` indices lie inside `shape`)."""
        coords = self.apply(*indices)
        flat = _row_major(coords, self.output_shape)
        if isinstance(flat, Expr):
            ranges = {}
            for x, n in zip(indices, self.shape):
                if isinstance(x, Var):
                    ranges[x] = (0, n - 1)
            return simplify(flat, ranges)
        return flat

    @cached_property
    def _coords(self) -> tuple:
        return self.evaluate(*domain_arrays(self.shape))

    def coordinate_table(self) -> np.ndarray:
        """Physical coordinates of every logical index, shape `(size, len(output_shape))`,
        logical indices in row-major order."""
        return np.stack(self._coords, axis=1)

    def offset_table(self) -> np.ndarray:
        """Physical offset of every logical index, as an array of the logical shape."""
        return np.asarray(_row_major(self._coords, self.output_shape)).reshape(self.shape)

    def _derive_output_shape(self, declared: Optional[Sequence[int]]) -> tuple:
        if self.size <= MAX_ENUMERATE:
            coords = self._coords
            lo = [int(c.min()) for c in coords]
            hi = [int(c.max()) for c in coords]
        else:
            ranges = domain_ranges(self.vars, self.shape)
            iv = [bound(e, ranges) for e in self.forward]
            lo = [x[0] for x in iv]
            hi = [x[1] for x in iv]
            if declared is None and any(x is None for x in lo + hi):
                raise LayoutError(f"cannot bound the physical extent of {self._map_str()}; "
                                  "pass output_shape")
        if any(x is not None and x < 0 for x in lo):
            raise LayoutError(f"layout {self._map_str()} produces negative coordinates")
        if declared is None:
            return tuple(h + 1 for h in hi)
        declared = _check_shape(declared)
        if len(declared) != len(self.forward) or any(
                h is not None and h >= n for h, n in zip(hi, declared)):
            raise LayoutError(f"layout {self._map_str()} does not fit in declared output "
                              f"shape {declared}")
        return declared

    # -- properties ---------------------------------------------------------------------------

    def is_injective(self) -> bool:
        """No two logical indices share a physical slot."""
        return int(np.unique(self.offset_table()).size) == self.size

    def is_bijective(self) -> bool:
        """Injective and onto every slot of `output_shape` (so: no padding)."""
        return self.physical_size == self.size and self.is_injective()

    def is_identity(self) -> bool:
        """The offset of every index is its row-major logical index (`identity` and
        `row_major` layouts both are)."""
        return self.physical_size == self.size and bool(
            np.array_equal(self.offset_table().reshape(-1), np.arange(self.size)))

    def equivalent(self, other: "Layout") -> bool:
        """Same shapes and the same offset for every index (not necessarily the same
        expressions)."""
        return (self.shape == other.shape and self.output_shape == other.output_shape
                and bool(np.array_equal(self.offset_table(), other.offset_table())))

    # -- algebra ------------------------------------------------------------------------------

    def _simplified(self, shape: tuple, forward: Sequence[Expr],
                    output_shape: Optional[Sequence[int]], tables: tuple = ()) -> "Layout":
        ranges = domain_ranges(index_vars(len(shape)), shape)
        return Layout(shape, [simplify(e, ranges) for e in forward], output_shape,
                      tables=tables or self.tables)

    def inverse(self) -> "Layout":
        """The layout from physical coordinates back to logical ones (bijective layouts only).

        A closed form is found for digit permutations (transposes, reshapes, packed panels,
        fragments) and for XOR-linear maps on power-of-two extents (swizzles); anything else
        gets a table-backed layout whose expression reads a lookup table (`tables`).
        """
        return self._inverse

    @cached_property
    def _inverse(self) -> "Layout":
        from ._inverse import invert
        return invert(self)

    def compose(self, other: "Layout") -> "Layout":
        """`self ∘ other`: first `other`, then `self` on its result. `other`'s physical space
        must lie inside `self`'s logical shape; the result has `other.shape` as domain."""
        if len(other.output_shape) != self.ndim or any(
                a > b for a, b in zip(other.output_shape, self.shape)):
            raise LayoutError(f"cannot compose: {other!r} maps into {other.output_shape}, "
                              f"outside the domain {self.shape} of {self!r}; reshape first")
        mapping = dict(zip(self.vars, other.forward))
        forward = [subst(e, mapping) for e in self.forward]
        tables = tuple(dict(self.tables + other.tables).items())
        return self._simplified(other.shape, forward, self.output_shape, tables)

    def reshape(self, new_shape: Sequence[int]) -> "Layout":
        """The same physical map seen through a different logical shape: the new index is
        linearised row-major and split again row-major over the old shape."""
        new_shape = _check_shape(new_shape)
        if math.prod(new_shape) != self.size:
            raise LayoutError(f"cannot reshape layout over {self.shape} ({self.size} elements) "
                              f"to {new_shape}")
        flat = _row_major(index_vars(len(new_shape)), new_shape)
        old = []
        stride = self.size
        for n in self.shape:
            stride //= n
            old.append((flat // stride) % n)
        ranges = domain_ranges(index_vars(len(new_shape)), new_shape)
        mapping = {v: simplify(x, ranges) for v, x in zip(self.vars, old)}
        forward = [subst(e, mapping) for e in self.forward]
        return self._simplified(new_shape, forward, self.output_shape)

    def repeat(self, count: int, dim: int = 0, out_dim: Optional[int] = None,
               stride: Optional[int] = None) -> "Layout":
        """Tile the layout `count` times along logical `dim`: copy `r` is this layout shifted
        by `r * stride` along physical coordinate `out_dim` (default: `dim` when it exists,
        else 0; default stride: the physical extent there, i.e. copies stacked)."""
        if count < 1:
            raise LayoutError(f"repeat count must be positive, got {count}")
        dim = dim % self.ndim
        out_dim = (dim if dim < len(self.output_shape) else 0) if out_dim is None else out_dim
        stride = self.output_shape[out_dim] if stride is None else stride
        v, extent = self.vars[dim], self.shape[dim]
        forward = list(subst(e, {v: v % extent}) for e in self.forward)
        forward[out_dim] = forward[out_dim] + (v // extent) * stride
        shape = list(self.shape)
        shape[dim] *= count
        out = list(self.output_shape)
        out[out_dim] = max(out[out_dim], (count - 1) * stride + out[out_dim])
        return self._simplified(tuple(shape), forward, out)

    # -- printing -----------------------------------------------------------------------------

    def _map_str(self) -> str:
        names = ", ".join(v.name for v in self.vars)
        return f"({names}) -> ({', '.join(expr_str(e) for e in self.forward)})"

    def __repr__(self) -> str:
        return f"Layout({self.shape} -> {self.output_shape}: {self._map_str()})"

    def __str__(self) -> str:
        return repr(self)


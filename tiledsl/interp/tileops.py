"""Tile operations on numpy regions: T.copy (and its atomic form), T.fill, T.gemm, T.reduce_*
and T.cumsum.

They follow the semantics `lower_tile_ops` + `legalize_memory` give them on every target: a
copy reads zero outside its global source and drops what falls outside its global
destination; on-chip regions must lie inside their tile. Each reads through `Mem.read`, so
an element of a tile that nothing wrote is reported, and writes through `Mem.write`.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from .. import ir
from ..ir import Copy, CumSum, Fill, Gemm, Reduce, Region
from .errors import InterpError, OutOfBoundsError
from ..ir.stmt import reduce_identity
from .values import atomic_combine, cast_value, compute_dtype, to_compute

__all__ = ["copy", "fill", "gemm", "reduce", "cumsum"]


def _ints(m, exprs) -> List[int]:
    return [int(m.ev(x, True)) for x in exprs]


def _outside(m, mem, what: str, d: int, lo: int, hi: int):
    raise m.error(OutOfBoundsError, f"{what}: region [{lo}, {hi}) is outside dimension {d} of "
                                    f"'{mem.name}' (size {mem.data.shape[d]})",
                  hint="on-chip tiles have a fixed shape: check the region's start")


def _box(m, mem, starts, extents, dims, what: str) -> Tuple[list, list]:
    """Per copy dimension, the [lo, hi) range of the region that lies inside the buffer
    (relative to the region's start); on-chip buffers must contain the whole region."""
    shape = mem.data.shape
    lo, hi = [0] * len(dims), [0] * len(dims)
    for k, d in enumerate(dims):
        a, b = max(0, -starts[d]), min(extents[d], shape[d] - starts[d])
        if mem.on_chip and (a > 0 or b < extents[d]):
            _outside(m, mem, what, d, starts[d], starts[d] + extents[d])
        lo[k], hi[k] = a, max(a, b)
    for d in range(len(shape)):
        if d not in dims and not 0 <= starts[d] < shape[d]:
            if mem.on_chip:
                _outside(m, mem, what, d, starts[d], starts[d] + 1)
            return [0] * len(dims), [0] * len(dims)
    return lo, hi


def _key(starts, dims, lo, hi) -> tuple:
    key = list(starts)
    for k, d in enumerate(dims):
        key[d] = slice(starts[d] + lo[k], starts[d] + hi[k])
    return tuple(key)


def copy(m, s: Copy) -> None:
    src, dst = s.src, s.dst
    sm, dm = m.mem[src.buffer.name], m.mem[dst.buffer.name]
    ss, se = _ints(m, src.starts), _ints(m, src.extents)
    ds, de = _ints(m, dst.starts), _ints(m, dst.extents)
    sd, dd = src.nonunit_dims(), dst.nonunit_dims()
    s_ext, d_ext = [se[d] for d in sd], [de[d] for d in dd]
    if s_ext != d_ext:
        raise m.error(InterpError, f"T.copy: the source region of '{sm.name}' is {tuple(s_ext)} but the "
                                   f"destination region of '{dm.name}' is {tuple(d_ext)} at run time",
                      hint="both sides of a copy need one shape")
    slo, shi = _box(m, sm, ss, se, sd, "T.copy source")
    dlo, dhi = _box(m, dm, ds, de, dd, "T.copy destination")
    if any(h <= lo for lo, h in zip(dlo, dhi)):
        return
    tile = np.zeros([h - lo for lo, h in zip(dlo, dhi)], dm.data.dtype)
    ilo = [max(a, b) for a, b in zip(slo, dlo)]
    ihi = [min(a, b) for a, b in zip(shi, dhi)]
    if all(lo < h for lo, h in zip(ilo, ihi)):
        vals = sm.read(_key(ss, sd, ilo, ihi), m.block, m.access_failure(sm))
        vals = cast_value(to_compute(vals, sm.buffer.dtype), sm.buffer.dtype, dm.buffer.dtype)
        tile[tuple(slice(a - o, b - o) for a, b, o in zip(ilo, ihi, dlo))] = vals
    key = _key(ds, dd, dlo, dhi)
    if s.atomic:  # T.atomic_add(C[...], tile): every element combined with what C holds
        dt = dm.buffer.dtype
        dm.atomic([key], [to_compute(tile, dt)], lambda old, v: atomic_combine(s.atomic, old, v, dt))
        return
    dm.write(key, tile, m.block, m.access_failure(dm))


def fill(m, s: Fill) -> None:
    r = s.dst
    mem = m.mem[r.buffer.name]
    starts, extents = _ints(m, r.starts), _ints(m, r.extents)
    dims = list(range(len(starts)))
    lo, hi = _box(m, mem, starts, extents, dims, "T.fill")
    if any(h <= a for a, h in zip(lo, hi)):
        return
    value = m.ev(s.value, True)
    tile = np.full([h - a for a, h in zip(lo, hi)], value, dtype=mem.data.dtype)
    mem.write(_key(starts, dims, lo, hi), tile, m.block, m.access_failure(mem))


def _matrix(m, r: Region, what: str):
    mem = m.mem[r.buffer.name]
    starts, extents = _ints(m, r.starts), _ints(m, r.extents)
    dims = r.matrix_dims(2)
    _box(m, mem, starts, extents, dims, what)
    return mem, _key(starts, dims, [0, 0], [extents[d] for d in dims])


def gemm(m, s: Gemm) -> None:
    """C (+)= op(A) @ op(B), computed in float64 (or the integer accumulator type) and
    rounded once into C: an independent reference, not a copy of a micro-kernel's order."""
    am, ak = _matrix(m, s.a, "T.gemm A")
    bm, bk = _matrix(m, s.b, "T.gemm B")
    cm, ck = _matrix(m, s.c, "T.gemm C")
    acc = cm.buffer.dtype
    wide = np.float64 if acc.is_float else compute_dtype(acc)
    a = to_compute(am.read(ak, m.block, m.access_failure(am)), am.buffer.dtype).astype(wide)
    b = to_compute(bm.read(bk, m.block, m.access_failure(bm)), bm.buffer.dtype).astype(wide)
    a = a.T if s.trans_a else a
    b = b.T if s.trans_b else b
    if s.clear_accum:
        c = np.zeros((a.shape[0], b.shape[1]), wide)
    else:
        c = to_compute(cm.read(ck, m.block, m.access_failure(cm)), acc).astype(wide)
    with np.errstate(all="ignore"):
        out = c + a @ b
    cm.write(ck, cast_value(out, ir.dtype("float64") if acc.is_float else acc, acc), m.block, m.access_failure(cm))


def reduce(m, s: Reduce) -> None:
    sm, dm = m.mem[s.src.name], m.mem[s.dst.name]
    dt = dm.buffer.dtype
    full_s = tuple(slice(None) for _ in sm.data.shape)
    full_d = tuple(slice(None) for _ in dm.data.shape)
    x = cast_value(to_compute(sm.read(full_s, m.block, m.access_failure(sm)), sm.buffer.dtype),
                   sm.buffer.dtype, dt)
    if s.kind in ("abssum", "absmax"):
        x = np.where(x < 0, -x, x)
    out_shape = x.shape[:s.dim] + x.shape[s.dim + 1:]
    if s.clear:
        init = np.full(out_shape, reduce_identity(s.kind, dt), dtype=x.dtype)
    else:
        init = to_compute(dm.read(full_d, m.block, m.access_failure(dm)), dt).reshape(out_shape)
    with np.errstate(all="ignore"):
        if s.kind in ("sum", "abssum"):
            # Left to right, as the generated loop accumulates: cumsum is sequential.
            seq = np.concatenate([np.expand_dims(init, s.dim), x], axis=s.dim)
            out = np.take(np.cumsum(seq, axis=s.dim, dtype=x.dtype), -1, axis=s.dim)
        else:
            # Folded in order with `acc > x ? acc : x`, as the generated loop does: a NaN
            # survives only when nothing follows it (numpy's max would propagate it).
            out = init
            for k in range(x.shape[s.dim]):
                xk = np.take(x, k, axis=s.dim)
                keep = out > xk if s.kind in ("max", "absmax") else out < xk
                out = np.where(keep, out, xk)
    dm.write(full_d, np.asarray(out).reshape(dm.data.shape), m.block, m.access_failure(dm))



def cumsum(m, s: CumSum) -> None:
    """Inclusive prefix sums along `dim`, left to right (right to left when reverse) in the
    destination's type (float32 for 16-bit floats), rounded into dst element by element."""
    sm, dm = m.mem[s.src.name], m.mem[s.dst.name]
    dt = dm.buffer.dtype
    full = tuple(slice(None) for _ in sm.data.shape)
    acc_t = ir.dtype("float32") if dt.is_narrow_float else dt
    x = cast_value(to_compute(sm.read(full, m.block, m.access_failure(sm)), sm.buffer.dtype),
                   sm.buffer.dtype, acc_t)
    if s.reverse:
        x = np.flip(x, axis=s.dim)
    with np.errstate(all="ignore"):
        out = np.cumsum(x, axis=s.dim, dtype=x.dtype)
    if s.reverse:
        out = np.flip(out, axis=s.dim)
    dm.write(full, cast_value(out, acc_t, dt), m.block, m.access_failure(dm))

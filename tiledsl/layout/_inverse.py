"""Inverting a bijective layout, in closed form where one can be found.

Two families cover every layout tiledsl builds:

* digit permutations: each logical index is cut into mixed-radix digits and every digit
  lands, with some stride, in exactly one physical coordinate (transposes, reshapes, packed
  GEMM panels, mma fragments). The inverse reads the digits back out of the physical
  coordinates with `//` and `%`.
* XOR-linear maps on power-of-two extents: every physical bit is the XOR of some logical
  bits (swizzles, and again fragments). The inverse is the inverse bit matrix over GF(2),
  written as shifted bit-fields combined with `+` and `^`.

Each candidate is checked against the forward map on the whole domain before it is used;
when neither applies the inverse is a lookup table (still a `Layout`, reading `tables`).
"""
from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np

from tiledsl.ir.buffer import Buffer
from tiledsl.ir.dtype import int64
from tiledsl.ir.expr import Const, Expr

from ._simplify import domain_ranges, simplify
from .layout import Layout, LayoutError, _row_major, domain_arrays, index_vars

__all__ = ["invert"]


def invert(layout: Layout) -> Layout:
    """See `Layout.inverse`."""
    if not layout.is_bijective():
        raise LayoutError(f"only a bijective layout has an inverse; {layout!r} is not "
                          "(it repeats a physical slot or leaves padding)")
    domain = domain_arrays(layout.shape)
    phys = layout._coords
    for strategy in (_digit_inverse, _xor_inverse):
        forward = strategy(layout, phys, domain)
        if forward is None:
            continue
        ranges = domain_ranges(index_vars(len(layout.output_shape)), layout.output_shape)
        inv = Layout(layout.output_shape, [simplify(e, ranges) for e in forward], layout.shape)
        back = inv.evaluate(*phys)
        if all(np.array_equal(b, d) for b, d in zip(back, domain)):
            return inv
    return _table_inverse(layout, phys)


def _unit(layout: Layout, d: int, x: int) -> tuple:
    return layout.apply(*[x if q == d else 0 for q in range(layout.ndim)])


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(b for b in range(1, min(n, limit) + 1) if n % b == 0)


def _digit_inverse(layout: Layout, phys: tuple, domain: tuple) -> Optional[list]:
    if any(layout.apply(*[0] * layout.ndim)):
        return None
    digits = []  # (logical dim, logical stride a, radix b, physical stride vector c)
    for d, extent in enumerate(layout.shape):
        a = 1
        while a < extent:
            if extent % a:
                return None
            c = _unit(layout, d, a)
            run = 1
            while run * a < extent and _unit(layout, d, run * a) == tuple(run * x for x in c):
                run += 1
            b = _largest_divisor_at_most(extent // a, run)
            if b == 1:
                return None
            digits.append((d, a, b, c))
            a *= b
    # The candidate must reproduce the forward map everywhere.
    for o, actual in enumerate(phys):
        pred = np.zeros_like(actual)
        for d, a, b, c in digits:
            if c[o]:
                pred += (domain[d] // a % b) * c[o]
        if not np.array_equal(pred, actual):
            return None
    # Invertible as a digit permutation: each digit feeds one physical coordinate, and the
    # digits of a coordinate tile it exactly (strides 1, b0, b0*b1, ...).
    per_coord: dict = {}
    for d, a, b, c in digits:
        nonzero = [o for o, x in enumerate(c) if x]
        if len(nonzero) != 1 or c[nonzero[0]] < 0:
            return None
        per_coord.setdefault(nonzero[0], []).append((c[nonzero[0]], b, d, a))
    for o, extent in enumerate(layout.output_shape):
        stride = 1
        for s, b, _, _ in sorted(per_coord.get(o, [])):
            if s != stride:
                return None
            stride *= b
        if stride != extent:
            return None
    y = index_vars(len(layout.output_shape))
    out: list = [Const(0)] * layout.ndim
    for o, ds in sorted(per_coord.items()):
        for s, b, d, a in sorted(ds):
            out[d] = out[d] + (y[o] // s % b) * a
    return out


def _log2(n: int) -> Optional[int]:
    return n.bit_length() - 1 if n > 0 and n & (n - 1) == 0 else None


def _bits(shape: tuple) -> Optional[list]:
    logs = [_log2(n) for n in shape]
    if any(x is None for x in logs):
        return None
    return [(d, k) for d, n in enumerate(logs) for k in range(n)]


def _xor_inverse(layout: Layout, phys: tuple, domain: tuple) -> Optional[list]:
    in_bits, out_bits = _bits(layout.shape), _bits(layout.output_shape)
    if in_bits is None or out_bits is None or len(in_bits) != len(out_bits):
        return None
    if any(layout.apply(*[0] * layout.ndim)):
        return None
    n = len(in_bits)
    out_pos = {ob: r for r, ob in enumerate(out_bits)}
    # cols[t]: the physical value produced by logical bit t alone.
    cols = [_unit(layout, d, 1 << k) for d, k in in_bits]
    pred = [np.zeros_like(p) for p in phys]
    for (d, k), col in zip(in_bits, cols):
        bit = (domain[d] >> k) & 1
        for o, v in enumerate(col):
            pred[o] ^= bit * v
    if not all(np.array_equal(p, a) for p, a in zip(pred, phys)):
        return None
    # Rows of the GF(2) matrix: physical bit r as a mask of logical bits.
    rows = [0] * n
    for t, col in enumerate(cols):
        for o, v in enumerate(col):
            for m in range(v.bit_length()):
                if (v >> m) & 1:
                    if (o, m) not in out_pos:
                        return None
                    rows[out_pos[(o, m)]] |= 1 << t
    inv = _gf2_inverse(rows)
    if inv is None:
        return None
    # Logical bit t = XOR of the physical bits set in inv[t]; group into bit-fields.
    sources: dict = {}
    for t, (d, k) in enumerate(in_bits):
        for r in range(n):
            if (inv[t] >> r) & 1:
                sources.setdefault(d, set()).add((k, out_bits[r]))
    return [_fields_expr(sources.get(d, set()), len(layout.output_shape))
            for d in range(layout.ndim)]


def _gf2_inverse(rows: list) -> Optional[list]:
    n = len(rows)
    a, inv = list(rows), [1 << r for r in range(n)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if (a[r] >> col) & 1), None)
        if pivot is None:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        inv[col], inv[pivot] = inv[pivot], inv[col]
        for r in range(n):
            if r != col and (a[r] >> col) & 1:
                a[r] ^= a[col]
                inv[r] ^= inv[col]
    return inv


def _fields_expr(pairs: set, n_out: int) -> Expr:
    """`pairs` holds (dst bit, (physical coord, src bit)); emit runs of consecutive bits as
    `y // 2^src % 2^len * 2^dst`, summing disjoint runs and XOR-ing overlapping ones."""
    y = index_vars(n_out)
    runs = []
    for k, (o, m) in sorted(pairs, key=lambda p: (p[1], p[0])):
        if (k - 1, (o, m - 1)) in pairs:
            continue
        length = 1
        while (k + length, (o, m + length)) in pairs:
            length += 1
        runs.append((k, o, m, length))
    layers: list = []  # [(occupied bit mask, expr)]
    for k, o, m, length in sorted(runs):
        term = (y[o] // (1 << m) % (1 << length)) * (1 << k)
        mask = ((1 << length) - 1) << k
        for idx, (occupied, e) in enumerate(layers):
            if not occupied & mask:
                layers[idx] = (occupied | mask, e + term)
                break
        else:
            layers.append((mask, term))
    if not layers:
        return Const(0)
    out = layers[0][1]
    for _, e in layers[1:]:
        out = out ^ e
    return out


def _table_inverse(layout: Layout, phys: tuple) -> Layout:
    size = layout.size
    flat = np.asarray(_row_major(phys, layout.output_shape), dtype=np.int64)
    table = np.empty(size, dtype=np.int64)
    table[flat] = np.arange(size, dtype=np.int64)
    digest = hashlib.sha1(table.tobytes() + repr(layout.output_shape).encode()).hexdigest()
    buf = Buffer(f"layout_inv_{digest[:12]}", (size,), int64, "local")
    y = index_vars(len(layout.output_shape))
    logical = buf[_row_major(y, layout.output_shape)]
    forward = []
    stride = size
    for n in layout.shape:
        stride //= n
        forward.append(logical // stride % n if stride * n < size else logical // stride)
    return Layout(layout.output_shape, forward, layout.shape,
                  tables=((buf.name, tuple(int(x) for x in table)),))


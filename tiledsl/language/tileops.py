"""Tile operations as written by users, normalised once into canonical checked IR nodes.

Users write `T.copy(A[by * 64, k * 32], A_s)` (a start point whose extent is the other
side's shape) or `T.copy(Q[b, h, i * 64:(i + 1) * 64, :], Q_s)` (slices); both become a
`Copy` of two full-rank `Region`s whose non-unit extents agree. Shape and dtype mistakes are
reported here, at the user's line, before anything is lowered.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from .. import ir
from ..errors import TypeCheckError
from ..ir import Buffer, Expr, Region, Span

__all__ = ["RegionRef", "TILE_HANDLERS", "usage_hint"]

# The default hint of an error about a T construct: how it is used. Keys are message prefixes.
USAGE = {
    "T.copy": "T.copy(src, dst) copies a region: each side is a tile, a slice A[i, 0:64] or a start "
              "element A[by * 64, k * 32] (whose extents are the other side's); the non-unit extents "
              "of the two sides must agree",
    "T.gemm": "T.gemm(A_s, B_s, C_f, transpose_A=False, transpose_B=False, clear_accum=False) computes "
              "C_f += A_s @ B_s on 2-D shared / fragment tiles: A is MxK (KxM with transpose_A), B is KxN "
              "(NxK with transpose_B), C is MxN; float16 / bfloat16 accumulate in float32, int8 in int32",
    "T.reduce": "T.reduce_sum(src, dst, dim=-1, clear=True): src and dst are shared / fragment tiles and "
                "dst has src's shape without dimension dim",
    "T.fill": "T.fill(tile_or_region, value) sets every element to one scalar; T.clear(tile) to zero",
    "T.clear": "T.clear(tile) sets every element of a shared / fragment tile to zero",
    "T.alloc": "T.alloc_shared((rows, cols), \"float16\") / T.alloc_fragment(...) inside 'with T.Kernel(...)': "
               "a shape of Python ints and a dtype",
    "T.alloc_var": "acc = T.alloc_var(\"float32\") (starts at 0) or T.alloc_var(\"int32\", init): "
                   "a mutable run-time scalar",
    "T.annotate_layout": "T.annotate_layout({A_s: layout}): a tiledsl.layout.Layout over the tile's shape, "
                         "one per buffer",
    "T.print": "T.print(value, \"message\") prints a run-time value, T.print(tile) every element of a buffer",
    "T.Kernel": "with T.Kernel(grid_x, grid_y, threads=128) as (bx, by): one to three integer grid sizes",
    "a tile shape": "on-chip tiles have shapes known when the kernel is defined: a tuple of Python ints",
    "unknown dtype": "write a dtype as a string (\"float16\") or as T.float16",
}


def usage_hint(msg: str) -> Optional[str]:
    """The usage of the T construct an error message starts with, if any."""
    keys = [k for k in USAGE if msg.startswith(k)]
    if keys:
        return USAGE[max(keys, key=len)]
    if "in an IR expression" in msg:
        return ("run-time expressions are made of numbers, loop and block indices, scalar parameters "
                "and buffer elements (A[i, j]); a whole buffer, a string or None cannot be one")
    return None


@dataclass(frozen=True)
class RegionRef:
    """`A[i, 0:64]` or `A[i]` on a buffer of higher rank: a region before normalisation."""
    buffer: Buffer
    indices: tuple
    span: Optional[Span] = None


def _shape_tuple(p, node, shape) -> tuple:
    if isinstance(shape, (int, Expr)):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise p.error(node, f"a tile shape must be a tuple of positive integers, got {shape!r}",
                      cls=TypeCheckError)
    for s in shape:
        if isinstance(s, Expr) or not isinstance(s, int) or isinstance(s, bool) or s <= 0:
            raise p.error(node, f"a tile shape must be a tuple of positive Python integers, got {shape!r}",
                          hint="on-chip tiles have sizes known when the kernel is defined",
                          cls=TypeCheckError)
    return tuple(shape)


def _alloc(scope: str):
    def handler(p, node, args, kwargs):
        if len(args) + len(kwargs) < 2 and not (scope == "local" and args):
            raise p.error(node, f"T.alloc_{scope}(shape, dtype) needs a shape and a dtype")
        shape = args[0] if args else kwargs.pop("shape")
        dtype = args[1] if len(args) > 1 else kwargs.pop("dtype", "float32")
        kwargs.pop("scope", None)
        name = _target_name(node) or f"{scope}_buf"
        try:
            dt = ir.dtype(dtype)
        except TypeError as e:
            raise p.error(node, str(e), cls=TypeCheckError) from None
        return p.add_alloc(Buffer(p.unique(name), _shape_tuple(p, node, shape), dt, scope))
    return handler


def _alloc_var(p, node, args, kwargs):
    dtype = args[0] if args else kwargs.get("dtype", "float32")
    init = args[1] if len(args) > 1 else kwargs.get("init")
    var = ir.Var(p.unique(_target_name(node) or "v"), ir.dtype(dtype))
    p.mutable.add(var)
    return _VarDecl(var, ir.cast(init if init is not None else 0, var.dtype))


@dataclass(frozen=True)
class _VarDecl:
    var: ir.Var
    init: Expr


def _target_name(node) -> Optional[str]:
    parent = getattr(node, "_tdsl_target", None)
    return parent


def as_region(p, node, value: Any, what: str) -> tuple:
    """(buffer, starts, extents-or-None) for a buffer, a point `A[i, j]` or a `RegionRef`."""
    if isinstance(value, Buffer):
        return value, tuple(ir.const(0) for _ in value.shape), value.shape
    if isinstance(value, ir.Load):
        return value.buffer, value.indices, None
    if isinstance(value, RegionRef):
        buf = value.buffer
        idx = list(value.indices) + [slice(None, None)] * (buf.ndim - len(value.indices))
        starts, extents = [], []
        for d, i in enumerate(idx):
            if isinstance(i, slice):
                lo = ir.convert(0 if i.start is None else i.start)
                hi = buf.shape[d] if i.stop is None else ir.convert(i.stop)
                ext = hi - lo
                if isinstance(ext, ir.Const) and ext.value <= 0:
                    raise p.error(node, f"{what}: empty slice in dimension {d} of '{buf.name}'",
                                  cls=TypeCheckError)
                starts.append(lo)
                extents.append(ext)
            else:
                starts.append(ir.convert(i))
                extents.append(ir.const(1))
        return buf, tuple(starts), tuple(extents)
    raise p.error(node, f"{what} must be a buffer or a region of one (A, A[i, j] or A[i, 0:64]), "
                        f"got {type(value).__name__}", cls=TypeCheckError)


def _squeeze(extents) -> tuple:
    return tuple(e for e in extents if not (isinstance(e, ir.Const) and e.value == 1))


def _fit(p, node, buf, starts, other_extents, what) -> tuple:
    """Extents for a start point: the other side's extents when the ranks agree, else its
    non-unit extents right-aligned (`T.copy(Q[b, h, i, 0], Q_s)` with a 2-d Q_s)."""
    if len(other_extents) == buf.ndim:
        return tuple(other_extents)
    sq = _squeeze(other_extents)
    if len(sq) > buf.ndim:
        raise p.error(node, f"{what}: a {len(sq)}-d tile does not fit in {buf.ndim}-d '{buf.name}'",
                      cls=TypeCheckError)
    return (ir.const(1),) * (buf.ndim - len(sq)) + sq


def _check_inside(p, node, region: Region, what: str) -> None:
    """On-chip tiles have static shapes: an access past their end is a definite bug."""
    buf = region.buffer
    if buf.scope == "global":
        return
    for d, (s, e, n) in enumerate(zip(region.starts, region.extents, buf.shape)):
        if isinstance(s, ir.Const) and isinstance(e, ir.Const) and isinstance(n, ir.Const):
            if s.value < 0 or s.value + e.value > n.value:
                raise p.error(node, f"{what}: region [{s.value}, {s.value + e.value}) is outside "
                                    f"dimension {d} of '{buf.name}' (size {n.value})", cls=TypeCheckError)


def _copy(p, node, args, kwargs):
    if len(args) != 2 or kwargs.keys() - {"disable_tma", "coalesced_width"}:
        raise p.error(node, "T.copy(src, dst) takes exactly two arguments", cls=TypeCheckError)
    return _regions(p, node, args[0], args[1], "T.copy")


def _regions(p, node, src_value, dst_value, what: str, atomic: str = "") -> ir.Copy:
    """The Copy from `src_value` to `dst_value` (each a tile, a slice or a start element)."""
    sb, ss, se = as_region(p, node, src_value, f"{what} source")
    db, ds, de = as_region(p, node, dst_value, f"{what} destination")
    if se is None and de is None:
        raise p.error(node, f"{what}: one side must have a known shape (a whole buffer or a slice)",
                      cls=TypeCheckError)
    if se is None:
        se = _fit(p, node, sb, ss, de, f"{what} source")
    if de is None:
        de = _fit(p, node, db, ds, se, f"{what} destination")
    src, dst = Region(sb, ss, se), Region(db, ds, de)
    a, b = src.squeezed(), dst.squeezed()
    if len(a) != len(b) or any(isinstance(x, ir.Const) and isinstance(y, ir.Const) and x.value != y.value
                               for x, y in zip(a, b)):
        raise p.error(node, f"{what}: source region {_fmt(src.extents)} of '{sb.name}' and destination "
                            f"{_fmt(dst.extents)} of '{db.name}' have different shapes", cls=TypeCheckError)
    _check_inside(p, node, src, f"{what} source")
    _check_inside(p, node, dst, f"{what} destination")
    return ir.Copy(src, dst, span=p.span(node), atomic=atomic)


def _atomic(op: str):
    name = f"T.atomic_{op}"

    def handler(p, node, args, kwargs):
        kwargs.pop("memory_order", None)  # every atomic here is relaxed (as TileLang's default)
        if kwargs.pop("return_prev", False):
            raise p.error(node, f"{name}: return_prev is not supported", cls=TypeCheckError,
                          hint="read the element after the kernel, or keep the value in a tile")
        if len(args) != 2 or kwargs:
            raise p.error(node, f"{name}(dst, value) takes two arguments", cls=TypeCheckError)
        dst, value = args
        target = dst.buffer if isinstance(dst, (ir.Load, RegionRef)) else dst
        if isinstance(target, Buffer):
            if target.scope in ("fragment", "local"):
                raise p.error(node, f"{name}: '{target.name}' is a {target.scope} buffer, which only its "
                                    f"own thread updates", cls=TypeCheckError,
                              hint=f"update it directly ({target.name}[i] += v); atomics are for global "
                                   f"tensors and shared tiles")
            if target.dtype.is_bool:
                raise p.error(node, f"{name}: '{target.name}' is bool", cls=TypeCheckError)
        if isinstance(value, (Buffer, RegionRef)):  # a tile into a region of dst
            if p.parallel_depth:
                raise p.error(node, f"{name} of a whole tile cannot be inside a T.Parallel loop",
                              hint=f"move it out of the loop, or update one element: {name}(C[i, j], v)")
            return _regions(p, node, value, dst, name, atomic=op)
        if not isinstance(dst, ir.Load):
            raise p.error(node, f"{name}: the destination of a scalar value must be one element, "
                                f"such as C[i, j]", cls=TypeCheckError,
                          hint=f"{name}(C[by * 64, bx * 64], C_f) updates a region from a tile")
        try:
            v = ir.cast(value, dst.buffer.dtype)
        except TypeError as e:
            raise p.error(node, f"{name}: {e}", cls=TypeCheckError) from None
        return ir.Store(dst.buffer, dst.indices, v, span=p.span(node), atomic=op)
    return handler


def _cumsum(p, node, args, kwargs):
    names = ("src", "dst", "dim", "reverse")
    if len(args) > 4 or kwargs.keys() - set(names):
        raise p.error(node, "T.cumsum(src, dst=None, dim=0, reverse=False) got unexpected arguments",
                      cls=TypeCheckError)
    given = {**dict(zip(names, args)), **kwargs}
    src, dst = given.get("src"), given.get("dst")
    dst = src if dst is None else dst
    dim, reverse = given.get("dim", 0), given.get("reverse", False)
    for what, b in (("source", src), ("destination", dst)):
        if not isinstance(b, Buffer) or b.scope == "global":
            raise p.error(node, f"T.cumsum: the {what} must be a shared or fragment tile",
                          hint="T.copy the data into a tile first", cls=TypeCheckError)
    if src.static_shape != dst.static_shape:
        raise p.error(node, f"T.cumsum: '{src.name}' is {src.static_shape} but '{dst.name}' is "
                            f"{dst.static_shape}; they need one shape", cls=TypeCheckError)
    if not isinstance(dim, int) or isinstance(dim, bool) or not -src.ndim <= dim < src.ndim:
        raise p.error(node, f"T.cumsum: dim {dim!r} is out of range for a {src.ndim}-d tile",
                      cls=TypeCheckError)
    if isinstance(reverse, Expr):
        raise p.error(node, "T.cumsum: reverse must be a Python bool", cls=TypeCheckError)
    return ir.CumSum(src, dst, dim % src.ndim, bool(reverse), span=p.span(node))


def _use_swizzle(p, node, args, kwargs):
    names = ("panel_size", "order", "enable")
    if len(args) > 3 or kwargs.keys() - set(names):
        raise p.error(node, "T.use_swizzle(panel_size=8, order=\"row\", enable=True) got unexpected "
                            "arguments", cls=TypeCheckError)
    given = {**dict(zip(names, args)), **kwargs}
    panel, order, enable = given.get("panel_size", 8), given.get("order", "row"), given.get("enable", True)
    if isinstance(enable, Expr) or isinstance(panel, Expr):
        raise p.error(node, "T.use_swizzle: panel_size and enable must be Python values", cls=TypeCheckError)
    if not isinstance(panel, int) or isinstance(panel, bool) or panel < 1:
        raise p.error(node, f"T.use_swizzle: panel_size must be a positive integer, got {panel!r}",
                      cls=TypeCheckError)
    if order not in ("row", "col", "column"):
        raise p.error(node, f"T.use_swizzle: order must be \"row\" or \"col\", got {order!r}",
                      cls=TypeCheckError)
    if p.parallel_depth or p.kernel_swizzle is None:
        raise p.error(node, "T.use_swizzle belongs directly in the T.Kernel block, outside loops")
    if p.kernel_swizzle:
        raise p.error(node, f"T.use_swizzle: this kernel already has one (line {p.kernel_swizzle[0][2].line})")
    if enable:
        p.kernel_swizzle.append((panel, "row" if order == "row" else "col", p.span(node)))
    return None


def _fmt(extents) -> str:
    return "(" + ", ".join(str(e) for e in extents) + ("," if len(extents) == 1 else "") + ")"


def _tile2d(p, node, value, what) -> Region:
    buf, starts, extents = as_region(p, node, value, what)
    if extents is None:
        raise p.error(node, f"{what} must be a whole tile or a slice of one, not an element",
                      cls=TypeCheckError)
    region = Region(buf, starts, extents)
    if buf.scope == "global":
        raise p.error(node, f"{what} '{buf.name}' is a global tensor: T.gemm works on shared or "
                            f"fragment tiles", hint=f"T.copy it into a T.alloc_shared tile first",
                      cls=TypeCheckError)
    if len(region.squeezed()) > 2 or region.static_extents is None:
        raise p.error(node, f"{what} must be a 2-D tile, got shape {_fmt(extents)}", cls=TypeCheckError)
    _check_inside(p, node, region, what)
    return region


def _mat_shape(region: Region) -> tuple:
    ext = region.static_extents
    sq = [e for e in ext if e != 1]
    if len(ext) >= 2 and len(sq) < 2:
        return tuple(ext[-2:])
    return tuple(sq) if len(sq) == 2 else (1, sq[0]) if sq else (1, 1)


_ACCUM = {"float16": ("float32", "float16"), "bfloat16": ("float32",), "float32": ("float32",),
          "float64": ("float64",), "int8": ("int32",), "uint8": ("int32",)}


def _gemm(p, node, args, kwargs):
    if len(args) != 3:
        raise p.error(node, f"T.gemm(A, B, C) takes three tiles, got {len(args)}", cls=TypeCheckError)
    ta = bool(kwargs.pop("transpose_A", False))
    tb = bool(kwargs.pop("transpose_B", False))
    clear = bool(kwargs.pop("clear_accum", False))
    policy = kwargs.pop("policy", "square")
    for k in ("k_pack", "wg_wait"):
        kwargs.pop(k, None)
    if kwargs:
        raise p.error(node, f"T.gemm got unexpected arguments {sorted(kwargs)}", cls=TypeCheckError)
    a = _tile2d(p, node, args[0], "T.gemm A")
    b = _tile2d(p, node, args[1], "T.gemm B")
    c = _tile2d(p, node, args[2], "T.gemm C")
    (am, ak), (bk, bn), (cm, cn) = _mat_shape(a), _mat_shape(b), _mat_shape(c)
    if ta:
        am, ak = ak, am
    if tb:
        bk, bn = bn, bk
    if ak != bk or am != cm or bn != cn:
        raise p.error(node, f"T.gemm: shapes do not agree: A is {am}x{ak}"
                            f"{' (transposed)' if ta else ''}, B is {bk}x{bn}{' (transposed)' if tb else ''}, "
                            f"C is {cm}x{cn}; need A: MxK, B: KxN, C: MxN", cls=TypeCheckError)
    ad, bd, cd = a.buffer.dtype, b.buffer.dtype, c.buffer.dtype
    if ad != bd:
        raise p.error(node, f"T.gemm: A is {ad} but B is {bd}; both operands need one dtype",
                      cls=TypeCheckError)
    if cd.name not in _ACCUM.get(ad.name, ()):
        raise p.error(node, f"T.gemm: {ad} inputs cannot accumulate into {cd} C",
                      hint=f"use a fragment of {_ACCUM.get(ad.name, ('float32',))[0]} for C",
                      cls=TypeCheckError)
    return ir.Gemm(a, b, c, ta, tb, clear, str(policy), span=p.span(node))


def _fill(p, node, args, kwargs):
    if len(args) != 2 or kwargs:
        raise p.error(node, "T.fill(buffer, value) takes two arguments", cls=TypeCheckError)
    buf, starts, extents = as_region(p, node, args[0], "T.fill destination")
    if extents is None:
        extents = (ir.const(1),) * buf.ndim
    value = args[1]
    if isinstance(value, (Buffer, RegionRef)):
        raise p.error(node, "T.fill value must be a scalar", cls=TypeCheckError)
    return ir.Fill(Region(buf, starts, extents), ir.cast(value, buf.dtype), span=p.span(node))


def _clear(p, node, args, kwargs):
    if len(args) != 1 or kwargs:
        raise p.error(node, "T.clear(buffer) takes one argument", cls=TypeCheckError)
    return _fill(p, node, [args[0], 0], {})


def _reduce(kind: str):
    def handler(p, node, args, kwargs):
        if len(args) < 2:
            raise p.error(node, f"T.reduce_{kind}(src, dst, dim=-1, clear=True) needs src and dst",
                          cls=TypeCheckError)
        src, dst = args[0], args[1]
        dim = args[2] if len(args) > 2 else kwargs.pop("dim", -1)
        clear = args[3] if len(args) > 3 else kwargs.pop("clear", True)
        if kwargs or len(args) > 4:
            raise p.error(node, f"T.reduce_{kind}(src, dst, dim=-1, clear=True) got unexpected arguments",
                          cls=TypeCheckError)
        for what, b in (("source", src), ("destination", dst)):
            if not isinstance(b, Buffer) or b.scope == "global":
                raise p.error(node, f"T.reduce_{kind}: the {what} must be a shared or fragment tile",
                              cls=TypeCheckError)
        if not isinstance(dim, int) or not -src.ndim <= dim < src.ndim:
            raise p.error(node, f"T.reduce_{kind}: dim {dim} is out of range for a {src.ndim}-d tile",
                          cls=TypeCheckError)
        dim %= src.ndim
        want = src.static_shape[:dim] + src.static_shape[dim + 1:]
        have = dst.static_shape
        if have != want and have != want + (1,) and not (want == () and have == (1,)):
            raise p.error(node, f"T.reduce_{kind}: reducing {src.name}{src.static_shape} along dim {dim} "
                                f"gives shape {want}, but '{dst.name}' is {have}", cls=TypeCheckError)
        return ir.Reduce(kind, src, dst, dim, bool(clear), span=p.span(node))
    return handler


def _annotate_layout(p, node, args, kwargs):
    from ..layout import Fragment, Layout
    if len(args) != 1 or not isinstance(args[0], dict):
        raise p.error(node, "T.annotate_layout takes one dict {buffer: layout}", cls=TypeCheckError)
    for buf, layout in args[0].items():
        if not isinstance(buf, Buffer) or buf.scope == "global":
            raise p.error(node, "T.annotate_layout: keys must be shared / fragment / local buffers",
                          cls=TypeCheckError)
        if isinstance(layout, Fragment) and buf.scope != "fragment":
            layout = layout.as_layout()  # a shared tile addressed by (thread, slot)
        if not isinstance(layout, (Layout, Fragment)):
            raise p.error(node, f"T.annotate_layout: the layout of '{buf.name}' must be a "
                                f"tiledsl.layout.Layout or Fragment, got {type(layout).__name__}",
                          cls=TypeCheckError)
        if tuple(layout.shape) != buf.static_shape:
            raise p.error(node, f"T.annotate_layout: layout over {tuple(layout.shape)} does not fit "
                                f"'{buf.name}' of shape {buf.static_shape}", cls=TypeCheckError)
        if isinstance(layout, Layout) and not layout.is_injective():
            raise p.error(node, f"T.annotate_layout: the layout of '{buf.name}' maps two elements "
                                f"to one place", cls=TypeCheckError)
        prev = p.layouts.get(buf.name)
        if prev is not None and prev[0] != layout:
            raise p.error(node, f"T.annotate_layout: '{buf.name}' was given another layout on line "
                                f"{prev[1].line}", cls=TypeCheckError)
        p.layouts[buf.name] = (layout, p.span(node))
    return None


TILE_HANDLERS = {
    "annotate_layout": _annotate_layout,
    "alloc_shared": _alloc("shared"), "alloc_fragment": _alloc("fragment"),
    "alloc_local": _alloc("local"), "alloc_var": _alloc_var,
    "copy": _copy, "gemm": _gemm, "fill": _fill, "clear": _clear,
    **{f"reduce_{k}": _reduce(k) for k in ("max", "min", "sum", "abssum", "absmax")},
    **{f"atomic_{op}": _atomic(op) for op in ("add", "max", "min")},
    "cumsum": _cumsum, "use_swizzle": _use_swizzle,
}

from .printing import print_handler  # noqa: E402 - printing builds on this module's neighbours

TILE_HANDLERS["print"] = print_handler

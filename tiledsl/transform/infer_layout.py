"""infer_layout: afterwards every shared, fragment and local buffer carries a layout.

Decided in order of authority:

1. the user's `T.annotate_layout` (already on the buffer when the frontend made it);
2. what the GEMM implementation chosen for each `T.gemm` needs of its operands (the CPU
   micro-kernel's K-major B tile; on a GPU the mma accumulator fragment). An implementation
   whose needs are *soft* (`hard_layouts = False`, the CPU rows) only imposes a layout on a
   buffer nobody has fixed yet: its predicate refuses operands whose layout it cannot read,
   so the registry falls back to one that can;
3. propagation between fragments that are used element by element together: the two sides
   of a whole-buffer `T.copy`, and the fragments a `T.Parallel` nest indexes by exactly the
   same loop variables (`D[i, j] = C[i, j] * 2` puts D where C is, thread by thread);
4. the identity for the rest.

Two hard decisions that disagree (an annotation against a GEMM's fragment, or two
`Fragment`s meeting through a copy or a parallel loop, which would need data to move between
threads) are an error naming both lines. Plain `Layout`s on fragments are storage orders:
two of them may meet, the loop reads each through its own.
On the CPU a block runs on one core, so a `Fragment` (thread, slot) distribution means nothing
there: fragment tiles are stored row-major whatever was decided.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

from .. import ir
from ..errors import LoweringError
from ..ir import Buffer, Gemm
from ..ir.stmt import Span
from ..layout import Fragment, Layout
from ..layout.fragment import REP
from ..target import Target

__all__ = ["infer_layout", "strided_fragment", "rows_fragment", "replicated_fragment"]


@dataclass(frozen=True)
class _Decision:
    layout: object          # Layout or Fragment
    span: Optional[Span]    # the line that decided it
    why: str                # what that line is, for messages
    hard: bool              # may not be overridden


def infer_layout(func: ir.PrimFunc, target: Target) -> ir.PrimFunc:
    """Give every on-chip buffer a layout; see the module docstring for the order."""
    from ..codegen.gemm import resolve

    decided: Dict[str, _Decision] = {}
    on_chip: Dict[str, Buffer] = {}
    gemms: List[Gemm] = []

    def visit(node):
        if isinstance(node, ir.Kernel):
            spans = dict(node.layout_spans)
            for b in node.allocs:
                on_chip[b.name] = b
                if b.layout is not None:
                    decided[b.name] = _Decision(b.layout, spans.get(b.name, node.span),
                                                "T.annotate_layout", True)
        elif isinstance(node, Gemm):
            gemms.append(node)
    ir.walk(func.body, visit)

    threads = _block_threads(func)
    for g in gemms:
        g = _with_layouts(g, decided)
        impl = resolve(g, target)
        hard = bool(getattr(impl, "hard_layouts", False))
        extra = {"threads": threads} if getattr(impl, "per_block", False) else {}
        wanted = getattr(impl, "layouts", lambda g, t: {})(g, target, **extra)
        for name, layout in wanted.items():
            _decide(decided, name, _Decision(layout, g.span, "T.gemm", hard))

    links, partial = _fragment_links(func.body)
    if target.kind == "cuda":
        # A fragment a T.Parallel nest indexes by only some of its variables (a reduction's row
        # maxima m[i] in an (i, j) loop, conv2d's row offsets top[i]: broadcast along the
        # others), or written by a reduction, is held whole by every thread.
        # So is one used outside every T.Parallel loop (a scalar step, T.print of the tile).
        reduced = set()
        ir.walk(func.body, lambda n: reduced.add(n.dst.name) if isinstance(n, ir.Reduce) else None)
        for name in sorted(partial | reduced | _used_outside_parallel(func.body)):
            if name in on_chip and on_chip[name].scope == "fragment" and name not in decided:
                decided[name] = _Decision(replicated_fragment(on_chip[name].static_shape, threads),
                                          None, "a reduction result or row-wise operand", False)
        # A fragment a T.Parallel loop indexes by something else in some dimension (top-k's
        # vals[i, t] with a serial t) is owned by rows: each thread holds whole lines along
        # those dimensions, so whichever element the loop picks is in its own registers.
        for name, owned in sorted(_row_owned(func.body).items()):
            if name in on_chip and on_chip[name].scope == "fragment" and name not in decided:
                decided[name] = _Decision(rows_fragment(on_chip[name].static_shape, owned, threads),
                                          None, "a T.Parallel loop indexing it by a non-loop value", False)
    _propagate(decided, links)

    for name, b in on_chip.items():
        d = decided.get(name)
        if target.kind == "cuda" and b.scope == "fragment":
            if d is None:
                decided[name] = _Decision(strided_fragment(b.static_shape, threads), None, "default", False)
        elif d is None or isinstance(d.layout, Fragment):
            decided[name] = _Decision(Layout.identity(b.static_shape), None, "default", False)
    return _with_layouts(func, decided)


def strided_fragment(shape: tuple, threads: int) -> Fragment:
    """Element `e` (row-major) held by thread `e % T`, slot `e // T`, where `T` is the largest
    divisor of the size not above `threads` (so the fragment is a bijection: an inverse exists)."""
    size = 1
    for n in shape:
        size *= n
    t = max(d for d in range(1, min(threads, size) + 1) if size % d == 0)
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]

    def flat(*idx):
        e = idx[0] * strides[0]
        for x, st in zip(idx[1:], strides[1:]):
            e = e + x * st
        return e
    return Fragment(shape, lambda *idx: flat(*idx) % t, lambda *idx: flat(*idx) // t)


def rows_fragment(shape: tuple, owned: tuple, threads: int) -> Fragment:
    """The `owned` dimensions spread like `strided_fragment` over them (so a T.Parallel loop over
    just those dimensions is split the same way); the other dimensions whole in each thread."""
    own = [shape[d] for d in owned]
    rest = [d for d in range(len(shape)) if d not in owned]
    lines = 1
    for n in own:
        lines *= n
    t = max(d for d in range(1, min(threads, lines) + 1) if lines % d == 0)

    inner = 1
    for d in rest:
        inner *= shape[d]

    def flat(idx, dims):
        e = idx[dims[0]] if dims else 0
        for d in dims[1:]:
            e = e * shape[d] + idx[d]
        return e

    def slot(*idx):
        return flat(idx, owned) // t * inner + flat(idx, rest)
    return Fragment(shape, lambda *idx: flat(idx, owned) % t, slot)


def replicated_fragment(shape: tuple, threads: int) -> Fragment:
    """Every thread holds every element (slot = row-major index)."""
    return Fragment(shape, lambda *idx: REP, lambda *idx: list(idx), replicate=threads)


def _block_threads(func: ir.PrimFunc) -> int:
    found = []
    ir.walk(func.body, lambda n: found.append(n.threads) if isinstance(n, ir.Kernel) else None)
    return found[0] if found else 128


def _line(span: Optional[Span]) -> str:
    return str(span.line) if span is not None else "?"


def _decide(decided: Dict[str, _Decision], name: str, new: _Decision) -> None:
    prev = decided.get(name)
    if prev is None:
        decided[name] = new
    elif prev.layout != new.layout:
        raise LoweringError(
            f"'{name}' needs two different layouts: line {_line(prev.span)} ({prev.why}) gives "
            f"{prev.layout!r}, line {_line(new.span)} ({new.why}) needs {new.layout!r}", new.span,
            hint="drop one of the two, or copy between two buffers that each keep their layout")


def _propagate(decided: Dict[str, _Decision], links: List[Tuple[str, str, Optional[Span], str]]) -> None:
    """Spread decisions along the links until nothing changes; meeting hard decisions must agree."""
    changed = True
    while changed:
        changed = False
        for a, b, span, what in links:
            for src, dst in ((a, b), (b, a)):
                s, d = decided.get(src), decided.get(dst)
                if s is None:
                    continue
                if d is None:
                    decided[dst] = _Decision(s.layout, span, f"{what} with '{src}', whose layout "
                                             f"line {_line(s.span)} decided", s.hard)
                    changed = True
                elif d.layout != s.layout and s.hard and d.hard and \
                        isinstance(s.layout, Fragment) and isinstance(d.layout, Fragment):
                    raise LoweringError(
                        f"{what} uses '{src}' and '{dst}' element by element, but their layouts "
                        f"disagree: line {_line(s.span)} ({s.why}) decided '{src}', line "
                        f"{_line(d.span)} ({d.why}) decided '{dst}'", span,
                        hint="give both the same layout, or move the data through a shared buffer")


def _fragment_links(body: ir.Stmt) -> Tuple[List[Tuple[str, str, Optional[Span], str]], Set[str]]:
    """(buffer, buffer, span, what) for each pair of fragments used element by element
    together; and the fragments a parallel loop indexes by fewer than all of its variables."""
    links = []
    partial: Set[str] = set()

    def visit(node):
        if isinstance(node, ir.Copy):
            s, d = node.src, node.dst
            if _whole_fragment(s) and _whole_fragment(d) and \
                    s.buffer.static_shape == d.buffer.static_shape:
                links.append((s.buffer.name, d.buffer.name, node.span, "T.copy"))
        elif isinstance(node, ir.For) and node.kind == "parallel":
            loop_vars = set()
            f = node
            while isinstance(f, ir.For) and f.kind == "parallel":
                loop_vars.add(f.var)
                f = f.body
            groups: Dict[tuple, List[Buffer]] = {}

            def access(n):
                if isinstance(n, (ir.Load, ir.Store)) and n.buffer.scope == "fragment" and \
                        all(isinstance(i, ir.Var) and i in loop_vars for i in n.indices):
                    groups.setdefault(tuple(n.indices), []).append(n.buffer)
            ir.walk(node.body, access)
            for bufs in groups.values():
                names = list(dict.fromkeys(b.name for b in bufs))
                links.extend((x, y, node.span, "the T.Parallel loop")
                             for x, y in zip(names, names[1:]))
            # a tile indexed by fewer than the nest's variables is broadcast along the others
            partial.update(b.name for k, bufs in groups.items() if len(set(k)) < len(loop_vars) for b in bufs)
    ir.walk(body, visit)
    return links, partial


def _used_outside_parallel(body: ir.Stmt) -> Set[str]:
    """Fragments loaded or stored by a statement outside every T.Parallel loop."""
    inside: Set[int] = set()
    everywhere = []

    def visit(n):
        if isinstance(n, ir.For) and n.kind == "parallel":
            ir.walk(n.body, lambda m: inside.add(id(m)))
        elif isinstance(n, (ir.Load, ir.Store)) and n.buffer.scope == "fragment":
            everywhere.append(n)
    ir.walk(body, visit)
    return {n.buffer.name for n in everywhere if id(n) not in inside}


def _row_owned(body: ir.Stmt) -> Dict[str, tuple]:
    """Fragments some T.Parallel nest indexes by more than its loop variables in some
    dimension -> the dimensions never indexed that way (empty: none, and left out)."""
    free: Dict[str, Set[int]] = {}
    ndim: Dict[str, int] = {}
    inner: Set[int] = set()  # the inner loops of a nest are not nests of their own

    def visit(node):
        if not (isinstance(node, ir.For) and node.kind == "parallel") or id(node) in inner:
            return
        loop_vars = set()
        f = node
        while isinstance(f, ir.For) and f.kind == "parallel":
            loop_vars.add(f.var)
            if f is not node:
                inner.add(id(f))
            f = f.body

        def access(n):
            if isinstance(n, (ir.Load, ir.Store)) and n.buffer.scope == "fragment":
                ndim[n.buffer.name] = len(n.indices)
                dims = {d for d, e in enumerate(n.indices) if not ir.free_vars(e) <= loop_vars}
                if dims:
                    free.setdefault(n.buffer.name, set()).update(dims)
        ir.walk(f, access)
    ir.walk(body, visit)
    out = {}
    for name, dims in free.items():
        owned = tuple(d for d in range(ndim[name]) if d not in dims)
        if owned:
            out[name] = owned
    return out


def _whole_fragment(r: ir.Region) -> bool:
    b = r.buffer
    return b.scope == "fragment" and all(
        isinstance(s, ir.Const) and s.value == 0 for s in r.starts) and tuple(
        e.value if isinstance(e, ir.Const) else None for e in r.extents) == b.static_shape


def _with_layouts(node, decided: Dict[str, _Decision]):
    """`node` with each on-chip buffer carrying the layout decided for it so far."""
    def fn(b: Buffer) -> Buffer:
        d = decided.get(b.name)
        return b.with_layout(d.layout) if d is not None and b.scope != "global" and b.layout != d.layout else b
    return ir.replace_buffers(node, fn)

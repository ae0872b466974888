"""SVG pictures of layouts and fragments: one cell per element of the logical tile.

A `Fragment` is coloured by thread and each cell reads `T<thread>` over `r<slot>`; a
`Layout` is coloured by the 16-byte chunk of the 128-byte bank line its element lands in
(or by bank) and each cell reads its physical offset. The SVG is written by hand: no
plotting dependency.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np

from .fragment import Fragment
from .layout import Layout, LayoutError

__all__ = ["plot"]

_GOLDEN = 0.618033988749895  # hue step that keeps consecutive ids far apart on the wheel


def _colour(k: int, lightness: int = 78) -> str:
    return f"hsl({(k * _GOLDEN % 1.0) * 360:.1f}, 70%, {lightness}%)"


def _grid_shape(shape: tuple) -> tuple:
    # Leading dimensions fold into rows so that any tile draws as a 2-D grid.
    if len(shape) == 1:
        return 1, shape[0]
    return math.prod(shape[:-1]), shape[-1]


def _cells(obj: Union[Layout, Fragment], elem_bits: int, color_by: str) -> tuple:
    """(colour key, first text line, second text line) arrays over the 2-D grid."""
    rows, cols = _grid_shape(obj.shape)
    if isinstance(obj, Fragment):
        threads = obj.thread_table().reshape(rows, cols, obj.replicate)
        slots = obj.index_table().reshape(rows, cols)
        keys = threads[:, :, 0]
        first = np.vectorize(lambda t: f"T{t}")(keys)
        if obj.replicate > 1:
            first = np.vectorize(lambda s: s + f"x{obj.replicate}")(first)
        return keys, first, np.vectorize(lambda s: f"r{s}")(slots)
    if not isinstance(obj, Layout):
        raise LayoutError(f"plot draws a Layout or a Fragment, not {type(obj).__name__}")
    offsets = obj.offset_table().reshape(rows, cols)
    byte = offsets * (elem_bits // 8 if elem_bits >= 8 else 1)
    if color_by == "bank":
        keys = byte // 4 % 32
    elif color_by == "chunk":
        keys = byte // 16 % 8
    else:
        raise LayoutError(f"color_by must be 'chunk' or 'bank', not {color_by!r}")
    return keys, np.vectorize(str)(offsets), None


def plot(obj: Union[Layout, Fragment], path: Optional[str] = None, *, elem_bits: int = 16,
         color_by: str = "chunk", cell: int = 30, title: Optional[str] = None) -> str:
    """Draw `obj` as an SVG grid and return the SVG text (also written to `path` if given).

    Every element is one `<rect class="cell">` with `data-row` / `data-col` attributes.
    For layouts, `elem_bits` sizes elements to find their bank; `color_by` is `"chunk"`
    (which 16-byte chunk of a 128-byte line: 8 colours) or `"bank"` (32 colours).
    """
    # Imported here: xml.sax pulls in urllib and ssl (~10 ms), and every kernel compile
    # imports tiledsl.layout, while only a picture needs escaping.
    from xml.sax.saxutils import escape
    keys, first, second = _cells(obj, elem_bits, color_by)
    rows, cols = keys.shape
    margin_left, margin_top = 36, 52
    width, height = margin_left + cols * cell + 8, margin_top + rows * cell + 8
    if title is None:
        key = "bank" if color_by == "bank" else "16-byte chunk of the bank line"
        what = ("colour = thread, text = thread / register slot" if isinstance(obj, Fragment)
                else f"colour = {key}, text = physical offset ({elem_bits}-bit elements)")
        title = f"{type(obj).__name__} {obj.shape}: {what}"
    width = max(width, 12 + int(len(title) * 7.9))  # 13px monospace: ~7.8px per character
    font = max(6, cell // 3)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="monospace">',
           f'<title>{escape(repr(obj))}</title>',
           f'<text x="4" y="16" font-size="13">{escape(title)}</text>']
    for c in range(cols):
        x = margin_left + c * cell + cell / 2
        out.append(f'<text x="{x:.1f}" y="{margin_top - 6}" font-size="{font}" '
                   f'text-anchor="middle" fill="#555">{c}</text>')
    for r in range(rows):
        y = margin_top + r * cell + cell / 2 + font / 3
        out.append(f'<text x="{margin_left - 4}" y="{y:.1f}" font-size="{font}" '
                   f'text-anchor="end" fill="#555">{r}</text>')
    for r in range(rows):
        for c in range(cols):
            x, y = margin_left + c * cell, margin_top + r * cell
            out.append(f'<rect class="cell" data-row="{r}" data-col="{c}" x="{x}" y="{y}" '
                       f'width="{cell}" height="{cell}" fill="{_colour(int(keys[r, c]))}" '
                       f'stroke="#fff" stroke-width="1"/>')
            cx = x + cell / 2
            if second is None:
                out.append(f'<text x="{cx:.1f}" y="{y + cell / 2 + font / 3:.1f}" '
                           f'font-size="{font}" text-anchor="middle">{escape(first[r, c])}</text>')
            else:
                out.append(f'<text x="{cx:.1f}" y="{y + cell / 2 - 1:.1f}" font-size="{font}" '
                           f'text-anchor="middle">{escape(first[r, c])}</text>')
                out.append(f'<text x="{cx:.1f}" y="{y + cell / 2 + font:.1f}" '
                           f'font-size="{font}" text-anchor="middle" fill="#333">'
                           f'{escape(second[r, c])}</text>')
    out.append("</svg>")
    svg = "\n".join(out) + "\n"
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(svg)
    return svg

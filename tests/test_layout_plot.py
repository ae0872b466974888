"""plot writes a valid SVG with one cell per element."""
import xml.etree.ElementTree as ET

import pytest

from tiledsl.layout import (Layout, LayoutError, make_mma_block_fragment, mma_m16n8k16_c, plot,
                            swizzle_128b)

SVG = "{http://www.w3.org/2000/svg}"


def _cells(root):
    return [r for r in root.iter(SVG + "rect") if r.get("class") == "cell"]


def test_fragment_plot(tmp_path):
    path = tmp_path / "c.svg"
    text = plot(mma_m16n8k16_c(), str(path))
    root = ET.parse(path).getroot()
    assert root.tag == SVG + "svg" and path.read_text() == text
    cells = _cells(root)
    assert len(cells) == 16 * 8
    texts = [t.text for t in root.iter(SVG + "text")]
    assert "T0" in texts and "r3" in texts and "T31" in texts
    # colour by thread: the two cells of one register pair share a colour
    fill = {(int(c.get("data-row")), int(c.get("data-col"))): c.get("fill") for c in cells}
    assert fill[(0, 0)] == fill[(0, 1)] == fill[(8, 0)] and fill[(0, 0)] != fill[(0, 2)]


def test_layout_plot_by_chunk_and_bank(tmp_path):
    sw = swizzle_128b((8, 64))
    root = ET.fromstring(plot(sw, str(tmp_path / "s.svg"), elem_bits=16))
    cells = _cells(root)
    assert len(cells) == 8 * 64
    # every row of a 128B swizzle uses all 8 chunk colours; column 0 too (conflict-free)
    fills = {(int(c.get("data-row")), int(c.get("data-col"))): c.get("fill") for c in cells}
    assert len({fills[(r, 0)] for r in range(8)}) == 8
    by_bank = ET.fromstring(plot(sw, elem_bits=16, color_by="bank"))
    assert len({c.get("fill") for c in _cells(by_bank)}) == 32
    with pytest.raises(LayoutError):
        plot(sw, color_by="thread")


def test_plot_other_shapes():
    assert len(_cells(ET.fromstring(plot(Layout.row_major((12,)))))) == 12
    assert len(_cells(ET.fromstring(plot(Layout.identity((2, 3, 4)))))) == 24
    big = make_mma_block_fragment(32, 16, 2, "FullRow")
    assert len(_cells(ET.fromstring(plot(big, cell=12)))) == 32 * 16

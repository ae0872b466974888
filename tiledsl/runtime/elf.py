"""Just enough ELF to read a shared library's dynamic symbols and the bytes of a data symbol.

`tiledsl.load` finds a library's kernels by their `__tvm_ffi__metadata_<name>` symbols (tvm-ffi
has no way to list a module's functions), and the tests read `__tvm_ffi__library_bin` back from
an exported file; neither should need binutils on the machine. 64-bit little-endian ELF only
(x86-64, aarch64: the platforms tiledsl supports).
"""
from __future__ import annotations

import struct
from typing import Dict, Tuple

__all__ = ["dynamic_symbols", "symbol_bytes"]


def _sections(data: bytes) -> list:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    # (type, addr, offset, size, link, entsize) of each section header
    return [struct.unpack_from("<4xI8xQQQI12xQ", data, shoff + i * shentsize) for i in range(shnum)]


def _symbols(data: bytes) -> Dict[str, Tuple[int, int]]:
    secs = _sections(data)
    out: Dict[str, Tuple[int, int]] = {}
    for typ, _, off, size, link, entsize in secs:
        if typ != 11:  # SHT_DYNSYM
            continue
        stroff = secs[link][2]
        for i in range(1, size // entsize):
            name, info, _, shndx, value, sz = struct.unpack_from("<IBBHQQ", data, off + i * entsize)
            if shndx == 0:  # undefined: imported, not exported
                continue
            end = data.index(b"\0", stroff + name)
            out[data[stroff + name:end].decode()] = (value, sz)
    return out


def dynamic_symbols(path: str) -> Dict[str, Tuple[int, int]]:
    """Exported symbol name -> (address, size)."""
    with open(path, "rb") as f:
        return _symbols(f.read())


def symbol_bytes(path: str, name: str) -> bytes:
    """The initialised bytes of exported data symbol `name` (found through the section that
    holds its address)."""
    with open(path, "rb") as f:
        data = f.read()
    addr, size = _symbols(data)[name]
    for typ, saddr, off, ssize, _, _ in _sections(data):
        if typ != 8 and saddr <= addr < saddr + ssize:  # not SHT_NOBITS (.bss)
            return data[off + addr - saddr: off + addr - saddr + size]
    raise ValueError(f"{name} has no initialised bytes in {path}")

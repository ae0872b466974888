"""Text-level LLVM IR builders: one function (SSA names, basic blocks, entry allocas) and one
module (string constants, declarations, loop metadata, function definitions).

The IR is written as text rather than through `llvmlite.ir`: it is what `get_kernel_source()`
shows, it is hashed as the cache key, and `llvm.parse_assembly` reads it in about a
millisecond. Everything here knows LLVM's syntax and nothing about tiledsl's IR.
"""
from __future__ import annotations

import math
import re
import struct
from typing import Dict, List, Optional, Tuple

__all__ = ["Function", "Module", "Val", "float_literal", "c_string", "string_globals"]


class Val:
    """An LLVM value: its textual reference (`%t3`, `42`, `@g`) and its type (`i64`, `ptr`)."""

    __slots__ = ("ref", "ty")

    def __init__(self, ref: str, ty: str):
        self.ref, self.ty = ref, ty

    def __str__(self) -> str:
        return f"{self.ty} {self.ref}"

    def __repr__(self) -> str:
        return f"Val({self.ref!r}, {self.ty!r})"


def float_literal(value: float, ty: str) -> str:
    """LLVM spells a float constant as the hex bits of the double holding exactly its value."""
    v = float(value)
    if ty == "float" and math.isfinite(v):
        v = struct.unpack("<f", struct.pack("<f", v))[0]  # round to float first, as C does
    elif ty == "float" and math.isnan(v):
        v = struct.unpack("<f", struct.pack("<I", 0x7FC00000))[0]
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", v))[0]


def c_string(text: str) -> Tuple[str, int]:
    """(LLVM `c"..."` literal with the trailing NUL, byte length) for a C string."""
    data = text.encode() + b"\0"
    body = "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else "\\%02X" % b for b in data)
    return f'c"{body}"', len(data)


def string_globals(strings: Dict[str, str]) -> str:
    """`@name = private constant [n x i8] c"..."` for each (name, C string)."""
    out = []
    for name, text in strings.items():
        lit, n = c_string(text)
        out.append(f"@{name} = private unnamed_addr constant [{n} x i8] {lit}")
    return "\n".join(out) + "\n"


class Function:
    """One function being written: instructions go to the current block; `alloca`s go to the
    entry block, where mem2reg / SROA find and promote them."""

    def __init__(self, module: "Module", name: str, ret: str, params: List[Tuple[str, str, str]],
                 linkage: str = "internal", attrs: str = ""):
        self.module = module
        self.name, self.ret, self.linkage, self.attrs = name, ret, linkage, attrs
        self.params = params  # (type, name, parameter attributes)
        self.allocas: List[str] = []
        self.blocks: List[Tuple[str, List[str]]] = []
        self.cur: Optional[List[str]] = None
        self.cur_label = ""
        self._n = 0
        self._labels: Dict[str, int] = {}
        self.start_block("entry")

    # ---- names and blocks ----

    def tmp(self, base: str = "t") -> str:
        self._n += 1
        return f"%{base}{self._n}"

    def new_label(self, base: str) -> str:
        n = self._labels.get(base, 0)
        self._labels[base] = n + 1
        return f"{base}{n}" if n or base == "entry" else base

    def start_block(self, label: str) -> None:
        self.cur = []
        self.cur_label = label
        self.blocks.append((label, self.cur))

    @property
    def terminated(self) -> bool:
        if not self.cur:
            return False
        head = self.cur[-1].split(None, 1)[0]
        return head in ("br", "ret", "unreachable", "switch")

    # ---- instructions ----

    def emit(self, text: str) -> None:
        assert self.cur is not None and not self.terminated, f"emitting after a terminator: {text}"
        self.cur.append(text)

    def op(self, ty: str, text: str, base: str = "t") -> Val:
        """`%tN = <text>`, a value of type `ty`."""
        name = self.tmp(base)
        self.emit(f"{name} = {text}")
        return Val(name, ty)

    def alloca(self, ty: str, count: int = 1, align: int = 0, base: str = "v") -> Val:
        name = self.tmp(base)
        n = f", i64 {count}" if count != 1 else ""
        a = f", align {align}" if align else ""
        self.allocas.append(f"{name} = alloca {ty}{n}{a}")
        return Val(name, "ptr")

    def br(self, label: str, meta: str = "") -> None:
        self.emit(f"br label %{label}" + (f", !llvm.loop {meta}" if meta else ""))

    def cbr(self, cond: Val, then: str, else_: str) -> None:
        self.emit(f"br i1 {cond.ref}, label %{then}, label %{else_}")

    def call(self, ret: str, fn: str, args: List[Val], fnty: str = "") -> Optional[Val]:
        """`call ret @fn(args)`; `fnty` is the full function type for variadic callees."""
        text = f"call {fnty or ret} {fn}({', '.join(str(a) for a in args)})"
        if ret == "void":
            self.emit(text)
            return None
        return self.op(ret, text)

    def gep(self, elem: str, base: Val, index: Val, inbounds: bool = True) -> Val:
        kw = "getelementptr inbounds" if inbounds else "getelementptr"
        return self.op("ptr", f"{kw} {elem}, ptr {base.ref}, {index}", base="p")

    def load(self, ty: str, ptr: Val, align: int = 0) -> Val:
        a = f", align {align}" if align else ""
        return self.op(ty, f"load {ty}, ptr {ptr.ref}{a}")

    def store(self, value: Val, ptr: Val, align: int = 0) -> None:
        a = f", align {align}" if align else ""
        self.emit(f"store {value}, ptr {ptr.ref}{a}")

    # ---- text ----

    def render(self) -> str:
        params = ", ".join(f"{t}{' ' + a if a else ''} %{n}" for t, n, a in self.params)
        head = f"define {self.linkage + ' ' if self.linkage else ''}{self.ret} @{self.name}({params})"
        lines = [head + (f" {self.attrs}" if self.attrs else "") + " {"]
        for i, (label, body) in enumerate(self.blocks):
            lines.append(f"{label}:")
            if i == 0:
                lines.extend("  " + a for a in self.allocas)
            lines.extend("  " + x for x in body)
        lines.append("}")
        return "\n".join(lines)


class Module:
    """Collects the pieces of one module; `render()` writes them in a stable order."""

    def __init__(self, header: str = ""):
        self.header = header
        self.strings: Dict[str, str] = {}
        self.globals: List[str] = []
        self.declares: Dict[str, str] = {}
        self.definitions: Dict[str, str] = {}  # name -> text (extern definitions, once each)
        self.functions: List[Function] = []
        self.metadata: List[str] = []
        self._meta_n = 0

    def string(self, text: str) -> Val:
        """A private NUL-terminated constant (deduplicated) as a `ptr`."""
        if text not in self.strings:
            lit, n = c_string(text)
            name = f"@.str{len(self.strings)}"
            self.strings[text] = name
            self.globals.append(f"{name} = private unnamed_addr constant [{n} x i8] {lit}, align 1")
        return Val(self.strings[text], "ptr")

    def declare(self, name: str, text: str) -> None:
        self.declares.setdefault(name, text)

    def define(self, name: str, text: str) -> None:
        """An externally written definition; its `declare` lines join the module's (once each)."""
        if name in self.definitions:
            return
        body = []
        for line in text.splitlines():
            m = re.match(r"declare .*?@([\w.$]+)\(", line)
            if m:
                self.declare(m.group(1), line)
            else:
                body.append(line)
        self.definitions[name] = "\n".join(body).strip()

    def function(self, *args, **kwargs) -> Function:
        f = Function(self, *args, **kwargs)
        self.functions.append(f)
        return f

    def loop_md(self, *props: str) -> str:
        """A distinct `!llvm.loop` node carrying `props` (e.g. `!{!"llvm.loop.vectorize.enable", i1 true}`)."""
        self._meta_n += 1
        me = f"!{self._meta_n}"
        refs = []
        for p in props:
            self._meta_n += 1
            self.metadata.append(f"!{self._meta_n} = {p}")
            refs.append(f"!{self._meta_n}")
        self.metadata.append(f"{me} = distinct !{{{', '.join([me] + refs)}}}")
        return me

    def render(self) -> str:
        parts = [self.header.rstrip()] if self.header else []
        parts.append("\n".join(self.globals))
        parts.append("\n".join(self.declares[k] for k in sorted(self.declares)))
        parts.extend(self.definitions.values())
        parts.extend(f.render() for f in self.functions)
        parts.append("\n".join(self.metadata))
        return "\n\n".join(p for p in parts if p) + "\n"

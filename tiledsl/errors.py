"""Errors for kernel authors: each names the user's file:line and shows the line with a caret."""
from __future__ import annotations

import linecache
from typing import Optional

__all__ = ["TileDSLError", "FrontendError", "TypeCheckError", "LoweringError", "CompileError",
           "VerifyError"]


class TileDSLError(Exception):
    """A mistake in a kernel, reported at the user's source line.

    `span` is an `ir.Span` (file, line, column) or None when no source position is known.
    """

    def __init__(self, message: str, span=None, hint: Optional[str] = None):
        self.message = message
        self.span = span
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        out = [self.message]
        span = self.span
        if span is not None:
            where = f'  File "{span.file}", line {span.line}'
            if getattr(span, "func", ""):
                where += f", in {span.func}"
            out.append(where)
            text = linecache.getline(span.file, span.line).rstrip("\n")
            if text:
                stripped = text.lstrip()
                indent = len(text) - len(stripped)
                out.append("    " + stripped)
                start = max(span.col - indent, 0)
                end_col = span.end_col if span.end_col and span.end_col > span.col else span.col + 1
                out.append("    " + " " * start + "^" * max(1, end_col - span.col))
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


class FrontendError(TileDSLError):
    """The Python source uses a construct or name the language does not have."""


class TypeCheckError(TileDSLError):
    """Operands of a tile op or expression do not agree in shape, rank or dtype."""


class VerifyError(TileDSLError):
    """The IR breaks an invariant (an undefined variable, a buffer used out of its scope)."""


class LoweringError(TileDSLError):
    """No lowering exists for this operation on this target."""


class CompileError(TileDSLError):
    """The C++ / CUDA compiler rejected generated code: always a bug in tiledsl."""

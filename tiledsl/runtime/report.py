"""Compile-time reporting on the standard `logging` logger "tiledsl".

`TILEDSL_LOG=info` (or debug / warning) attaches a stderr handler at that level when tiledsl is
imported; applications that configure logging themselves just set the "tiledsl" logger's level.
One INFO line per kernel says what was compiled (or loaded from the disk cache), from which
specialisation, how long each stage took, and whether it re-specialises a kernel this process
had already compiled for other arguments::

    [tiledsl] compiled matmul(M=128, N=128, K=128, block_M=64, ...) for cpu/avx2 with cxx in 0.81 s
      (frontend 3.1 ms, passes 6.0 ms, codegen 0.7 ms, c++ 0.80 s) [cache 2b64812452d1];
      recompiled for new arguments: M 64 -> 128, N 64 -> 128, K 64 -> 128
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

__all__ = ["CompileReport", "configure_logging", "describe_args"]

log = logging.getLogger("tiledsl")
_HANDLER: List[logging.Handler] = []


def configure_logging(level: Optional[str] = None) -> None:
    """Send the "tiledsl" logger to stderr at `level` (default: `$TILEDSL_LOG`; unset: no change)."""
    level = level if level is not None else os.environ.get("TILEDSL_LOG", "")
    if not level:
        return
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        warnings.warn(f"TILEDSL_LOG={level!r} is not a logging level (debug, info, warning, error); ignored")
        return
    if not _HANDLER:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[tiledsl] %(message)s"))
        log.addHandler(handler)
        _HANDLER.append(handler)
    log.setLevel(value)


def describe_args(arguments: Mapping[str, Any], limit: int = 40) -> str:
    """`M=64, N=64, dtype='float32'`, each value's repr cut at `limit` characters."""
    parts = []
    for k, v in arguments.items():
        text = repr(v)
        parts.append(f"{k}={text if len(text) <= limit else text[:limit - 3] + '...'}")
    return ", ".join(parts)


def _fmt_seconds(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


class CompileReport:
    """Stage timings of one kernel's compilation, logged once when it is done.

    `arguments` are the factory's bound arguments (None for `tiledsl.compile` of a PrimFunc);
    `previous` the arguments of kernels the same factory compiled before in this process."""

    def __init__(self, kernel: str, arguments: Optional[Mapping[str, Any]] = None,
                 frontend_s: Optional[float] = None, previous: Sequence[Mapping[str, Any]] = ()):
        self.kernel = kernel
        self.arguments = dict(arguments) if arguments is not None else None
        self.previous = [dict(p) for p in previous if p is not None]
        self.stages: Dict[str, float] = {}
        if frontend_s is not None:
            self.stages["frontend"] = frontend_s

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t0

    def changed_arguments(self) -> List[str]:
        """`name old -> new` for the arguments that differ from the last earlier specialisation."""
        if not self.previous or self.arguments is None:
            return []
        last = self.previous[-1]
        return [f"{k} {last.get(k)!r} -> {v!r}" for k, v in self.arguments.items() if last.get(k) != v]

    def log(self, how: str, target: Any, key: str) -> None:
        """`how`: "compiled" (built now) or "loaded" (found in the disk cache)."""
        if not log.isEnabledFor(logging.INFO):
            return
        spec = f"({describe_args(self.arguments)})" if self.arguments is not None else " (a PrimFunc)"
        where = getattr(target, "kind", str(target))
        if getattr(target, "isa", ""):
            where += f"/{target.isa}"
        if getattr(target, "backend", ""):  # the CPU backend: cxx (g++) or llvm (llvmlite)
            where += f" with {target.backend}"
        total = sum(self.stages.values())
        stages = ", ".join(f"{k} {_fmt_seconds(v)}" for k, v in self.stages.items())
        verb = "compiled" if how == "compiled" else "loaded from the disk cache"
        msg = f"{verb} {self.kernel}{spec} for {where} in {_fmt_seconds(total)} ({stages}) [cache {key[:12]}]"
        changed = self.changed_arguments()
        if changed:
            again = "recompiled" if how == "compiled" else "re-specialised"
            msg += f"; {again} for new arguments: " + ", ".join(changed)
        log.info(msg)

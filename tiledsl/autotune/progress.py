"""A one-line progress bar on stderr for the autotuner: compile and benchmark counts, best so far.

On a terminal the line is redrawn in place; elsewhere (logs, CI) one line is printed per phase.
The two phases may overlap (the Ray executor measures a config as soon as it is built), so each
keeps its own start time; `where` names the machines doing the work ("3 Ray nodes").
"""
from __future__ import annotations

import sys
import time
from typing import IO, Optional

__all__ = ["Progress"]


class Progress:
    def __init__(self, kernel: str, total: int, enabled: bool = True, stream: Optional[IO[str]] = None):
        self.kernel = kernel
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.counts = {"compile": 0, "bench": 0}
        self.goal = {"compile": 0, "bench": 0}
        self.failed = 0
        self.best: Optional[str] = None
        self.where = ""
        self.t0 = time.perf_counter()
        self.phase_t0 = {"compile": self.t0, "bench": self.t0}

    def start(self, phase: str, n: int) -> None:
        self.goal[phase] = n
        self.counts[phase] = 0
        self.phase_t0[phase] = time.perf_counter()
        self._draw()

    def drop(self, phase: str) -> None:
        """One config fewer to expect in `phase` (it failed before reaching it)."""
        self.goal[phase] = max(self.counts[phase], self.goal[phase] - 1)
        self._draw()

    def tick(self) -> None:
        """Redraw (the clock moves while remote tasks run)."""
        self._draw()

    def step(self, phase: str, failed: bool = False, best: Optional[str] = None) -> None:
        self.counts[phase] += 1
        self.failed += int(failed)
        if best is not None:
            self.best = best
        self._draw()

    def end(self, phase: str) -> None:
        if not self.enabled or self.goal[phase] == 0:
            return
        if not self.tty:
            verb = "compiled" if phase == "compile" else "benchmarked"
            on = f" on {self.where}" if self.where else ""
            self._write(f"autotune {self.kernel}: {verb} {self.counts[phase]} of {self.total} configs{on} "
                        f"in {time.perf_counter() - self.phase_t0[phase]:.1f} s\n")

    def close(self, cached: int) -> None:
        if self.tty:
            self._write("\n")
        elif self.enabled and cached:
            self._write(f"autotune {self.kernel}: {cached} of {self.total} configs answered by stored results\n")

    def _draw(self) -> None:
        if not self.tty:
            return
        bars = []
        for phase in ("compile", "bench"):
            n, goal = self.counts[phase], self.goal[phase]
            filled = int(10 * n / goal) if goal else 10
            bars.append(f"{phase} [{'#' * filled}{'.' * (10 - filled)}] {n}/{goal}")
        tail = f"  best {self.best}" if self.best else ""
        fails = f"  {self.failed} failed" if self.failed else ""
        on = f" on {self.where}" if self.where else ""
        self._write(f"\rautotune {self.kernel}{on}: {'  '.join(bars)}{fails}{tail} "
                    f"({time.perf_counter() - self.t0:.1f} s)\x1b[K")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

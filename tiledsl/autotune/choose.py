"""What one config's tuning came to (`Record`), the rule that picks the winner, and the table.

The rule: the config with the fastest time wins, except that every config within `tie_rtol` of
it (a near-tie, inside the noise of a timing) counts as tied, and of the tied configs the one
listed first in `configs` wins. So two runs whose timings differ only by noise pick the same
config, and the user says which of equally fast configs they prefer by the order they list them.

The time compared is each config's minimum by default: on a CPU shared with other processes,
interference only ever adds time (a preempted OpenMP thread holds up the whole parallel region
for a scheduler time slice), so the minimum is what repeats from run to run while the median
moves with the machine's load. `by="median"` compares medians instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["Record", "choose", "format_table", "OK", "FAILED_STATUSES"]

OK = "ok"
# frontend_error: the factory raised for this config; compile_error: lowering or the C++ compiler
# failed; timeout: compiling or timing took longer than `timeout`; check_failed: results differ
# from ref_prog; run_error: the call itself raised. On a Ray cluster (never stored: they say
# nothing about the config) worker_died: the worker building or measuring it died mid-task;
# cluster_error: Ray could not run the task, or its node cannot build / time for the target.
FAILED_STATUSES = ("frontend_error", "compile_error", "timeout", "check_failed", "run_error",
                   "worker_died", "cluster_error")


@dataclass(frozen=True)
class Record:
    """One config: its place in the list, outcome, timings (ms) and where they came from."""

    index: int
    config: Dict[str, Any]
    status: str
    median: Optional[float] = None
    min: Optional[float] = None
    max: Optional[float] = None
    reason: str = ""
    cached: bool = False  # read from the result store rather than measured in this run
    extra: Dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == OK


def choose(records: Sequence[Record], tie_rtol: float = 0.03, by: str = "min") -> Optional[Record]:
    """The winning record (see the module docstring), or None when no config succeeded."""
    ok = [r for r in records if r.ok and getattr(r, by) is not None]
    if not ok:
        return None
    best = min(getattr(r, by) for r in ok)
    tied = [r for r in ok if getattr(r, by) <= best * (1.0 + tie_rtol)]
    return min(tied, key=lambda r: r.index)


def format_table(records: Sequence[Record], winner: Optional[Record] = None) -> str:
    """A plain-text table of every config, the winner marked with `*`."""
    keys: List[str] = []
    for r in records:
        keys.extend(k for k in r.config if k not in keys)
    head = ["", "#", *keys, "median ms", "min ms", "max ms", "status", "from"]
    rows = [head]
    for r in sorted(records, key=lambda r: r.index):
        mark = "*" if winner is not None and r.index == winner.index else ""
        times = [f"{t:.4g}" if t is not None else "-" for t in (r.median, r.min, r.max)]
        status = r.status if not r.reason else f"{r.status}: {_one_line(r.reason)}"
        rows.append([mark, str(r.index), *(repr(r.config.get(k, "")) for k in keys), *times, status,
                     "store" if r.cached else "run"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 2)]
    lines = []
    for row in rows:
        cells = [c.rjust(w) for c, w in zip(row, widths)]
        lines.append("  ".join(cells + [row[-2].ljust(max(len(x[-2]) for x in rows)), row[-1]]).rstrip())
    return "\n".join(lines)


def _one_line(text: str, limit: int = 100) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 3] + "..."

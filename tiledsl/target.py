"""Targets: what code is generated for, and the host facts that change the binary."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

__all__ = ["Target", "host_cpu"]


@dataclass(frozen=True)
class Target:
    """`kind` is "cpu", "cuda" or "interp"; `arch` the CPU name or sm arch;
    `features` the sorted instruction-set features code may use (part of every cache key)."""

    kind: str
    arch: str = ""
    features: tuple = ()

    def has(self, feature: str) -> bool:
        return feature in self.features

    @staticmethod
    def parse(spec: "str | Target | None") -> "Target":
        """`"cpu"` (the host), `"cpu -isa=avx2"`, `"interp"`, `"cuda"`."""
        if isinstance(spec, Target):
            return spec
        spec = (spec or "cpu").strip()
        kind, _, rest = spec.partition(" ")
        if kind in ("cpu", "auto", "llvm", "c"):
            return host_cpu()
        if kind == "interp":
            return Target("interp")
        raise ValueError(f"unknown target {spec!r}; expected 'cpu' or 'interp'")


@functools.lru_cache(maxsize=None)
def host_cpu() -> Target:
    """The machine we run on, as llvmlite reports it."""
    name, feats = _host_features()
    return Target("cpu", name, feats)


def _host_features() -> tuple:
    try:
        import llvmlite.binding as llvm
        name = llvm.get_host_cpu_name()
        feats = llvm.get_host_cpu_features()
        on = tuple(sorted(k for k, v in feats.items() if v))
        return name, on
    except Exception:  # llvmlite without a host target: fall back to no SIMD claims
        import platform
        return platform.machine(), ()


def cpu_flag_for(target: Target) -> Optional[str]:
    return f"-march={target.arch}" if target.arch else None

"""GEMM implementations, chosen per `T.gemm` call by the registry in `registry.py`."""
from .registry import GemmImpl, register, resolve, rows
from .cpu_loops import CpuLoops, _is_cpu

register("cpu.loops", _is_cpu, CpuLoops())

__all__ = ["GemmImpl", "register", "resolve", "rows"]

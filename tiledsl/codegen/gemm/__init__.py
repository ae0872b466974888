"""GEMM implementations, chosen per `T.gemm` call by the registry in `registry.py`."""
from .registry import GemmImpl, register, resolve, rows
from .cpu_loops import CpuLoops, _is_cpu

from .cpu_simd import CpuSimd
from .llvm_vector import LlvmVector
from .cuda_fma import CudaFma
from .cuda_mma import CudaMma

register("cpu.loops", _is_cpu, CpuLoops())
register("cuda.fma", CudaFma.accepts, CudaFma())
_mma = CudaMma()
register("cuda.mma", _mma.accepts, _mma, priority=1)  # tensor cores where the operands fit
# The SIMD micro-kernels shadow the portable loops wherever they accept the operands; the
# C++ backend's are C++ intrinsics, the LLVM backend's LLVM vector IR (cpu.loops serves both).
for _isa in ("avx512", "avx2", "scalar"):
    _impl = CpuSimd(_isa)
    register(_impl.name, lambda g, t, f=_impl.accepts: t.backend != "llvm" and f(g, t), _impl, priority=1)
    _impl = LlvmVector(_isa)
    register(_impl.name, _impl.accepts, _impl, priority=1)

__all__ = ["GemmImpl", "register", "resolve", "rows"]

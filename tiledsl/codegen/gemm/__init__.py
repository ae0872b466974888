"""GEMM implementations, chosen per `T.gemm` call by the registry in `registry.py`."""
from .registry import GemmImpl, register, resolve, rows
from .cpu_loops import CpuLoops, _is_cpu

from .cpu_simd import CpuSimd
from .cpu_dot import CpuDot
from .dot_bf16 import BF16
from .dot_vnni import VNNI
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
# The dot-product instructions shadow the FMA micro-kernels where the host has them (on both
# backends: each row renders C++ or LLVM IR by the target's backend).
for _family in (BF16, VNNI):
    _impl = CpuDot(_family)
    register(_impl.name, _impl.accepts, _impl, priority=2)

__all__ = ["GemmImpl", "register", "resolve", "rows"]

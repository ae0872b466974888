"""tiledsl: a tile-level kernel language embedded in Python, compiled to TVM-FFI libraries.

    import tiledsl, tiledsl.language as T

    @tiledsl.jit(out_idx=[-1])
    def add(N, block=256):
        @T.prim_func
        def main(A: T.Tensor((N,), "float32"), B: T.Tensor((N,), "float32")):
            with T.Kernel(T.ceildiv(N, block)) as bx:
                for i in T.Parallel(block):
                    B[bx * block + i] = A[bx * block + i] + 1.0
        return main
"""
__version__ = "0.1.0"

from .errors import (CompileError, FrontendError, LoweringError, TileDSLError, TypeCheckError,
                     VerifyError)
from .jit import JITFactory, compile, jit
from .runtime.kernel import JITKernel
from .runtime import cache
from .profiler import BenchResult, bench
from . import autotune  # the package is callable: @tiledsl.autotune(configs=...)
from .autotune import AutotuneResult
from .target import Target
from .runtime.metadata import load

__all__ = ["jit", "compile", "JITKernel", "JITFactory", "Target", "TileDSLError", "FrontendError",
           "TypeCheckError", "VerifyError", "LoweringError", "CompileError", "__version__",
           "cache", "load", "bench", "BenchResult", "autotune", "AutotuneResult"]

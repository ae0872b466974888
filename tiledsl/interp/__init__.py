"""The numpy interpreter of the tile IR: `target="interp"`.

    kernel = tiledsl.compile(func, out_idx=[-1], target="interp")
    c = kernel(a, b)          # same calling convention and argument errors as the CPU target

It runs the PrimFunc the frontend produced (no lowering), so it is an independent reference
for the compiled targets, and it checks at run time what they cannot: on-chip indices
outside their tile, reads of tile elements nothing wrote, races between T.Parallel
iterations and between blocks, int32 overflow, and outputs the kernel leaves partly unwritten.
Each is a `TileDSLError` at the user's source line. `target="interp -strict"` also rejects
global accesses outside a tensor and integer division by zero (which every target otherwise
defines: such a load reads 0, such a store is dropped, and x // 0 == x % 0 == 0 as in numpy). `T.print` prints the
lines the CPU target prints.
"""
from .errors import (ArithmeticFault, InterpError, OutOfBoundsError, RaceError,
                     UninitializedReadError, UnwrittenOutputError)
from .kernel import InterpKernel

__all__ = ["InterpKernel", "InterpError", "OutOfBoundsError", "UninitializedReadError", "RaceError",
           "ArithmeticFault", "UnwrittenOutputError"]

"""The numpy interpreter of the tile IR: `target="interp"`.

    kernel = tiledsl.compile(func, out_idx=[-1], target="interp")
    c = kernel(a, b)          # same calling convention and argument errors as the CPU target

It runs the PrimFunc the frontend produced (no lowering), so it is an independent reference
for the compiled targets, and it checks at run time what they cannot: element accesses
outside a global tensor (`B[i] = A[i]` with i == M; compiled targets read 0 and drop the
store, which hides a missing guard), on-chip indices outside their tile, reads of tile
elements nothing wrote, races between T.Parallel iterations and between blocks, int32
overflow, and outputs the kernel leaves partly unwritten. Each is a `TileDSLError` at the
user's source line. `T.copy` keeps its meaning at ragged edges (reads past a tensor give 0,
writes past it are dropped). `target="interp -strict"` also rejects integer division by zero
(every target defines x // 0 == x % 0 == 0, as numpy); `target="interp -lenient"` gives
global element accesses the compiled targets' meaning instead of an error (to hold their
bounds guards to the interpreter in tests). `T.print` prints the lines the CPU target prints.
"""
from .errors import (ArithmeticFault, InterpError, OutOfBoundsError, RaceError,
                     UninitializedReadError, UnwrittenOutputError)
from .kernel import InterpKernel

__all__ = ["InterpKernel", "InterpError", "OutOfBoundsError", "UninitializedReadError", "RaceError",
           "ArithmeticFault", "UnwrittenOutputError"]

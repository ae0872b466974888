"""Run-time mistakes the interpreter finds, each at the user's source line."""
from __future__ import annotations

from ..errors import TileDSLError

__all__ = ["InterpError", "OutOfBoundsError", "UninitializedReadError", "RaceError",
           "ArithmeticFault", "UnwrittenOutputError"]


class InterpError(TileDSLError):
    """A kernel did something at run time whose result no target defines."""


class OutOfBoundsError(InterpError, IndexError):
    """An element of a global tensor or an on-chip tile was indexed outside its shape (for a
    tensor, not under `interp -lenient`; a `T.copy` region past a tensor is not an error)."""


class UninitializedReadError(InterpError):
    """A shared / fragment / local element was read before anything was written to it."""


class RaceError(InterpError):
    """Two iterations of a T.Parallel loop, or two blocks, touch one element without order."""


class ArithmeticFault(InterpError, ArithmeticError):
    """An int32 result that does not fit (C leaves it undefined), or in strict mode an integer
    division by zero (defined as 0 on every target, as numpy, but seldom meant)."""


class UnwrittenOutputError(InterpError):
    """An output allocated for the caller (out_idx) has elements the kernel never wrote."""

"""Integer division where x86's idiv traps: int32 MIN // -1 killed the process with SIGFPE on
the C++ backend (the LLVM one wrapped). Every target now gives numpy's answer: MIN // -1 wraps
to MIN, MIN % -1 == 0, and x // 0 == x % 0 == 0."""
import numpy as np

from . import Case
from .families import DivSpec, div_kernel

MIN, MAX = -2 ** 31, 2 ** 31 - 1
A = np.array([MIN, MIN, MIN, MAX, -7, 7, 0, -1, MIN + 1], np.int32)
B = np.array([-1, 0, 1, -1, 0, -2, 0, MIN, MIN], np.int32)

CASE = Case("int_division_edges", lambda: div_kernel("int32", 4), lambda rng: (A.copy(), B.copy()),
            DivSpec("int32").reference, (2, 3), exact=True)

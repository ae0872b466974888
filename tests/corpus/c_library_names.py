"""Kernel names that are C library functions the generated code calls (exp, log, floor, sqrt,
fabs, printf, free, memcpy ...).

Regression: the C names kept them, so `double exp = ...` shadowed exp() and the C++ compiler
rejected the kernel ("'exp' cannot be used as a function"); codegen/names.py reserves them."""
import numpy as np

import tiledsl.language as T

from . import Case


@T.prim_func
def c_library_names(exp: T.Tensor((8,), "float64"), floor: T.Tensor((8,), "float64"), log: T.float64,
                    printf: T.Tensor((8,), "float64")):
    with T.Kernel(1) as fabs:
        sqrt = T.alloc_fragment((8,), "float64")
        for free in T.Parallel(8):
            memcpy = exp[free] * log
            sqrt[free] = T.exp(memcpy) + T.log(T.abs(memcpy) + 1.0) + memcpy // 2.0 + T.sqrt(T.abs(memcpy))
        for abort in T.Parallel(8):
            printf[abort] = sqrt[abort] + floor[abort]


def _ref(x, f, lg):
    m = x * lg
    return np.exp(m) + np.log(np.abs(m) + 1) + np.floor(m / 2) + np.sqrt(np.abs(m)) + f


CASE = Case("c_library_names", lambda: c_library_names,
            lambda rng: (rng.standard_normal(8), rng.standard_normal(8), 0.5), _ref, rtol=1e-12, atol=1e-12)

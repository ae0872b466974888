"""Found by the fuzzer (tests/test_fuzz.py): C computed int8 (x * 3 - 7) in int, so the shift and
the comparison saw the unwrapped value; codegen/c_expr.py now wraps 8- and 16-bit results."""
from .families import RowSpec

CASE = RowSpec(block_M=4, block_N=8, dtype='int8', kind='sum', M=1, N=1, alpha=0.0, seed=0).case()

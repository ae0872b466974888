"""int8 x int8 -> int32 (exact, with products that overflow int8) and float64 GEMMs."""
from .families import GemmSpec

CASES = [GemmSpec(block_M=8, block_N=8, block_K=16, dtype=dt, M=19, N=23, K=41, static=True).case()
         for dt in ("int8", "float64")]

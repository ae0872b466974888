"""float16 x float16 and bfloat16 x bfloat16 GEMMs accumulating in float32, ragged."""
from .families import GemmSpec

CASES = [GemmSpec(block_M=32, block_N=16, block_K=32, dtype=dt, M=40, N=24, K=70, static=True).case()
         for dt in ("float16", "bfloat16")]

"""Tile configurations: measured defaults (`default_gemm_tiles`) and the autotuner (`autotune`)."""
from .choose import Record, choose
from .defaults import default_gemm_tiles
from .tuner import AutotuneError, AutotuneResult, AutoTuner, autotune

__all__ = ["autotune", "AutoTuner", "AutotuneResult", "AutotuneError", "Record", "choose",
           "default_gemm_tiles"]

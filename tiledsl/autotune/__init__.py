"""Tile configurations: good defaults without tuning (a search over configurations comes later)."""
from .defaults import default_gemm_tiles

__all__ = ["default_gemm_tiles"]

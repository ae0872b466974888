"""Passes, one per file, each `PrimFunc -> PrimFunc`; the per-target order is in pipeline.py."""
from .pipeline import pipeline, run

__all__ = ["pipeline", "run"]

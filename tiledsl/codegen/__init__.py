"""Renderers from loop IR to source text: one per target, plus the TVM-FFI host wrapper."""

"""Building, loading and calling compiled kernels."""

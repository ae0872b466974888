"""Building, caching, loading and calling kernels (see `cache`, `cpp`, `kernel`, `report`)."""
from .report import configure_logging

configure_logging()  # TILEDSL_LOG=info|debug|warning: log to stderr

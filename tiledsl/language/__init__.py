"""The kernel language: `import tiledsl.language as T`.

Names and meanings follow TileLang, so a TileLang kernel ports by changing its imports.
"""
from .builtins import *  # noqa: F401,F403
from .builtins import __all__ as _builtins_all
from .frontend import prim_func

__all__ = ["prim_func", *_builtins_all]

"""Tile configurations: measured defaults (`default_gemm_tiles`) and the autotuner (`autotune`).

`tiledsl.autotune` is both this package and the decorator: calling the module calls `autotune`.
(Binding the function over the package name instead would make `import tiledsl.autotune as m`
return the function and hide `tiledsl.autotune.default_gemm_tiles`.)
"""
import sys
import types

from .choose import Record, choose
from .defaults import default_gemm_tiles
from .ray_executor import RayExecutor
from .tuner import AutotuneError, AutotuneResult, AutoTuner, autotune

__all__ = ["autotune", "AutoTuner", "AutotuneResult", "AutotuneError", "Record", "choose",
           "default_gemm_tiles", "RayExecutor"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return autotune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

"""What the Ray tasks of `executor="ray"` run: build one config, measure one config.

Nothing here imports ray (`ray_executor.py` wraps these functions as tasks), so the same code is
what a test can call in-process. A task receives the config's specialised IR, computed by the
driver for the result key, not the user's factory: the workers then need tiledsl, not the
user's source files, and every worker compiles exactly the IR the key was computed from.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from ..target import Target, cuda_arch, host_cpu
from .artifact import Artifact, artifact_of, install, origin
from .choose import Record
from .measure import Measurer
from .pool import Outcome, _compile_one

__all__ = ["Job", "build", "measure", "node_problem", "WATCHDOG_GRACE_S"]

# A measurement that has not returned `2 * timeout + WATCHDOG_GRACE_S` seconds after it started
# (a kernel that never returns: `bench` can only check its timeout between calls) is stopped by
# killing its worker; the driver reports that config as worker_died.
WATCHDOG_GRACE_S = 10.0


@dataclass(frozen=True)
class Job:
    """How every task of one tuning run compiles IR, as the driver's `@tiledsl.jit` would."""

    name: str  # the factory's name: tiledsl.jit exports the kernel under it
    out_idx: Tuple[int, ...]
    target: Target  # parsed on the driver: the result keys hold its features / arch
    backend: str  # the CPU backend the driver chose ("" off the CPU)
    timeout: float


def node_problem(target: Target, measuring: bool) -> str:
    """"" when this machine may build (or, `measuring`, time) code for `target`; else why not.

    A CPU kernel is compiled for the host's own features (-march=native) and its key and
    timings hold the target's, so CPU builds and measurements need a host with exactly the
    target's CPU name and features. A CUDA kernel builds anywhere (nvcc cross-compiles) but is
    timed only on a GPU of the target's arch."""
    if target.kind == "cpu":
        host = host_cpu()
        if (host.arch, tuple(host.features)) == (target.arch, tuple(target.features)):
            return ""
        lacks = sorted(set(target.features) - set(host.features))
        extra = sorted(set(host.features) - set(target.features))
        return (f"node {origin()} has CPU {host.arch}, the target is {target.arch}"
                f"{'; it lacks ' + ', '.join(lacks[:8]) if lacks else ''}"
                f"{'; it has extra ' + ', '.join(extra[:8]) if extra else ''}: "
                f"start nodes with tiledsl's CPU resource so tasks go only where they fit "
                f"(see docs/autotune_cluster.md)")
    if target.kind == "cuda" and measuring and not target.has("emulate"):
        arch = cuda_arch()
        if arch.rstrip("a") != target.arch.rstrip("a"):
            return f"node {origin()} has a GPU of arch {arch}, the target is {target.arch}"
    return ""


def _compile(func: Any, job: Job) -> Any:
    from ..jit import compile
    return compile(func, job.out_idx, job.target, name=job.name, backend=job.backend or None)


def build(func: Any, job: Job) -> Tuple[Outcome, Optional[Artifact]]:
    """Compile one config on this worker: its outcome (as the process pool reports it) and, when
    the kernel has a cache entry, that entry as an `Artifact` for the measuring worker."""
    problem = node_problem(job.target, measuring=False)
    if problem:
        return ("cluster_error", problem, 0.0), None
    kernels: list = []
    # _compile_one's SIGALRM timeout needs the main thread, where Ray runs a task; a worker
    # that runs tasks elsewhere builds without it (the driver's deadline still applies).
    timeout = job.timeout if threading.current_thread() is threading.main_thread() else 1e9
    outcome = _compile_one(lambda: kernels.append(_compile(func, job)), (), {}, timeout)
    if outcome[0] != "ok":
        return outcome, None
    return outcome, artifact_of(kernels[0])


_MEASURERS: Dict[str, Measurer] = {}  # run id -> the run's Measurer, kept for the worker's next task


def measure(func: Any, job: Job, artifact: Optional[Artifact], index: int, config: Dict[str, Any],
            settings: Any, run_id: str) -> Record:
    """Load (installing `artifact` first) and measure config `index` on this worker."""
    problem = node_problem(job.target, measuring=True)
    if problem:
        return Record(index, config, "cluster_error", reason=problem)
    _unnice()
    if run_id not in _MEASURERS:
        _MEASURERS.clear()  # one run's inputs at a time: they may be large
        _MEASURERS[run_id] = Measurer(settings)
    state = {"artifact": "none", "rebuilt": False}

    def load() -> Any:
        if artifact is not None:
            state["artifact"] = install(artifact)
        kernel = _compile(func, job)
        if artifact is not None and kernel.cache_key != artifact.key:
            state["rebuilt"] = _differences(artifact, kernel)
        return kernel

    stop = threading.Timer(2 * job.timeout + WATCHDOG_GRACE_S, _stop_worker, args=(index,))
    stop.daemon = True
    stop.start()
    try:
        rec = _MEASURERS[run_id].measure(index, config, load)
    finally:
        stop.cancel()
    extra = {"built_on": artifact.origin if artifact is not None else "", "measured_on": origin(),
             "nice": os.nice(0), **state}
    return dataclasses.replace(rec, extra=extra)


def _unnice() -> None:
    """Time at the priority a local run has. Ray starts workers at nice 15 (its worker_niceness)
    so that they yield to everything else on the node: fine for builds, but a timing on a busy
    node then measures the other processes. Raising the priority back needs CAP_SYS_NICE (root);
    without it the worker stays as Ray made it (docs: RAY_worker_niceness=0)."""
    if os.nice(0) > 0:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        except OSError:
            pass


def _differences(artifact: Artifact, kernel: Any) -> list:
    """Which cache-key fields made this node build its own kernel instead of using `artifact`."""
    mine = artifact_of(kernel)
    if mine is None:
        return ["(no cache entry here)"]
    names = set(artifact.fields) | set(mine.fields)
    return sorted(k for k in names if artifact.fields.get(k) != mine.fields.get(k)) or ["(key)"]


def _stop_worker(index: int) -> None:
    sys.stderr.write(f"tiledsl autotune: config {index} is still running past its timeout; "
                     f"stopping this worker\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

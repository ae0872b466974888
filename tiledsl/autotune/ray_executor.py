"""`@tiledsl.autotune(..., executor="ray")`: build and measure configs as tasks on a Ray cluster.

Ray does the scheduling; this file only says what each task asks for and turns what comes
back into records:

- a build task per config (`build_cpus` CPUs) compiles the IR into its node's disk cache and
  returns the cache entry as an `Artifact` (library + manifest) in Ray's object store;
- when a build succeeds, a measure task for that config receives the artifact straight from
  the object store (the driver never downloads it), installs it into its own node's cache and
  times the kernel there: `num_gpus=1` for CUDA targets; for CPU targets every CPU of a node
  whose CPU name and features are the target's, so nothing else runs beside a timing;
- what a task reports, or the way it failed (a worker killed, a node lost, a task past its
  deadline), becomes that config's `Record`; the run never stops for one config.

CPU nodes say which CPU they have through a custom resource named from the feature set
(`node_resources()`; a local cluster started here gets it). On a cluster whose nodes do not
declare it, tasks go anywhere and each one checks its node, refusing a mismatch with the reason.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional

from ..errors import TileDSLError
from ..target import Target, host_cpu
from . import worker
from .choose import Record
from .progress import Progress

__all__ = ["RayExecutor", "connect", "node_resources", "cpu_resource", "require_ray", "executor_of",
           "RayTuning"]

log = logging.getLogger("tiledsl.autotune")

EXTRA = "tiledsl[ray]"
_RESOURCE_PREFIX = "tiledsl-cpu-"
# Build tasks hold this much of their node's CPU resource: enough to keep them on matching
# nodes, little enough that a node runs as many builds as it has CPUs.
_BUILD_SHARE = 0.001


@dataclass(frozen=True)
class RayExecutor:
    """Where and with what the Ray executor runs tasks; `executor="ray"` is `RayExecutor()`.

    address: passed to `ray.init` when this process is not connected yet (None: `$RAY_ADDRESS`
        when set, else a new local cluster of this machine's CPUs). A process that called
        `ray.init(...)` itself tunes on that cluster.
    build_cpus: CPUs each build task asks for (one compiler process).
    measure_cpus: CPUs each measure task asks for. None: for CPU targets every CPU of the
        smallest matching node (a timing shares its node with no other task, and OpenMP gets
        that many threads); for CUDA targets 1.
    measure_gpus: GPUs each measure task of a CUDA target asks for.
    resources: custom resources measure tasks also ask for, e.g. `{"accelerator_type:H100": 0.001}`.
    build_runtime_env, measure_runtime_env: Ray runtime environments for the two kinds of task
        (e.g. `{"env_vars": {"TILEDSL_CACHE_DIR": "/local/ssd/tiledsl"}}`).
    """

    address: Optional[str] = None
    build_cpus: float = 1.0
    measure_cpus: Optional[float] = None
    measure_gpus: float = 1.0
    resources: Mapping[str, float] = field(default_factory=dict)
    build_runtime_env: Mapping[str, Any] = field(default_factory=dict)
    measure_runtime_env: Mapping[str, Any] = field(default_factory=dict)


def executor_of(value: Any) -> Optional[RayExecutor]:
    """The executor `autotune(executor=...)` names: None for the local process pool."""
    if value is None or value == "local":
        return None
    if value == "ray":
        value = RayExecutor()
    if not isinstance(value, RayExecutor):
        raise ValueError(f"autotune: executor must be 'local', 'ray' or a RayExecutor, got {value!r}")
    require_ray()
    return value


def require_ray() -> Any:
    """The `ray` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(f"autotune(executor='ray') needs Ray, which is not installed: "
                          f"pip install '{EXTRA}' (or pip install 'ray>=2.9,<3')") from e
    return ray


def cpu_resource(target: Optional[Target] = None) -> str:
    """The custom resource that marks nodes with `target`'s CPU (default: this host's)."""
    t = target or host_cpu()
    digest = hashlib.sha256(json.dumps([t.arch, list(t.features)]).encode()).hexdigest()[:12]
    return f"{_RESOURCE_PREFIX}{t.arch}-{digest}"


def node_resources(target: Optional[Target] = None) -> Dict[str, float]:
    """What a node declares so CPU tuning tasks for its CPU land on it:
    `ray start --resources="$(python -m tiledsl.autotune.ray_executor)"`."""
    return {cpu_resource(target): 1.0}


def connect(ex: RayExecutor) -> Any:
    """The `ray` module, connected: to the cluster this process joined, else per `ex.address`."""
    ray = require_ray()
    if not ray.is_initialized():
        if ex.address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=ex.address)
        else:
            ray.init(address="local", resources=node_resources())
    return ray


_TASKS: Dict[str, Any] = {}


def _tasks(ray: Any) -> Dict[str, Any]:
    # Made once per process: ray.remote pickles the function each time it is applied.
    if not _TASKS:
        _TASKS["build"] = ray.remote(worker.build)
        _TASKS["measure"] = ray.remote(worker.measure)
    return _TASKS


class RayTuning:
    """One tuning run's configs on the cluster (driver side)."""

    def __init__(self, ex: RayExecutor, job: worker.Job, settings: Any, bar: Progress):
        self.ray = connect(ex)
        self.ex, self.job, self.s, self.bar = ex, job, settings, bar
        self.artifacts: Dict[int, Any] = {}
        self.build_opts, self.measure_opts, self.where = self._options()

    def _options(self) -> tuple:
        ex, target = self.ex, self.job.target
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        build: Dict[str, Any] = {"num_cpus": ex.build_cpus, "max_retries": 0, "num_returns": 2}
        measure: Dict[str, Any] = {"max_retries": 0, "resources": dict(ex.resources)}
        where = f"{len(nodes)} Ray node{'s' if len(nodes) != 1 else ''}"
        if target.kind == "cpu":
            res = cpu_resource(target)
            marked = [n for n in nodes if any(k.startswith(_RESOURCE_PREFIX) for k in n["Resources"])]
            fit = [n for n in marked if res in n["Resources"]]
            if marked and not fit:
                raise TileDSLError(f"no node of the Ray cluster has this CPU ({target.arch}, resource "
                                   f"{res}); tune on a node that does, or start one with it")
            if fit:
                build["resources"] = {res: _BUILD_SHARE}
                measure["resources"][res] = 1.0
                where = f"{len(fit)} of {where} with this CPU"
            elif len(nodes) > 1:
                log.warning("Ray nodes do not declare their CPU (resource %s): tasks check their "
                            "node and refuse a mismatch; see docs/autotune_cluster.md", res)
            # A head node started with --num-cpus=0 runs no tasks: it does not set the size.
            sizes = [n["Resources"].get("CPU", 0.0) for n in (fit or nodes)]
            cpus = ex.measure_cpus or min((c for c in sizes if c > 0), default=1.0)
            measure["num_cpus"] = cpus
            # libgomp reads its thread count once per process: measure tasks get workers of
            # their own, started with as many threads as the CPUs they hold.
            env = dict(ex.measure_runtime_env)
            env["env_vars"] = {"OMP_NUM_THREADS": str(max(1, int(cpus))), **env.get("env_vars", {})}
            measure["runtime_env"] = env
        else:
            gpu = target.kind == "cuda" and not target.has("emulate")
            measure["num_cpus"] = ex.measure_cpus or 1.0
            if gpu:
                measure["num_gpus"] = ex.measure_gpus
            if ex.measure_runtime_env:
                measure["runtime_env"] = dict(ex.measure_runtime_env)
        if ex.build_runtime_env:
            build["runtime_env"] = dict(ex.build_runtime_env)
        for what, opts in (("build", build), ("measure", measure)):
            _check_feasible(what, opts, nodes)
        return build, measure, where

    def run(self, funcs: Dict[int, Any], configs: Dict[int, Dict[str, Any]],
            on_record: Callable[[Record], None]) -> None:
        """Build and measure `configs` (index -> config, with `funcs` their IR); each config's
        record goes to `on_record` as it arrives."""
        ray, tasks = self.ray, _tasks(self.ray)
        self.bar.where = self.where
        job_ref, settings_ref = ray.put(self.job), ray.put(self.s)
        run_id = uuid.uuid4().hex
        func_refs = {i: ray.put(funcs[i]) for i in configs}
        pending: Dict[Any, tuple] = {}  # object ref -> ("build" | "measure", index)
        for i in configs:
            out, art = tasks["build"].options(**self.build_opts).remote(func_refs[i], job_ref)
            pending[out] = ("build", i)
            self.artifacts[i] = art
        builds_left = len(configs)
        # A backstop for a task that never answers: every task stops itself within its own
        # timeout (SIGALRM for builds, bench's timeout and a watchdog for measurements).
        deadline = time.monotonic() + (2 * self.job.timeout + 60) * 2 * max(1, len(configs))
        try:
            while pending and time.monotonic() < deadline:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                self.bar.tick()
                for ref in ready:
                    what, i = pending.pop(ref)
                    if what == "build":
                        builds_left -= 1
                        rec = self._built(ref, i, configs[i], func_refs[i], job_ref, settings_ref,
                                          run_id, pending)
                        if builds_left == 0:
                            self.bar.end("compile")
                    else:
                        rec = self._measured(ref, i, configs[i])
                        self.bar.step("bench", failed=not rec.ok)
                    if rec is not None:
                        on_record(rec)
        finally:
            for ref, (what, i) in pending.items():
                ray.cancel(ref, force=True)
                on_record(Record(i, configs[i], "timeout",
                                 reason=f"no answer from the Ray task ({what}) before the run's deadline"))

    def _built(self, ref: Any, i: int, cfg: Dict[str, Any], func_ref: Any, job_ref: Any,
               settings_ref: Any, run_id: str, pending: Dict[Any, tuple]) -> Optional[Record]:
        try:
            status, reason, _ = self.ray.get(ref, timeout=60)
        except Exception as e:  # noqa: BLE001 - whatever Ray reports is this config's failure
            status, reason = _ray_failure(self.ray, e, "building")
        self.bar.step("compile", failed=status != "ok")
        if status != "ok":
            self.bar.drop("bench")
            return Record(i, cfg, status, reason=reason)
        out = _tasks(self.ray)["measure"].options(**self.measure_opts).remote(
            func_ref, job_ref, self.artifacts[i], i, cfg, settings_ref, run_id)
        pending[out] = ("measure", i)
        return None

    def _measured(self, ref: Any, i: int, cfg: Dict[str, Any]) -> Record:
        try:
            rec = self.ray.get(ref, timeout=60)
        except Exception as e:  # noqa: BLE001
            status, reason = _ray_failure(self.ray, e, "measuring")
            return Record(i, cfg, status, reason=reason)
        if rec.extra.get("rebuilt"):
            log.warning("config %s was built again on %s: the artifact from %s has another cache "
                        "key there (it differs in %s)", cfg, rec.extra.get("measured_on"),
                        rec.extra.get("built_on"), ", ".join(rec.extra["rebuilt"]))
        return rec

    def fetch(self, index: int) -> None:
        """Install config `index`'s artifact into this process's disk cache (the winner's, so
        returning its kernel here loads it instead of compiling it again)."""
        ref = self.artifacts.get(index)
        if ref is None:
            return
        from .artifact import install
        try:
            art = self.ray.get(ref, timeout=120)
            if art is not None:
                install(art)
        except Exception as e:  # noqa: BLE001 - only costs a local compile of the winner
            log.info("could not fetch the winner's artifact (%s); compiling it here", e)


def _check_feasible(what: str, opts: Dict[str, Any], nodes: list) -> None:
    """Refuse at once what no node can give: Ray would keep such a task pending for ever (a
    CUDA target on a cluster without GPUs, measure_cpus above every node's count)."""
    want = {"CPU": opts.get("num_cpus", 0.0), "GPU": opts.get("num_gpus", 0.0), **opts.get("resources", {})}
    want = {k: v for k, v in want.items() if v}
    if any(all(n["Resources"].get(k, 0.0) >= v for k, v in want.items()) for n in nodes):
        return
    have = "; ".join(", ".join(f"{k}={v:g}" for k, v in sorted(n["Resources"].items())
                               if not k.startswith(("node:", "memory", "object_store"))) for n in nodes)
    raise TileDSLError(f"no node of the Ray cluster can run a {what} task, which asks for "
                       f"{', '.join(f'{k}={v:g}' for k, v in want.items())}; the nodes have: {have or 'nothing'}")


def _ray_failure(ray: Any, e: BaseException, doing: str) -> tuple:
    """(status, reason) for an exception Ray raised in place of a task's result."""
    ex = ray.exceptions
    lost = tuple(getattr(ex, n) for n in ("WorkerCrashedError", "NodeDiedError", "OwnerDiedError",
                                          "ObjectLostError", "LocalRayletDiedError") if hasattr(ex, n))
    first = " ".join(str(e).split())[:300]
    if isinstance(e, lost):
        return "worker_died", (f"the Ray worker {doing} it died mid-task (killed, out of memory, a "
                               f"crash in the kernel, or stopped past its timeout): {type(e).__name__}: {first}")
    if isinstance(e, getattr(ex, "GetTimeoutError", ())):
        return "timeout", f"the Ray task {doing} it did not hand over its result: {first}"
    return "cluster_error", f"Ray could not run the task {doing} it: {type(e).__name__}: {first}"


if __name__ == "__main__":
    print(json.dumps(node_resources()))

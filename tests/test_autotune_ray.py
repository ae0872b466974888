"""The Ray executor against a real local cluster (`ray.init(num_cpus=2)`, one per module): the
same records and winner as the local executor, a killed worker is that config's failure, an
artifact built in one worker runs in another whose cache is cold, stored results answer a
second run. Timings come from injected fake benchmarks, which run inside the Ray workers."""

import os
import signal
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import tiledsl  # noqa: E402
from tiledsl.autotune import AutotuneError, RayExecutor  # noqa: E402
from tiledsl.autotune.progress import Progress  # noqa: E402
from tiledsl.autotune.ray_executor import RayTuning, cpu_resource, node_resources  # noqa: E402
from tiledsl.autotune.worker import Job, node_problem  # noqa: E402
from tiledsl.runtime.cpp import tiledsl_fingerprint  # noqa: E402
from tiledsl.target import Target, host_cpu  # noqa: E402
from test_autotune import make_scale  # noqa: E402

pytestmark = pytest.mark.cpu_only  # the executor's GPU side needs a GPU cluster


class Bench:
    """Latency per block size (ms), after checking the kernel's output; with `kill`, the worker
    measuring that block size kills itself first."""

    def __init__(self, ms, kill=None):
        self.ms, self.kill = ms, kill

    def __call__(self, kernel, args, config):
        if config["block"] == self.kill:
            os.kill(os.getpid(), signal.SIGKILL)
        kernel(*args)
        np.testing.assert_array_equal(args[-1], args[0] * 2)
        return self.ms[config["block"]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local cluster for the module. Its workers inherit the environment of the moment it
    starts: they get a cache of their own, apart from the driver's (per-test) cache."""
    worker_cache = tmp_path_factory.mktemp("ray-workers") / "cache"
    saved = {k: os.environ.get(k) for k in ("TILEDSL_CACHE_DIR", "TILEDSL_CACHE")}
    os.environ["TILEDSL_CACHE_DIR"] = str(worker_cache)
    os.environ.pop("TILEDSL_CACHE", None)
    # The benchmarks and reference functions below travel to the workers, which cannot import
    # this test module: pickle them by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=200 * 1024 ** 2)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield worker_cache
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TILEDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TILEDSL_CACHE", raising=False)
    return tmp_path / "cache"


def times_two(a):
    return a * 2


def tuner(configs, bench, **kw):
    return tiledsl.autotune(configs=configs, benchmark=bench, progress=False, ref_prog=times_two,
                            **kw)(make_scale())


CONFIGS = [{"block": 32}, {"block": 64}, {"block": 128}, {"block": 24}, {"block": 64, "wrong": True}]
MS = {32: 2.0, 64: 1.0, 128: 1.5}


def test_same_records_and_winner_as_local_and_a_second_run_measures_nothing(cluster, cache_dir, monkeypatch):
    local = tuner(CONFIGS, Bench(MS)).tune(1000)
    monkeypatch.setenv("TILEDSL_CACHE_DIR", str(cache_dir.parent / "other"))  # another driver
    remote = tuner(CONFIGS, Bench(MS), executor="ray").tune(1000)
    assert remote.config == local.config == {"block": 64} and remote.latency == 1.0
    assert [(r.status, r.min) for r in remote.records] == [(r.status, r.min) for r in local.records]
    assert "block must be a multiple of 16" in remote.records[3].reason
    assert "differs from ref_prog" in remote.records[4].reason
    a = np.arange(1000, dtype=np.float32)
    np.testing.assert_array_equal(remote.kernel(a), a * 2)

    # A new driver process: nothing in memory; stored results answer every built config, so no
    # task runs (a timing now would raise: this benchmark knows no block size).
    again = tuner(CONFIGS, Bench({}), executor="ray").tune(1000)
    assert [r.cached for r in again.records] == [True, True, True, False, True]
    assert again.config == {"block": 64} and again.records[3].status == "frontend_error"
    # ...and so do they for the local executor: one store, whichever executor wrote it.
    assert tuner(CONFIGS, Bench({})).tune(1000).config == {"block": 64}


def test_a_killed_worker_is_that_configs_failure_and_the_run_completes(cluster, cache_dir):
    configs = [{"block": 32}, {"block": 64}, {"block": 128}]
    r = tuner(configs, Bench(MS, kill=64), executor="ray").tune(1000)
    died = r.records[1]
    assert died.status == "worker_died" and "died mid-task" in died.reason
    assert r.config == {"block": 128} and [x.status for x in r.records] == ["ok", "worker_died", "ok"]
    # A dead worker says nothing about the config: not stored, so the next run (here a local
    # one, reading the same store) measures it.
    again = tuner(configs, Bench(MS)).tune(1000)
    assert [x.cached for x in again.records] == [True, False, True] and again.config == {"block": 64}


def test_an_artifact_built_in_one_worker_runs_in_another_with_a_cold_cache(cluster, cache_dir, tmp_path):
    built, measured = tmp_path / "build-node", tmp_path / "measure-node"
    ex = RayExecutor(build_runtime_env={"env_vars": {"TILEDSL_CACHE_DIR": str(built)}},
                     measure_runtime_env={"env_vars": {"TILEDSL_CACHE_DIR": str(measured)}})
    source = tiledsl_fingerprint.__wrapped__()  # these runtime envs start fresh workers for this test
    r = tuner([{"block": 32}, {"block": 64}], Bench({32: 1.0, 64: 2.0}), executor=ex).tune(700)
    if tiledsl_fingerprint.__wrapped__() != source:
        pytest.skip("tiledsl's source was edited while this test ran: its build and measure workers "
                    "may have imported different code generators, which rightly have other cache keys")
    for rec in r.records:
        # ok: the ref_prog check and the benchmark's own check passed in the measuring worker
        assert rec.ok, rec.reason
        assert rec.extra["artifact"] == "installed" and not rec.extra["rebuilt"]
        assert rec.extra["built_on"] != rec.extra["measured_on"]
    def entries(cache):  # what each built entry holds (the manifest names its creation time)
        return {p.name: p.read_bytes() for p in cache.glob("kernels/*/*/*/*") if p.name != "manifest.json"}
    assert len(entries(built)) >= 2 and entries(measured) == entries(built)  # library (or object), source
    assert not list(measured.rglob("kernels/*/.tmp/*"))  # nothing was compiled there


def test_build_timeouts_are_per_config_results(cluster, cache_dir):
    with pytest.raises(AutotuneError, match="no config compiled") as e:
        tuner([{"block": 48}, {"block": 80}], Bench({}), executor="ray", timeout=0.001).tune(900)
    assert str(e.value).count("timeout: compiling took longer than 0.001 s") == 2


def test_what_the_tasks_ask_for(cluster, monkeypatch):
    def with_gpu():  # this cluster has no GPU: pretend its node has one
        nodes = real_nodes()
        nodes[0]["Resources"]["GPU"] = 1.0
        return nodes
    real_nodes = ray.nodes
    monkeypatch.setattr(ray, "nodes", with_gpu)
    gpu = RayTuning(RayExecutor(), Job("k", (), Target("cuda", "sm_90a"), "", 10.0), None, Progress("k", 0, False))
    assert gpu.measure_opts["num_gpus"] == 1 and gpu.measure_opts["num_cpus"] == 1
    assert gpu.build_opts["num_cpus"] == 1 and "num_gpus" not in gpu.build_opts
    monkeypatch.setattr(ray, "nodes", real_nodes)
    # Ray would keep a task nobody can run pending for ever: refused at once instead.
    with pytest.raises(tiledsl.TileDSLError, match="no node of the Ray cluster can run a measure task, which asks for CPU=1, GPU=1"):
        RayTuning(RayExecutor(), Job("k", (), Target("cuda", "sm_90a"), "", 10.0), None, Progress("k", 0, False))
    with pytest.raises(tiledsl.TileDSLError, match="build task, which asks for CPU=3"):
        RayTuning(RayExecutor(build_cpus=3), Job("k", (), host_cpu(), "cxx", 10.0), None, Progress("k", 0, False))
    cpu = RayTuning(RayExecutor(), Job("k", (), host_cpu(), "cxx", 10.0), None, Progress("k", 0, False))
    # the whole (2-CPU) node, with as many OpenMP threads; no CPU resource declared on this cluster
    assert cpu.measure_opts["num_cpus"] == 2 and "num_gpus" not in cpu.measure_opts
    assert cpu.measure_opts["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "2"
    assert cpu.measure_opts["max_retries"] == 0 == cpu.build_opts["max_retries"]


def test_cpu_resource_names_the_feature_set_and_mismatched_nodes_are_refused():
    name = cpu_resource()
    assert name.startswith("tiledsl-cpu-") and node_resources() == {name: 1.0}
    host = host_cpu()
    other = Target("cpu", "elsewhere", tuple(f for f in host.features if f != "sse2") + ("made-up",), host.isa)
    assert cpu_resource(other) != name
    problem = node_problem(other, measuring=True)
    assert "the target is elsewhere" in problem and "extra sse2" in problem and "lacks made-up" in problem
    assert node_problem(host, measuring=False) == ""
    assert node_problem(Target("cuda", "sm_90a"), measuring=False) == ""  # nvcc cross-compiles

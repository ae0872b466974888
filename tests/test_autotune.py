"""The autotuner: the choice rule, config spaces, failures reported and skipped, results stored
per config so that a longer list re-tunes only the new configs. Timings come from an injected
fake benchmark: nothing here depends on the machine's speed."""

import re

import numpy as np
import pytest

import tiledsl
import tiledsl.language as T
from tiledsl.autotune import AutotuneError, Record, choose
from tiledsl.autotune.choose import format_table
from tiledsl.autotune.space import expand_configs


# ---- the choice rule ----

def rec(i, ms, status="ok"):
    return Record(i, {"i": i}, status, ms, ms, ms)


def test_fastest_wins_when_clearly_faster():
    assert choose([rec(0, 2.0), rec(1, 1.0), rec(2, 1.5)]).index == 1


def test_ties_and_near_ties_go_to_the_config_listed_first():
    assert choose([rec(0, 1.0), rec(1, 1.0)]).index == 0
    assert choose([rec(0, 1.02), rec(1, 1.0), rec(2, 0.995)], tie_rtol=0.03).index == 0
    assert choose([rec(0, 1.02), rec(1, 1.0), rec(2, 0.995)], tie_rtol=0.001).index == 2
    # The same timings in another order: the winner follows the list order, not the noise.
    assert choose([rec(0, 0.995), rec(1, 1.02)], tie_rtol=0.03).index == 0


def test_minimum_ranks_by_default_median_on_request():
    noisy = Record(0, {}, "ok", median=5.0, min=1.0, max=9.0)  # fast, but preempted half the time
    steady = Record(1, {}, "ok", median=2.0, min=2.0, max=2.1)
    assert choose([noisy, steady]).index == 0
    assert choose([noisy, steady], by="median").index == 1
    with pytest.raises(ValueError, match="rank_by must be 'min' or 'median'"):
        tiledsl.autotune(configs=[{}], rank_by="mean")


def test_failed_configs_never_win():
    records = [rec(0, None, "compile_error"), rec(1, 0.1, "check_failed"), rec(2, 3.0)]
    assert choose(records).index == 2
    assert choose([rec(0, None, "timeout")]) is None


def test_table_lists_every_config_and_marks_the_winner():
    records = [rec(0, 2.0), Record(1, {"i": 1}, "compile_error", reason="CompileError: boom\nmore")]
    lines = format_table(records, records[0]).splitlines()
    assert len(lines) == 3 and lines[1].split()[:2] == ["*", "0"] and "compile_error: CompileError: boom more" in lines[2]


# ---- config spaces ----

def factory_signature():
    import inspect

    def f(N, block=64, unroll=False):
        pass
    return inspect.signature(f)


def test_dict_of_axes_is_their_product_in_order():
    space = expand_configs({"block": [32, 64], "unroll": [False, True]}, factory_signature(), "k")
    assert space == [{"block": 32, "unroll": False}, {"block": 32, "unroll": True},
                     {"block": 64, "unroll": False}, {"block": 64, "unroll": True}]


def test_list_and_callable_configs_drop_duplicates():
    sig = factory_signature()
    assert expand_configs([{"block": 32}, {"block": 64}, {"block": 32}], sig, "k") == [{"block": 32}, {"block": 64}]
    assert expand_configs(lambda N: [{"block": N // 2}], sig, "k", (128,)) == [{"block": 64}]


def test_bad_configs_name_the_kernel_and_the_key():
    sig = factory_signature()
    with pytest.raises(TypeError, match=r"scale: autotune config \{'blok': 32\} sets 'blok', which is not a parameter"):
        expand_configs([{"blok": 32}], sig, "scale")
    with pytest.raises(ValueError, match="scale: autotune axis 'block' has no values"):
        expand_configs({"block": []}, sig, "scale")
    with pytest.raises(TypeError, match="scale: each autotune config must be a dict .* got int 32"):
        expand_configs([32, 64], sig, "scale")
    with pytest.raises(TypeError, match="list of dicts, a dict of axes"):
        expand_configs(32, sig, "scale")


# ---- tuning real (tiny) kernels with a fake benchmark ----

def make_scale():
    @tiledsl.jit(out_idx=[-1])
    def scale(N, block=64, wrong=False):
        assert block % 16 == 0, "block must be a multiple of 16"

        @T.prim_func
        def main(A: T.Tensor((N,), "float32"), B: T.Tensor((N,), "float32")):
            with T.Kernel(T.ceildiv(N, block)) as bx:
                for i in T.Parallel(block):
                    B[bx * block + i] = A[bx * block + i] * (3.0 if wrong else 2.0)
        return main
    return scale


class FakeBench:
    """Latency per block size (ms); records which configs were timed."""

    def __init__(self, ms):
        self.ms = ms
        self.timed = []

    def __call__(self, kernel, args, config):
        self.timed.append(config["block"])
        kernel(*args)
        np.testing.assert_array_equal(args[-1], args[0] * 2)  # timed on real inputs and outputs
        return self.ms[config["block"]]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TILEDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TILEDSL_CACHE", raising=False)
    return tmp_path / "cache"


def tuner(configs, bench, **kw):
    return tiledsl.autotune(configs=configs, benchmark=bench, progress=False,
                            ref_prog=lambda a: a * 2, **kw)(make_scale())


def test_tune_reports_failures_and_picks_the_fastest(cache_dir):
    bench = FakeBench({32: 2.0, 64: 1.0, 128: 1.5})
    configs = [{"block": 32}, {"block": 64}, {"block": 128}, {"block": 24},
               {"block": 64, "wrong": True}]
    t = tuner(configs, bench)
    result = t.tune(1000)
    assert result.config == {"block": 64} and result.latency == 1.0
    assert sorted(bench.timed) == [32, 64, 128]
    status = {r.index: (r.status, r.reason) for r in result.records}
    assert status[3][0] == "frontend_error" and "block must be a multiple of 16" in status[3][1]
    assert status[4][0] == "check_failed"
    assert re.search(r"output 'B' differs from ref_prog at 9\d\d of 1000 elements", status[4][1])
    table = result.table()
    assert len(table.splitlines()) == 6 and "check_failed" in table and "frontend_error" in table
    a = np.arange(1000, dtype=np.float32)
    np.testing.assert_array_equal(t(1000)(a), a * 2)  # the call returns the tuned kernel
    assert t(1000) is result.kernel and t.tune(1000) is result  # tuned once per process


def test_stored_results_answer_and_only_new_configs_are_tuned(cache_dir):
    first = FakeBench({32: 2.0, 64: 1.0, 128: 1.5})
    r1 = tuner([{"block": 32}, {"block": 64}, {"block": 128}], first).tune(1000)
    assert sorted(first.timed) == [32, 64, 128] and r1.measured == 3

    # A new process would start here: fresh factory, nothing in memory. The old configs'
    # stored results stand even though this benchmark would now time them differently.
    second = FakeBench({32: 0.1, 64: 5.0, 128: 0.1, 256: 0.5})
    r2 = tuner([{"block": 32}, {"block": 64}, {"block": 128}, {"block": 256}], second).tune(1000)
    assert second.timed == [256] and r2.measured == 1
    assert r2.config == {"block": 256} and r2.latency == 0.5
    assert [r.cached for r in r2.records] == [True, True, True, False]

    # Another problem size is another kernel: tuned from scratch.
    third = FakeBench({32: 2.0, 64: 1.0, 128: 1.5})
    tuner([{"block": 32}, {"block": 64}], third).tune(2000)
    assert sorted(third.timed) == [32, 64]

    # Cleared results are measured again.
    tiledsl.cache.clear("autotune")
    fourth = FakeBench({32: 2.0, 64: 1.0})
    tuner([{"block": 32}, {"block": 64}], fourth).tune(1000)
    assert sorted(fourth.timed) == [32, 64]


def test_ties_are_deterministic_across_runs(cache_dir):
    bench = FakeBench({32: 1.0, 64: 1.01, 128: 0.995})
    assert tuner([{"block": 64}, {"block": 32}, {"block": 128}], bench).tune(512).config == {"block": 64}
    # The reverse order, from stored results: the first listed of the tied configs wins again.
    again = FakeBench({})
    assert tuner([{"block": 128}, {"block": 32}, {"block": 64}], again).tune(512).config == {"block": 128}
    assert again.timed == []


def test_another_reference_checks_again(cache_dir):
    bench = FakeBench({32: 1.0})
    tuner([{"block": 32}], bench).tune(256)
    bench2 = FakeBench({32: 1.0})
    t = tiledsl.autotune(configs=[{"block": 32}], benchmark=bench2, progress=False,
                         ref_prog=lambda a: a * 2 + 0, rtol=1e-3)(make_scale())
    t.tune(256)
    assert bench2.timed == [32]


def test_compile_timeout_is_reported(cache_dir):
    t = tuner([{"block": 32}, {"block": 64}], FakeBench({}), timeout=0.001)
    with pytest.raises(AutotuneError, match="no config compiled") as e:
        t.tune(300)
    assert str(e.value).count("timeout: compiling took longer than 0.001 s") == 2


def test_explicit_tuned_argument_skips_tuning(cache_dir):
    bench = FakeBench({32: 1.0, 64: 2.0})
    t = tuner([{"block": 32}, {"block": 64}], bench)
    k = t(128, block=64)
    assert bench.timed == [] and k.spec_args["block"] == 64


def test_autotune_must_wrap_a_jit_factory():
    with pytest.raises(TypeError, match="above @tiledsl.jit"):
        tiledsl.autotune(configs=[{"block": 32}])(lambda N: None)


def test_tiledsl_autotune_is_the_package_and_the_decorator():
    import tiledsl.autotune as package
    assert package is tiledsl.autotune and callable(package)
    assert tiledsl.autotune.default_gemm_tiles(64, 64, 64)["block_M"] > 0
    assert isinstance(tiledsl.autotune(configs=[{"block": 32}])(make_scale()), tiledsl.autotune.AutoTuner)


def test_executor_ray_without_ray_names_the_extra(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'tiledsl\[ray\]'"):
        tiledsl.autotune(configs=[{"block": 32}], executor="ray")
    with pytest.raises(ValueError, match="executor must be 'local', 'ray' or a RayExecutor"):
        tiledsl.autotune(configs=[{"block": 32}], executor="dask")

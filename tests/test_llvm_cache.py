"""The LLVM backend's object code in the disk cache: a second process links the cached object
instead of lowering and optimising again (it never imports the passes or the code generator),
the kernel it gets computes the same, exports the same `.so`, and an entry others could have
written is not loaded."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")

CHILD = textwrap.dedent(f"""
    import json, sys, time
    import numpy as np
    sys.path.insert(0, {EXAMPLES!r})
    import tiledsl
    from gemm import matmul
    t0 = time.perf_counter()
    k = tiledsl.jit(out_idx=[-1], backend="llvm")(matmul.factory)(96, 80, 64)
    seconds = time.perf_counter() - t0
    a = np.random.rand(96, 64).astype(np.float32) - 0.5
    b = np.random.rand(64, 80).astype(np.float32) - 0.5
    ok = bool(np.allclose(k(a, b), np.maximum(a @ b, 0), rtol=1e-4, atol=1e-5))
    lowered_here = "tiledsl.transform" in sys.modules or "tiledsl.codegen.llvm" in sys.modules
    out = {{"key": k.cache_key, "ok": ok, "lowered_here": lowered_here, "seconds": seconds,
           "source": k.get_kernel_source()}}
    if len(sys.argv) > 1:
        import tvm_ffi
        k.export_library(sys.argv[1])
        c = np.zeros((96, 80), np.float32)
        tvm_ffi.load_module(sys.argv[1])[k.name](a, b, c)
        out["export_ok"] = bool(np.allclose(c, np.maximum(a @ b, 0), rtol=1e-4, atol=1e-5))
    print(json.dumps(out))
""")


def run_child(cache_dir, *args):
    env = dict(os.environ, TILEDSL_CACHE_DIR=str(cache_dir), TILEDSL_LOG="info")
    env.pop("TILEDSL_CACHE", None)
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_second_process_links_the_cached_object(tmp_path):
    first, log1 = run_child(tmp_path / "cache")
    second, log2 = run_child(tmp_path / "cache")
    assert first["ok"] and second["ok"] and first["key"] == second["key"]
    assert "compiled" in log1 and "loaded from the disk cache" in log2, log2
    assert first["lowered_here"] and not second["lowered_here"]
    assert second["source"] == first["source"]  # get_kernel_source() reads the entry's .ll
    (entry,) = (tmp_path / "cache" / "kernels" / "llvm").glob("*/*/manifest.json")
    meta = json.loads(entry.read_text())["meta"]
    assert meta["object"].endswith(".o") and first["key"][:24] in meta["object"]


@pytest.mark.skipif(not any(shutil.which(c) for c in ("cc", "gcc", "clang", "ld")), reason="no linker")
def test_a_kernel_loaded_from_disk_exports_a_library(tmp_path):
    run_child(tmp_path / "cache")
    second, _ = run_child(tmp_path / "cache", tmp_path / "gemm.so")
    assert second["export_ok"] and not second["lowered_here"]


def test_an_object_others_could_write_is_not_linked(tmp_path):
    run_child(tmp_path / "cache")
    (obj,) = (tmp_path / "cache" / "kernels" / "llvm").glob("*/*/*.o")
    os.chmod(obj, 0o666)
    again, log = run_child(tmp_path / "cache")
    assert again["ok"] and again["lowered_here"]  # built again, in a private folder
    assert "CacheTrustWarning" in log and str(obj.parent) in log and "chmod -R go-w" in log
    assert "loaded from the disk cache" not in log

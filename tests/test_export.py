"""Ahead-of-time export: one shared library that tvm_ffi loads and calls, with the same argument
checks, in a process that never imports tiledsl, and that a C++ program loads through the
tvm-ffi C++ API (built here with the system compiler)."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tvm_ffi.libinfo as libinfo

import tiledsl
import tiledsl.language as T


@tiledsl.jit(out_idx=[-1])
def axpy(M, N, block_M=16):
    @T.prim_func
    def main(alpha: T.float32, X: T.Tensor((M, N), "float32"), Y: T.Tensor((M, N), "float32"),
             Z: T.Tensor((M, N), "float32")):
        with T.Kernel(T.ceildiv(M, block_M)) as bx:
            for i, j in T.Parallel(block_M, N):
                Z[bx * block_M + i, j] = alpha * X[bx * block_M + i, j] + Y[bx * block_M + i, j]
    return main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "libaxpy.so"
    k = axpy(64, 48)
    assert k.export_library(str(path)) == str(path)
    return k, path


PY_CLIENT = textwrap.dedent('''
    import sys
    import numpy as np
    import tvm_ffi
    f = tvm_ffi.load_module(sys.argv[1])[sys.argv[2]]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 48), dtype=np.float32)
    y = rng.standard_normal((64, 48), dtype=np.float32)
    z = np.empty((64, 48), np.float32)
    f(2.5, x, y, z)
    assert np.allclose(z, np.float32(2.5) * x + y, rtol=1e-6, atol=1e-6), "wrong result"  # g++ may fuse to FMA
    for bad in ((2.5, x.astype(np.float64), y, z), (2.5, x[:32], y, z), ("a", x, y, z)):
        try:
            f(*bad)
        except (TypeError, ValueError) as e:
            print(type(e).__name__, e)
    assert not any(m.split(".")[0] == "tiledsl" for m in sys.modules), "tiledsl was imported"
    print("ok")
''')


def test_exported_library_runs_without_tiledsl(exported, tmp_path):
    k, path = exported
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, "-c", PY_CLIENT, str(path), k.name], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "ok"
    assert lines[:3] == ["TypeError axpy: argument 'X' expects float32, got float64",
                         "ValueError axpy: argument 'X' expects shape (64, 48), got (32, 48)",
                         "TypeError axpy: argument 'alpha' expects a float32 scalar, got str"]


CPP_CLIENT = r'''
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
namespace ffi = tvm::ffi;
struct CPUAlloc {
  void AllocData(DLTensor* t) { t->data = std::malloc(ffi::GetDataSize(*t)); }
  void FreeData(DLTensor* t) { std::free(t->data); }
};
static ffi::Tensor empty(int64_t m, int64_t n, int bits) {
  return ffi::Tensor::FromNDAlloc(CPUAlloc(), {m, n}, DLDataType{kDLFloat, (uint8_t)bits, 1}, DLDevice{kDLCPU, 0});
}
int main(int argc, char** argv) {
  ffi::Module mod = ffi::Module::LoadFromFile(argv[1]);
  ffi::Function f = mod->GetFunction(argv[2]).value();
  const int m = 64, n = 48;
  ffi::Tensor x = empty(m, n, 32), y = empty(m, n, 32), z = empty(m, n, 32);
  float *px = (float*)x.data_ptr(), *py = (float*)y.data_ptr(), *pz = (float*)z.data_ptr();
  for (int i = 0; i < m * n; ++i) { px[i] = (float)(i % 7 - 3); py[i] = (float)(i % 5 - 2); }
  f(0.5, x, y, z);
  double err = 0;
  for (int i = 0; i < m * n; ++i) err = std::fmax(err, std::fabs(0.5 * px[i] + py[i] - pz[i]));
  std::printf("max error %g\n", err);
  try {
    f(0.5, empty(m, n, 64), y, z);
    std::printf("no error\n");
  } catch (const ffi::Error& e) {
    std::printf("%s: %s\n", e.kind().c_str(), e.message().c_str());
  }
  return 0;
}
'''


def test_cpp_program_loads_the_exported_library(exported, tmp_path):
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    k, path = exported
    (tmp_path / "client.cc").write_text(CPP_CLIENT)
    libdir = os.path.dirname(libinfo.find_libtvm_ffi())
    build = subprocess.run([cxx, "-std=c++17", "-O0", "client.cc", "-o", "client", f"-I{libinfo.find_include_path()}",
                            f"-I{libinfo.find_dlpack_include_path()}", f"-L{libdir}", "-ltvm_ffi",
                            f"-Wl,-rpath,{libdir}"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    out = subprocess.run([str(tmp_path / "client"), str(path), k.name], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["max error 0",
                                       "TypeError: axpy: argument 'X' expects float32, got float64"]


def test_export_overwrites_and_uses_the_backend_hook(exported, tmp_path):
    k, path = exported
    target = tmp_path / "sub" / "k.so"
    k.export_library(target)
    k.export_library(target)  # again, over the first
    assert target.read_bytes() == path.read_bytes()

    written = []
    in_process = tiledsl.JITKernel(k.func, k.lowered, "", None, k._fn, k.out_idx, k.target, written=["Z"],
                                   exporter=lambda p: written.append(p))
    in_process.export_library(tmp_path / "x.so")
    assert written == [str(tmp_path / "x.so")]
    no_hook = tiledsl.JITKernel(k.func, k.lowered, "", None, k._fn, k.out_idx, k.target, written=["Z"])
    with pytest.raises(NotImplementedError, match="axpy: the cpu backend .* cannot export"):
        no_hook.export_library(tmp_path / "y.so")


# ------------------------------------------------------------------ metadata and tiledsl.load

def scale_rows(block=8):
    """Symbolic M, and an output whose shape is an expression of it (rows pair up)."""
    M = T.dynamic("M")

    @T.prim_func
    def main(X: T.Tensor((M, 16), "float32"), s: T.int32, Y: T.Tensor((M, 16), "float32"),
             P: T.Tensor((M * 2, 8), "float32")):
        with T.Kernel(T.ceildiv(M, block)) as bx:
            for i, j in T.Parallel(block, 16):
                Y[bx * block + i, j] = X[bx * block + i, j] * s
            for i, j in T.Parallel(block, 8):
                P[2 * (bx * block + i), j] = X[bx * block + i, j]
                P[2 * (bx * block + i) + 1, j] = X[bx * block + i, j + 8]
    return main


def test_metadata_is_in_the_library_as_ffi_containers(exported):
    """tvm-ffi's own metadata symbol: get_function_metadata reads it as JSON; read_metadata
    hands it over as ffi.Map / ffi.Array (parsed by ffi.json.Parse)."""
    import tvm_ffi
    from tiledsl.runtime.metadata import kernel_names, read_metadata
    k, path = exported
    mod = tvm_ffi.load_module(str(path))
    plain = mod.get_function_metadata("axpy")
    assert plain["params"] == [{"name": "alpha", "kind": "scalar", "dtype": "float32"},
                               {"name": "X", "kind": "tensor", "dtype": "float32", "shape": [64, 48]},
                               {"name": "Y", "kind": "tensor", "dtype": "float32", "shape": [64, 48]},
                               {"name": "Z", "kind": "tensor", "dtype": "float32", "shape": [64, 48]}]
    assert plain["out_idx"] == [3] and plain["written"] == ["Z"] and plain["format"] == 1
    assert plain["cache_key"] == k.cache_key and plain["tiledsl"] == tiledsl.__version__
    assert plain["target"]["kind"] == "cpu" and plain["target"]["backend"] in ("cxx", "llvm")
    assert plain["target"]["arch"] == k.target.arch
    m = read_metadata(mod, "axpy")
    assert isinstance(m, tvm_ffi.Map) and isinstance(m["params"], tvm_ffi.Array)
    assert list(m["params"][1]["shape"]) == [64, 48] and m["name"] == "axpy"
    assert kernel_names(str(path)) == ["axpy"]


def test_load_rebuilds_the_kernel_from_the_library_alone(exported, tmp_path):
    k, path = exported
    copy = tmp_path / "moved.so"  # another path: nothing ties it to the cache or the source
    k.export_library(copy)
    loaded = tiledsl.load(copy)
    assert loaded.name == "axpy" and loaded.out_idx == [3] and loaded.cache_key == k.cache_key
    assert [p.name for p in loaded.inputs] == ["alpha", "X", "Y"]
    x = np.arange(64 * 48, dtype=np.float32).reshape(64, 48)
    y = np.ones_like(x)
    np.testing.assert_allclose(loaded(2.0, x, y), k(2.0, x, y))
    np.testing.assert_allclose(loaded(alpha=2.0, X=x, Y=y), k(2.0, x, y))
    with pytest.raises(ValueError, match=r"axpy: argument 'X' expects shape \(64, 48\), got \(32, 48\)"):
        loaded(2.0, x[:32], y)
    with pytest.raises(ValueError, match="read-only numpy array \\(is an input\\)"):
        ro = x.copy()
        ro.flags.writeable = False
        loaded(2.0, ro, y)
    with pytest.raises(ValueError, match="lowered IR is not in the library"):
        loaded.get_ir(lowered=True)


def test_load_allocates_outputs_with_symbolic_shapes(tmp_path):
    k = tiledsl.compile(scale_rows(), out_idx=[2, 3])
    path = k.export_library(tmp_path / "rows.so")
    loaded = tiledsl.load(path, name=k.name)
    meta = loaded.metadata
    assert [list(p["shape"]) for p in meta["params"] if p["kind"] == "tensor"] == \
        [["M", 16], ["M", 16], [["*", "M", 2], 8]]
    for m in (8, 37):  # one library for every M; P's 2*M rows are worked out at call time
        x = np.random.default_rng(m).standard_normal((m, 16), dtype=np.float32)
        y, p = loaded(x, 3)
        np.testing.assert_allclose(y, x * 3, rtol=1e-6)
        np.testing.assert_array_equal(p, x.reshape(m * 2, 8))


def test_load_refuses_a_library_without_metadata(tmp_path):
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    (tmp_path / "plain.c").write_text(
        "#include <tvm/ffi/c_api.h>\n"
        "int __tvm_ffi_f(void* h, const TVMFFIAny* a, int32_t n, TVMFFIAny* r) { return 0; }\n")
    build = subprocess.run([cxx, "-x", "c", "-shared", "-fPIC", "plain.c", "-o", "plain.so",
                            f"-I{libinfo.find_include_path()}", f"-I{libinfo.find_dlpack_include_path()}"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    with pytest.raises(ValueError, match="exports 0 tiledsl kernels"):
        tiledsl.load(tmp_path / "plain.so")
    with pytest.raises(ValueError, match="kernel 'f' has no tiledsl metadata"):
        tiledsl.load(tmp_path / "plain.so", name="f")


def test_a_compiled_kernel_reads_its_own_metadata(exported):
    k, _ = exported
    if k.library is None:  # the LLVM backend keeps the kernel in process: no library to read
        assert k.metadata is None
        return
    assert k.metadata["cache_key"] == k.cache_key and list(k.metadata["out_idx"]) == [3]

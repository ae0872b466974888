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
def mm(M, N, K, block_M=32, block_N=32, block_K=32):
    @T.prim_func
    def main(A: T.Tensor((M, K), "float32"), B: T.Tensor((K, N), "float32"), C: T.Tensor((M, N), "float32")):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M)) as (bx, by):
            A_s = T.alloc_shared((block_M, block_K), "float32")
            B_s = T.alloc_shared((block_K, block_N), "float32")
            C_f = T.alloc_fragment((block_M, block_N), "float32")
            T.clear(C_f)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                T.copy(A[by * block_M, k * block_K], A_s)
                T.copy(B[k * block_K, bx * block_N], B_s)
                T.gemm(A_s, B_s, C_f)
            T.copy(C_f, C[by * block_M, bx * block_N])
    return main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "libmm64.so"
    k = mm(64, 64, 64)
    assert k.export_library(str(path)) == str(path)
    return k, path


PY_CLIENT = textwrap.dedent('''
    import sys
    import numpy as np
    import tvm_ffi
    f = tvm_ffi.load_module(sys.argv[1])[sys.argv[2]]
    rng = np.random.default_rng(1)
    a = rng.standard_normal((64, 64), dtype=np.float32)
    b = rng.standard_normal((64, 64), dtype=np.float32)
    c = np.empty((64, 64), np.float32)
    f(a, b, c)
    assert np.allclose(c, a @ b, rtol=1e-4, atol=1e-4), "wrong result"
    for bad in ((a.astype(np.float64), b, c), (a[:32], b, c)):
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
    assert "TypeError mm: argument 'A' expects float32, got float64" in lines
    assert any(l.startswith("ValueError mm: argument 'A' expects shape (64, 64)") for l in lines), lines


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
static ffi::Tensor empty(int64_t n, int bits) {
  return ffi::Tensor::FromNDAlloc(CPUAlloc(), {n, n}, DLDataType{kDLFloat, (uint8_t)bits, 1}, DLDevice{kDLCPU, 0});
}
int main(int argc, char** argv) {
  ffi::Module mod = ffi::Module::LoadFromFile(argv[1]);
  ffi::Function f = mod->GetFunction(argv[2]).value();
  const int n = 64;
  ffi::Tensor a = empty(n, 32), b = empty(n, 32), c = empty(n, 32);
  float *pa = (float*)a.data_ptr(), *pb = (float*)b.data_ptr(), *pc = (float*)c.data_ptr();
  for (int i = 0; i < n * n; ++i) { pa[i] = (float)(i % 7 - 3); pb[i] = (float)(i % 5 - 2); }
  f(a, b, c);
  double err = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int k = 0; k < n; ++k) s += pa[i * n + k] * pb[k * n + j];
      err = std::fmax(err, std::fabs(s - pc[i * n + j]));
    }
  std::printf("max error %g\n", err);
  try {
    f(empty(n, 64), b, c);
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
                                       "TypeError: mm: argument 'A' expects float32, got float64"]


def test_export_overwrites_and_uses_the_backend_hook(exported, tmp_path):
    k, path = exported
    target = tmp_path / "sub" / "k.so"
    k.export_library(target)
    k.export_library(target)  # again, over the first
    assert target.read_bytes() == path.read_bytes()

    written = []
    in_process = tiledsl.JITKernel(k.func, k.lowered, "", None, k._fn, k.out_idx, k.target, written=["C"],
                                   exporter=lambda p: written.append(p))
    in_process.export_library(tmp_path / "x.so")
    assert written == [str(tmp_path / "x.so")]
    no_hook = tiledsl.JITKernel(k.func, k.lowered, "", None, k._fn, k.out_idx, k.target, written=["C"])
    with pytest.raises(NotImplementedError, match="mm: the cpu backend .* cannot export"):
        no_hook.export_library(tmp_path / "y.so")

"""CUDA through NVRTC and the `tiledsl.cuda` module, without a GPU as far as it goes.

Every example kernel compiles with NVRTC for sm_80 and sm_90a and its SASS is audited; the module
object's bytes and an exported library's `__tvm_ffi__library_bin` are read back byte for byte;
an exported library loads (and lists its functions, and checks its arguments) in a process that
never imports tiledsl, from Python and from C++. Running the kernels needs a GPU (marker `cuda`).
Skipped without libnvrtc (`pip install ".[cuda-test]"`) or a C++ compiler for the host code.
"""
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tvm_ffi
import tvm_ffi.libinfo as libinfo

import tiledsl
import tiledsl.language as T
from tiledsl.errors import LoweringError
from tiledsl.runtime import cuda_module as cm
from tiledsl.runtime.cuda import find_nvcc
from tiledsl.runtime.nvrtc import find_nvrtc
from tiledsl.runtime.sass import disassemble, find_cuobjdump, opcode_counts
from tiledsl.target import Target

from examples_util import load_example

CXX = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
pytestmark = [pytest.mark.skipif(find_nvrtc() is None, reason="no libnvrtc (pip install nvidia-cuda-nvrtc)"),
              pytest.mark.skipif(CXX is None, reason="no C++ compiler for the host code")]
needs_cuobjdump = pytest.mark.skipif(find_cuobjdump() is None, reason="no cuobjdump")
ARCHS = ["sm_80", "sm_90a"]


def _has_gpu() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


# (example, factory, args, kwargs): small sizes and tiles, so NVRTC's unrolling stays cheap
EXAMPLES = [("gemm", "matmul", (256, 256, 256), {}), ("gemm", "matmul", (256, 256, 256), {"dtype": "float16"}),
            ("batched_gemm", "batched_matmul", (2, 128, 128, 256), {"block_N": 64, "block_K": 32}),
            ("dequant_gemm", "dequant_gemm", (64, 256, 256), {}), ("dequant_gemm", "dequant_gemv", (256, 256), {}),
            ("flash_attention", "flash_attention", (1, 2, 128, 64), {}),
            ("gemm_epilogue", "gemm_bias_act", (128, 256, 256), {"block_N": 64, "block_K": 32}),
            ("norms", "layer_norm", (64, 256), {}), ("norms", "rms_norm", (64, 256), {}),
            ("softmax", "softmax", (64, 256), {}), ("softmax", "online_softmax", (64, 2048), {}),
            ("splitk_gemm", "splitk_matmul", (256, 256, 1024), {"block_M": 64, "block_N": 64, "block_K": 32}),
            ("conv2d", "conv2d", (1, 16, 16, 32, 32, 3, 3), {"padding": 1}), ("topk", "topk", (64, 1024, 8), {})]
def _func(example, factory, args, kwargs):
    f = getattr(load_example(example), factory).get_ir(*args, **kwargs)
    return tiledsl.ir.PrimFunc(factory, f.params, f.body, f.attrs)


def _cases():
    for ex in EXAMPLES:
        for arch in ARCHS:
            yield pytest.param(ex, arch, id=f"{ex[1]}-{ex[3].get('dtype', 'float32')}-{arch}")


@pytest.mark.parametrize("example,arch", list(_cases()))
def test_nvrtc_compiles_every_example_kernel(example, arch):
    from tiledsl.runtime.cuda import nvrtc_cubin
    try:
        _, parts, cubin = nvrtc_cubin(_func(*example), Target.parse(f"cuda -arch={arch}"))
    except LoweringError as e:  # the CUDA passes' reach is not this file's subject: NVRTC's is
        pytest.skip(f"{example[1]} does not lower for CUDA yet: {str(e).splitlines()[0]}")
    assert cubin[:4] == b"\x7fELF"
    if find_cuobjdump() is None:
        return
    counts = opcode_counts(disassemble(cubin))
    assert sorted(counts) == sorted(name for name, _, _ in parts.launches)  # every __global__, no other
    assert all(sum(c.values()) > 0 for c in counts.values())


@needs_cuobjdump
@pytest.mark.parametrize("arch", ARCHS)
def test_sass_audit_of_the_gemm(arch):
    """float16 takes the tensor cores (HMMA), float32 the register-blocked FMA path; neither
    touches local memory (LDL / STL would mean the accumulator tile left the registers)."""
    from tiledsl.runtime.cuda import nvrtc_cubin
    target = Target.parse(f"cuda -arch={arch}")
    for dtype, want, not_want in (("float16", "HMMA", "FFMA"), ("float32", "FFMA", "HMMA")):
        _, _, cubin = nvrtc_cubin(_func("gemm", "matmul", (256, 256, 256), {"dtype": dtype}), target)
        (ops,) = opcode_counts(disassemble(cubin)).values()
        assert ops[want] > 0 and ops[not_want] == 0, (dtype, ops)
        assert ops["LDL"] == 0 and ops["STL"] == 0, (dtype, ops)


# ------------------------------------------------------------------------ the module object

IMAGE = cm.ModuleImage("k", "sm_90a", "k_kernel0 128 65536 p,p,f4,i8\nk_kernel1 32 0 -\n",
                       bytes(range(256)) * 3, "// the CUDA source", ".version 8.0 // the PTX")


def test_module_bytes_round_trip_byte_for_byte():
    data = cm.module_bytes([IMAGE])
    assert cm.parse_module_bytes(data) == [IMAGE]
    mod = cm.module_from_bytes(data)
    assert mod.kind == "tiledsl.cuda"
    assert mod.is_binary_serializable() and mod.is_runnable()
    assert cm.save_to_bytes(mod) == data
    assert mod.implements_function("k_kernel0") and mod.implements_function("k_kernel1")
    assert not mod.implements_function("k_kernel2")
    assert mod.inspect_source("cuda") == "// the CUDA source" and mod.inspect_source("") == "// the CUDA source"
    assert mod.inspect_source("ptx") == ".version 8.0 // the PTX"


def test_module_with_code_for_several_archs():
    sm80 = IMAGE.__class__("k", "sm_80", IMAGE.table.replace("65536", "32768"), b"other cubin", "// sm_80", "// ptx 80")
    data = cm.module_bytes([IMAGE, sm80])
    assert cm.parse_module_bytes(data) == [IMAGE, sm80]
    mod = cm.module_from_bytes(data)
    assert cm.save_to_bytes(mod) == data
    assert mod.inspect_source("ptx") == IMAGE.ptx and mod.inspect_source("ptx:sm_80") == "// ptx 80"
    assert mod.inspect_source("cuda:sm_80") == "// sm_80" and mod.inspect_source("ptx:sm_75") == ""
    other = IMAGE.__class__("k", "sm_80", "k_kernel0 128 0 p,p\n", b"x", "", "")
    with pytest.raises(ValueError, match="k: sm_80 has other kernels than sm_90a"):
        cm.module_from_bytes(cm.module_bytes([IMAGE, other]))


def test_module_rejects_bad_bytes_and_bad_calls():
    data = cm.module_bytes([IMAGE])
    for bad, what in ((data[:-3], "truncated"), (data + b"x", "truncated"), (b"NOTCUDA!" + data[8:], "not a tiledsl.cuda")):
        with pytest.raises(ValueError, match=what):
            cm.module_from_bytes(bad)
    f = cm.module_from_bytes(data)["k_kernel0"]
    with pytest.raises(TypeError, match=r"k: k_kernel0 takes 8 arguments \(device, grid x, y, z, 4 kernel arguments\), got 2"):
        f(0, 1)
    if not _has_gpu():
        with pytest.raises(RuntimeError, match="no CUDA driver|cuInit failed"):
            f(0, 1, 1, 1, 0, 0, 1.0, 5)


def test_library_bin_layout():
    """tvm-ffi's layout: <nbytes> <indptr> <children> then per module <kind> [<bytes>]."""
    blob = cm.library_bin([("_lib", b""), ("tiledsl.cuda", b"abc")], [[1], []])
    q = lambda *v: b"".join(int(x).to_bytes(8, "little") for x in v)  # noqa: E731
    body = q(3, 0, 1, 1) + q(1, 1) + q(4) + b"_lib" + q(12) + b"tiledsl.cuda" + q(3) + b"abc"
    assert blob == q(len(body)) + body
    assert cm.parse_library_bin(blob) == ([("_lib", b""), ("tiledsl.cuda", b"abc")], [[1], []])


# ------------------------------------------------------------------ compile, export, load

ARCH = Target.parse("cuda").arch  # the GPU's, else $TILEDSL_CUDA_ARCH, else sm_90a


@tiledsl.jit(out_idx=[-1], target="cuda -compiler=nvrtc")
def saxpy(N, block=256):
    @T.prim_func
    def main(X: T.Tensor((N,), "float32"), Y: T.Tensor((N,), "float32"), a: T.float32,
             Z: T.Tensor((N,), "float32")):
        with T.Kernel(T.ceildiv(N, block), threads=128) as bx:
            for i in T.Parallel(block):
                Z[bx * block + i] = a * X[bx * block + i] + Y[bx * block + i]
    return main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    k = saxpy(1000)
    path = tmp_path_factory.mktemp("cuda-export") / "libsaxpy.so"
    k.export_library(path)
    return k, path


def test_nvrtc_build_is_cached_and_chosen_like_the_cpu_backend(monkeypatch):
    from tiledsl.runtime import cuda
    k = saxpy(1000)
    assert k.target.backend == "nvrtc" and "cuda-nvrtc" in k.library
    again = tiledsl.compile(saxpy.get_ir(1000), out_idx=[-1], target="cuda", name="saxpy")
    assert again.library == k.library  # the same entry, found on disk
    assert cuda.cuda_compiler(Target.parse("cuda -compiler=nvcc")) == "nvcc"
    monkeypatch.setenv("TILEDSL_CUDA_COMPILER", "nvcc")
    assert cuda.cuda_compiler(Target.parse("cuda")) == "nvcc"
    monkeypatch.delenv("TILEDSL_CUDA_COMPILER")
    monkeypatch.setattr(cuda, "find_nvrtc", lambda: None)  # no NVRTC: nvcc, as before
    assert cuda.cuda_compiler(Target.parse("cuda")) == "nvcc"
    with pytest.raises(ValueError, match="unknown CUDA target option '-compiler=clang'"):
        Target.parse("cuda -compiler=clang")


def test_host_checks_are_unchanged(exported):
    k, _ = exported
    x = np.ones(1000, np.float32)
    with pytest.raises(ValueError, match="saxpy: argument 'X' expects a cuda tensor, got one on cpu:0"):
        k(x, x, 2.0)
    src = k.get_kernel_source()
    assert "__global__" in src and "TVMFFIEnvModLookupFromImports" in src


def test_export_embeds_the_module_byte_for_byte(exported):
    from tiledsl.runtime.elf import symbol_bytes
    k, path = exported
    blob = symbol_bytes(str(path), "__tvm_ffi__library_bin")
    modules, imports = cm.parse_library_bin(blob)
    assert [kind for kind, _ in modules] == ["_lib", "tiledsl.cuda"] and imports == [[1], []]
    assert cm.library_bin(modules, imports) == blob
    (image,) = cm.parse_module_bytes(modules[1][1])
    assert image.symbol == "saxpy" and image.arch == ARCH
    assert image.cubin[:4] == b"\x7fELF"
    assert image.table == "saxpy_kernel0 128 0 p,p,f4,p\n"
    assert f".target {ARCH}" in image.ptx and "saxpy_kernel0" in image.ptx
    assert image.cubin == cm.parse_module_bytes(cm.save_to_bytes(k._device_module))[0].cubin
    loaded = tvm_ffi.load_module(str(path))
    assert cm.save_to_bytes(loaded.imports[0]) == modules[1][1]


def test_export_with_code_for_more_archs(exported, tmp_path):
    from tiledsl.runtime.elf import symbol_bytes
    k, _ = exported
    path = k.export_library(tmp_path / "fat.so", archs=["sm_80", "sm_90a", ARCH])
    modules, _ = cm.parse_library_bin(symbol_bytes(str(path), "__tvm_ffi__library_bin"))
    images = cm.parse_module_bytes(modules[1][1])
    assert [i.arch for i in images] == [ARCH] + [a for a in ("sm_80", "sm_90a") if a != ARCH]
    for img in images:
        assert img.cubin[:4] == b"\x7fELF" and f".target {img.arch}" in img.ptx
        assert img.table == images[0].table
    dev = tvm_ffi.load_module(str(path)).imports[0]
    assert ".target sm_80" in dev.inspect_source("ptx:sm_80")
    assert tiledsl.load(path).metadata["target"]["arch"] == ARCH
    with pytest.raises(ValueError, match="archs= is for CUDA kernels compiled with NVRTC"):
        tiledsl.compile(saxpy.get_ir(1000), out_idx=[-1], target="cpu").export_library(tmp_path / "c.so",
                                                                                         archs=["sm_80"])


PY_CLIENT = textwrap.dedent('''
    import sys
    import numpy as np
    import tvm_ffi
    mod = tvm_ffi.load_module(sys.argv[1])
    print(mod.kind, [m.kind for m in mod.imports])
    dev = mod.imports[0]
    print(dev.implements_function("saxpy_kernel0"), dev.is_binary_serializable(), dev.is_runnable())
    print(".target sm_" in dev.inspect_source("ptx"), "__global__" in dev.inspect_source("cuda"))
    meta = mod.get_function_metadata("saxpy")
    print(meta["target"]["kind"], meta["target"]["arch"], meta["compiler"], meta["out_idx"])
    f = mod["saxpy"]
    x = np.ones(1000, np.float32)
    try:
        f(x, x, 2.0, x)
    except ValueError as e:
        print(e)
    if len(sys.argv) > 2:  # on a GPU: the kernel itself, on torch tensors
        import torch
        x, y = torch.randn(1000, device="cuda"), torch.randn(1000, device="cuda")
        z = torch.empty_like(x)
        f(x, y, 2.0, z)
        torch.cuda.synchronize()
        print("max error", float((z - (2.0 * x + y)).abs().max()))
    assert not any(m.split(".")[0] == "tiledsl" for m in sys.modules), "tiledsl was imported"
''')


def _run_client(path, tmp_path, *extra):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "-c", PY_CLIENT, str(path), *extra], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_exported_cuda_library_loads_without_tiledsl(exported, tmp_path):
    _, path = exported
    out = _run_client(path, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["library ['tiledsl.cuda']", "True True True", "True True",
                                       f"cuda {ARCH} nvrtc [3]",
                                       "saxpy: argument 'X' expects a cuda tensor, got one on cpu:0"]


CPP_CLIENT = r'''
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <cstdio>
#include <cstdlib>
namespace ffi = tvm::ffi;
struct CPUAlloc {
  void AllocData(DLTensor* t) { t->data = std::malloc(ffi::GetDataSize(*t)); }
  void FreeData(DLTensor* t) { std::free(t->data); }
};
int main(int argc, char** argv) {
  ffi::Module mod = ffi::Module::LoadFromFile(argv[1]);
  ffi::Module dev = mod->imports()[0].cast<ffi::Module>();
  std::printf("%s imports %s\n", mod->kind(), dev->kind());
  std::printf("kernel found: %d\n", (int)dev->ImplementsFunction("saxpy_kernel0"));
  std::printf("has metadata: %d\n", (int)mod->GetFunctionMetadata("saxpy").has_value());
  ffi::Tensor x = ffi::Tensor::FromNDAlloc(CPUAlloc(), {1000}, DLDataType{kDLFloat, 32, 1}, DLDevice{kDLCPU, 0});
  try {
    mod->GetFunction("saxpy").value()(x, x, 2.0, x);
  } catch (const ffi::Error& e) {
    std::printf("%s: %s\n", e.kind().c_str(), e.message().c_str());
  }
  return 0;
}
'''


def test_cpp_program_loads_the_exported_cuda_library(exported, tmp_path):
    _, path = exported
    (tmp_path / "client.cc").write_text(CPP_CLIENT)
    libdir = os.path.dirname(libinfo.find_libtvm_ffi())
    build = subprocess.run([CXX, "-std=c++17", "-O0", "client.cc", "-o", "client", f"-I{libinfo.find_include_path()}",
                            f"-I{libinfo.find_dlpack_include_path()}", f"-L{libdir}", "-ltvm_ffi",
                            f"-Wl,-rpath,{libdir}"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    out = subprocess.run([str(tmp_path / "client"), str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["library imports tiledsl.cuda", "kernel found: 1", "has metadata: 1",
                                       "ValueError: saxpy: argument 'X' expects a cuda tensor, got one on cpu:0"]


def test_tiledsl_load_round_trips_a_cuda_export(exported):
    k, path = exported
    loaded = tiledsl.load(path)
    assert loaded.target.kind == "cuda" and loaded.target.arch == ARCH and loaded.out_idx == [3]
    assert loaded.cache_key == k.cache_key and loaded.metadata["compiler"] == "nvrtc"
    assert "saxpy_kernel0" in loaded.get_kernel_source()
    with pytest.raises(ValueError, match="saxpy: argument 'X' expects a cuda tensor"):
        loaded(np.ones(1000, np.float32), np.ones(1000, np.float32), 2.0)


# ---------------------------------------------------------------------------- on a GPU

@pytest.mark.cuda
@pytest.mark.skipif(not _has_gpu(), reason="no CUDA GPU (with torch)")
def test_gpu_runs_the_exported_library_without_tiledsl(exported, tmp_path):
    _, path = exported
    out = _run_client(path, tmp_path, "run")
    assert out.returncode == 0, out.stderr
    err = float(out.stdout.splitlines()[-1].split()[-1])
    assert err < 1e-5


@pytest.mark.cuda
@pytest.mark.skipif(not _has_gpu(), reason="no CUDA GPU (with torch)")
def test_gpu_nvrtc_kernels_and_tiledsl_load(exported):
    import torch
    k, path = exported
    x, y = torch.randn(1000, device="cuda"), torch.randn(1000, device="cuda")
    torch.testing.assert_close(k(x, y, 2.0), 2.0 * x + y)
    torch.testing.assert_close(tiledsl.load(path)(x, y, 2.0), 2.0 * x + y)
    gemm = load_example("gemm").matmul
    a = torch.randn(512, 256, device="cuda")
    b = torch.randn(256, 384, device="cuda")
    for compiler in ("nvrtc", "nvcc") if find_nvcc() else ("nvrtc",):
        c = tiledsl.compile(gemm.get_ir(512, 384, 256), out_idx=[-1], target=f"cuda -compiler={compiler}")(a, b)
        torch.testing.assert_close(c, torch.relu(a @ b), rtol=1e-4, atol=1e-3)
    # over 48 KiB of shared memory: the module raises the limit before the first launch
    big = tiledsl.compile(gemm.get_ir(512, 512, 512, block_M=128, block_N=128, block_K=64), out_idx=[-1],
                          target="cuda -compiler=nvrtc")
    a = torch.randn(512, 512, device="cuda")
    torch.testing.assert_close(big(a, a), torch.relu(a @ a), rtol=1e-4, atol=1e-3)


@pytest.mark.skipif(find_nvcc() is None, reason="no nvcc")
def test_nvcc_fallback_carries_metadata_too(tmp_path):
    k = tiledsl.compile(saxpy.get_ir(1000), out_idx=[-1], target="cuda -compiler=nvcc", name="saxpy")
    assert k.target.backend == "nvcc" and "kernels/cuda/" in k.library
    loaded = tiledsl.load(k.export_library(tmp_path / "nvcc.so"))
    assert loaded.metadata["target"]["backend"] == "nvcc" and loaded.out_idx == [3]
    with pytest.raises(ValueError, match="saxpy: argument 'X' expects a cuda tensor"):
        loaded(np.ones(1000, np.float32), np.ones(1000, np.float32), 2.0)

// tiledsl's CUDA module: a tvm::ffi::ModuleObj holding one kernel's cubin.
//
// Built once per machine (runtime/cuda_module.py) into a shared library that the JIT loads, and
// as an object file that every exported CUDA library links in, so such a library restores its
// module through `ffi.Module.load_from_bytes.tiledsl.cuda` in a process that never imported
// tiledsl. It links against the one libtvm_ffi and reaches the GPU through the driver API,
// dlopen'ed on first launch: it builds, loads, serialises and lists its functions on a machine
// without a GPU or a CUDA toolkit.
//
// Each __global__ function is a module function taking (device id, grid x, y, z, kernel
// arguments...). The generated host code checks the tensors and the grid and calls it; here the
// cubin is loaded per device on first use, the dynamic shared-memory limit raised where a block
// needs more than the default 48 KiB, and the kernel launched on the caller's stream
// (TVMFFIEnvGetStream).
//
// Serialised form (SaveToBytes; runtime/cuda_module.py writes the same bytes):
//   "TDSLCU01" <symbol> then per arch <arch> <kernel table> <cubin> <CUDA source> <PTX>
// (a device runs its own arch's cubin, else the newest of its major version below it); each field <u64 little-endian size><bytes>; the kernel table has one line per __global__
// function: "<name> <threads> <shared bytes> <argument codes>", the codes comma-separated:
// p (pointer), i1 i2 i4 i8 (integers, by width), f4 f8 (floats); "-" when there are none.
#include <dlfcn.h>
#include <tvm/ffi/cast.h>
#include <tvm/ffi/extra/c_env_api.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <array>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace ffi = tvm::ffi;

// TVM_FFI_CHECK would prefix "Check failed: (...)": these messages are for users.
#define TDSL_REQUIRE(cond, kind) \
  if (!(cond)) TVM_FFI_THROW(kind)

// The driver API, declared here so no CUDA header is needed to build this file.
using CUresult = int;
using CUdevice = int;
using CUcontext = void*;
using CUmodule = void*;
using CUfunction = void*;
constexpr int kMaxDynamicSharedBytes = 8;  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
constexpr int kDefaultSharedLimit = 48 * 1024;
constexpr int kComputeCapabilityMajor = 75;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
constexpr int kComputeCapabilityMinor = 76;
constexpr int kMaxDevices = 64;

struct Driver {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGet)(CUdevice*, int);
  CUresult (*cuDeviceGetAttribute)(int*, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext*, CUdevice);
  CUresult (*cuCtxSetCurrent)(CUcontext);
  CUresult (*cuCtxGetCurrent)(CUcontext*);
  CUresult (*cuModuleLoadData)(CUmodule*, const void*);
  CUresult (*cuModuleGetFunction)(CUfunction*, CUmodule, const char*);
  CUresult (*cuFuncSetAttribute)(CUfunction, int, int);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, void*, void**, void**);
  CUresult (*cuGetErrorString)(CUresult, const char**);

  std::string Error(CUresult rc) const {
    const char* s = nullptr;
    if (cuGetErrorString != nullptr) cuGetErrorString(rc, &s);
    return s ? s : "CUDA error " + std::to_string(rc);
  }
};

// The driver, or the reason there is none (no libcuda: no GPU driver on this machine).
const Driver& GetDriver() {
  static Driver d{};
  static std::string failure;
  static std::once_flag once;
  std::call_once(once, [] {
    void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (h == nullptr) h = dlopen("libcuda.so", RTLD_NOW | RTLD_GLOBAL);
    if (h == nullptr) {
      failure = "no CUDA driver (libcuda.so.1) on this machine";
      return;
    }
    bool ok = true;
    auto get = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      ok = ok && fn != nullptr;
    };
    get(d.cuInit, "cuInit");
    get(d.cuDeviceGet, "cuDeviceGet");
    get(d.cuDeviceGetAttribute, "cuDeviceGetAttribute");
    get(d.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
    get(d.cuCtxSetCurrent, "cuCtxSetCurrent");
    get(d.cuCtxGetCurrent, "cuCtxGetCurrent");
    get(d.cuModuleLoadData, "cuModuleLoadData");
    get(d.cuModuleGetFunction, "cuModuleGetFunction");
    get(d.cuFuncSetAttribute, "cuFuncSetAttribute");
    get(d.cuLaunchKernel, "cuLaunchKernel");
    get(d.cuGetErrorString, "cuGetErrorString");
    if (!ok) {
      failure = "the CUDA driver lacks a function tiledsl needs";
      return;
    }
    CUresult rc = d.cuInit(0);
    if (rc != 0) failure = "cuInit failed: " + d.Error(rc);
  });
  if (!failure.empty()) TVM_FFI_THROW(RuntimeError) << failure;
  return d;
}

struct Kernel {
  std::string name;
  int threads = 0;
  int shared_bytes = 0;
  std::vector<std::string> args;  // argument codes
};

void PutField(std::string* out, const std::string& s) {
  uint64_t n = s.size();
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out->append(s);
}

std::string TakeField(const std::string& in, size_t* pos) {
  TDSL_REQUIRE(*pos + 8 <= in.size(), ValueError) << "tiledsl.cuda module bytes are truncated";
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(in[*pos + i])) << (8 * i);
  *pos += 8;
  TDSL_REQUIRE(n <= in.size() - *pos, ValueError) << "tiledsl.cuda module bytes are truncated";
  std::string s = in.substr(*pos, n);
  *pos += n;
  return s;
}

constexpr const char* kMagic = "TDSLCU01";
constexpr const char* kKind = "tiledsl.cuda";

// One arch's code: what a device of that arch runs.
struct Image {
  std::string arch, table, cubin, source, ptx;
  std::vector<Kernel> kernels;
};

std::vector<Kernel> ParseTable(const std::string& table) {
  std::vector<Kernel> out;
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream f(line);
    Kernel k;
    std::string codes;
    f >> k.name >> k.threads >> k.shared_bytes >> codes;
    std::istringstream c(codes);
    for (std::string code; std::getline(c, code, ',');) {
      if (code != "-") k.args.push_back(code);
    }
    out.push_back(std::move(k));
  }
  return out;
}

// "sm_90a" -> 90 (major * 10 + minor), and whether it is arch-specific (a / f: runs only there).
int ArchNumber(const std::string& arch, bool* specific) {
  std::string digits;
  for (char c : arch.substr(3)) {
    if (c >= '0' && c <= '9') digits.push_back(c);
  }
  *specific = !arch.empty() && (arch.back() == 'a' || arch.back() == 'f');
  return digits.empty() ? 0 : std::stoi(digits);
}

class CudaModuleObj : public ffi::ModuleObj {
 public:
  const char* kind() const final { return kKind; }
  int GetPropertyMask() const final { return ffi::Module::kBinarySerializable | ffi::Module::kRunnable; }

  // "TDSLCU01" <symbol> then, per arch, <arch> <kernel table> <cubin> <CUDA source> <PTX>.
  static ffi::Module FromBytes(const std::string& bytes) {
    TDSL_REQUIRE(bytes.compare(0, 8, kMagic) == 0, ValueError)
        << "not a tiledsl.cuda module (or one from another tiledsl version)";
    auto m = ffi::make_object<CudaModuleObj>();
    size_t pos = 8;
    m->symbol_ = TakeField(bytes, &pos);
    while (pos < bytes.size()) {
      Image img;
      for (std::string* f : {&img.arch, &img.table, &img.cubin, &img.source, &img.ptx}) *f = TakeField(bytes, &pos);
      img.kernels = ParseTable(img.table);
      m->images_.push_back(std::move(img));
    }
    TDSL_REQUIRE(!m->images_.empty(), ValueError) << "tiledsl.cuda module bytes hold no code";
    for (const Image& img : m->images_) {  // the host code calls every arch's kernels alike
      TDSL_REQUIRE(img.kernels.size() == m->images_[0].kernels.size(), ValueError)
          << m->symbol_ << ": " << img.arch << " has other kernels than " << m->images_[0].arch;
      for (size_t k = 0; k < img.kernels.size(); ++k) {
        TDSL_REQUIRE(img.kernels[k].name == m->images_[0].kernels[k].name &&
                         img.kernels[k].args == m->images_[0].kernels[k].args, ValueError)
            << m->symbol_ << ": " << img.arch << " has other kernels than " << m->images_[0].arch;
      }
    }
    return ffi::Module(m);
  }

  ffi::Bytes SaveToBytes() const final {
    std::string out(kMagic);
    PutField(&out, symbol_);
    for (const Image& img : images_) {
      for (const std::string* f : {&img.arch, &img.table, &img.cubin, &img.source, &img.ptx}) PutField(&out, *f);
    }
    return ffi::Bytes(out);
  }

  // "cuda" (or "") and "ptx": the first arch's text, or "ptx:sm_80" for another arch's.
  ffi::String InspectSource(const ffi::String& format) const final {
    std::string f = format, arch = images_[0].arch;
    size_t colon = f.find(':');
    if (colon != std::string::npos) {
      arch = f.substr(colon + 1);
      f = f.substr(0, colon);
    }
    for (const Image& img : images_) {
      if (img.arch != arch) continue;
      if (f == "ptx") return img.ptx;
      if (f.empty() || f == "cu" || f == "cuda") return img.source;
    }
    return ffi::String();
  }

  ffi::Optional<ffi::Function> GetFunction(const ffi::String& name) final {
    ffi::Module self = ffi::GetRef<ffi::Module>(this);  // a function keeps its module alive
    const std::vector<Kernel>& kernels = images_[0].kernels;
    for (size_t i = 0; i < kernels.size(); ++i) {
      if (kernels[i].name == name.operator std::string()) {
        return ffi::Function::FromPacked([self, this, i](ffi::PackedArgs args, ffi::Any* rv) {
          Launch(i, args);
        });
      }
    }
    return std::nullopt;
  }

 private:
  // The code for a device of compute capability `cc` (major * 10 + minor): its own arch, else
  // the newest portable cubin of the same major version not newer than it (cubins run on later
  // minors of their major; sm_90a-style ones only on their own).
  int PickImage(int cc) const {
    int best = -1, best_number = -1;
    for (size_t i = 0; i < images_.size(); ++i) {
      bool specific;
      int n = ArchNumber(images_[i].arch, &specific);
      if (n == cc) return static_cast<int>(i);
      if (!specific && n / 10 == cc / 10 && n < cc && n > best_number) {
        best = static_cast<int>(i);
        best_number = n;
      }
    }
    return best;
  }

  std::string Archs() const {
    std::string out;
    for (const Image& img : images_) out += (out.empty() ? "" : ", ") + img.arch;
    return out;
  }

  // The device's image and the kernel's function there, loading the cubin on first use. The
  // device's primary context (the one the CUDA runtime, hence torch and cupy, uses) is made
  // current, as the nvcc build's cudaSetDevice does: the cubin is loaded into it and launches
  // run in it.
  CUfunction Resolve(const Driver& d, size_t i, int dev, const Kernel** kernel) {
    std::lock_guard<std::mutex> lock(mutex_);
    PerDevice& pd = devices_[dev];
    CUresult rc = 0;
    if (pd.context == nullptr) {
      CUdevice device;
      int major = 0, minor = 0;
      rc = d.cuDeviceGet(&device, dev);
      if (rc == 0) rc = d.cuDeviceGetAttribute(&major, kComputeCapabilityMajor, device);
      if (rc == 0) rc = d.cuDeviceGetAttribute(&minor, kComputeCapabilityMinor, device);
      if (rc == 0) rc = d.cuDevicePrimaryCtxRetain(&pd.context, device);
      TDSL_REQUIRE(rc == 0, RuntimeError) << symbol_ << ": cannot use CUDA device " << dev << ": " << d.Error(rc);
      pd.cc = major * 10 + minor;
      pd.image = PickImage(pd.cc);
    }
    TDSL_REQUIRE(pd.image >= 0, RuntimeError) << symbol_ << ": CUDA device " << dev << " is sm_" << pd.cc
                                             << "; this kernel was compiled for " << Archs() << " only";
    CUcontext current = nullptr;
    d.cuCtxGetCurrent(&current);
    if (current != pd.context) {
      rc = d.cuCtxSetCurrent(pd.context);
      TDSL_REQUIRE(rc == 0, RuntimeError) << symbol_ << ": cannot use CUDA device " << dev << ": " << d.Error(rc);
    }
    const Image& img = images_[pd.image];
    if (pd.functions.empty()) {
      rc = d.cuModuleLoadData(&pd.module, img.cubin.data());
      TDSL_REQUIRE(rc == 0, RuntimeError) << symbol_ << ": cannot load the kernel's " << img.arch
                                          << " code on CUDA device " << dev << ": " << d.Error(rc);
      pd.functions.resize(img.kernels.size());
      for (size_t k = 0; k < img.kernels.size(); ++k) {
        const Kernel& kern = img.kernels[k];
        rc = d.cuModuleGetFunction(&pd.functions[k], pd.module, kern.name.c_str());
        TDSL_REQUIRE(rc == 0, RuntimeError) << symbol_ << ": " << kern.name << " is not in the cubin";
        if (kern.shared_bytes > kDefaultSharedLimit) {
          rc = d.cuFuncSetAttribute(pd.functions[k], kMaxDynamicSharedBytes, kern.shared_bytes);
          TDSL_REQUIRE(rc == 0, RuntimeError) << symbol_ << ": the block needs " << kern.shared_bytes
                                              << " bytes of shared memory: " << d.Error(rc);
        }
      }
    }
    *kernel = &img.kernels[i];
    return pd.functions[i];
  }

  void Launch(size_t i, ffi::PackedArgs args) {
    const Kernel& first = images_[0].kernels[i];
    TDSL_REQUIRE(args.size() == static_cast<int>(4 + first.args.size()), TypeError)
        << symbol_ << ": " << first.name << " takes " << 4 + first.args.size()
        << " arguments (device, grid x, y, z, " << first.args.size() << " kernel arguments), got " << args.size();
    int dev = args[0].cast<int>();
    TDSL_REQUIRE(dev >= 0 && dev < kMaxDevices, ValueError) << symbol_ << ": no CUDA device " << dev;
    const Driver& d = GetDriver();
    const Kernel* kernel = nullptr;
    CUfunction fn = Resolve(d, i, dev, &kernel);
    const Kernel& k = *kernel;
    // Each argument's bytes, at the width the __global__ function declares.
    std::vector<std::array<unsigned char, 8>> storage(k.args.size());
    std::vector<void*> params(k.args.size());
    for (size_t a = 0; a < k.args.size(); ++a) {
      const std::string& c = k.args[a];
      unsigned char* p = storage[a].data();
      if (c == "p") {
        void* v = args[4 + a].cast<void*>();
        std::memcpy(p, &v, sizeof v);
      } else if (c == "f4") {
        float v = static_cast<float>(args[4 + a].cast<double>());
        std::memcpy(p, &v, 4);
      } else if (c == "f8") {
        double v = args[4 + a].cast<double>();
        std::memcpy(p, &v, 8);
      } else {
        int64_t v = args[4 + a].cast<int64_t>();
        std::memcpy(p, &v, c[1] - '0');  // little-endian: the low bytes are the narrow integer
      }
      params[a] = p;
    }
    void* stream = TVMFFIEnvGetStream(kDLCUDA, dev);
    CUresult rc = d.cuLaunchKernel(fn, static_cast<unsigned>(args[1].cast<int64_t>()),
                                   static_cast<unsigned>(args[2].cast<int64_t>()),
                                   static_cast<unsigned>(args[3].cast<int64_t>()), k.threads, 1, 1,
                                   k.shared_bytes, stream, params.data(), nullptr);
    TDSL_REQUIRE(rc == 0, RuntimeError) << symbol_ << ": CUDA launch failed: " << d.Error(rc);
  }

  struct PerDevice {
    CUcontext context = nullptr;
    int cc = 0;      // compute capability, major * 10 + minor
    int image = -1;  // which of images_ this device runs
    CUmodule module = nullptr;
    std::vector<CUfunction> functions;
  };

  std::string symbol_;
  std::vector<Image> images_;
  std::mutex mutex_;
  std::array<PerDevice, kMaxDevices> devices_;
};

// Registered by whichever copy is loaded first (tiledsl's runtime library or an exported
// kernel's embedded one): both are this file, and a second registration would be an error.
void RegisterOnce(const char* name, ffi::Function f) {
  if (!ffi::Function::GetGlobal(name).has_value()) ffi::Function::SetGlobal(name, f);
}

struct Registration {
  Registration() {
    RegisterOnce("ffi.Module.load_from_bytes.tiledsl.cuda", ffi::Function::FromTyped([](const ffi::Bytes& b) {
                   return CudaModuleObj::FromBytes(std::string(b.data(), b.size()));
                 }));
    RegisterOnce("tiledsl.cuda.SaveToBytes",
                 ffi::Function::FromTyped([](const ffi::Module& m) { return m->SaveToBytes(); }));
  }
} registration;

}  // namespace

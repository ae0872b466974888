/* tiledsl CUDA emulation: compiles a generated .cu kernel with the host C++ compiler and runs
   each block's threads as OS threads with a real barrier, so the index math, the thread
   partitioning and the barriers of the CUDA code can be tested on a machine with no GPU.
   Slow (a thread per CUDA thread), only for tests. Included with -include before the source. */
#pragma once
#include <barrier>
#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <math.h>
#include <memory>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
static thread_local dim3 threadIdx, blockIdx;
static thread_local std::barrier<>* tdsl_emu_barrier;
static thread_local unsigned char* tdsl_emu_smem;
/* warp shuffles: each lane publishes its value in the block's exchange slots, and its warp
   (32 threads, fewer in a partial last warp) meets at a barrier of its own before and after */
static thread_local std::barrier<>* tdsl_emu_warp;
static thread_local uint64_t* tdsl_emu_lanes;
static thread_local unsigned tdsl_emu_nthreads;

template <class U> static inline U tdsl_emu_shfl_xor(U v, int offset) {
  unsigned t = threadIdx.x, src = t ^ (unsigned)offset;
  tdsl_emu_lanes[t] = (uint64_t)v;
  tdsl_emu_warp->arrive_and_wait();
  U out = src < tdsl_emu_nthreads ? (U)tdsl_emu_lanes[src] : v;
  tdsl_emu_warp->arrive_and_wait();
  return out;
}

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define TDSL_DECLARE_SMEM unsigned char* tdsl_smem = tdsl_emu_smem

static inline void __syncthreads() { tdsl_emu_barrier->arrive_and_wait(); }

template <class Kernel, class... Args>
static void tdsl_emu_launch(Kernel kernel, dim3 grid, dim3 block, size_t smem, Args... args) {
  std::vector<unsigned char> memory(smem + 64);
  unsigned n = block.x;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        /* fresh shared memory per block, filled with a pattern so reads of unwritten data show */
        memset(memory.data(), 0x7f, memory.size());
        std::barrier<> bar(n);
        std::vector<std::unique_ptr<std::barrier<>>> warps;
        for (unsigned w = 0; w * 32 < n; ++w)
          warps.emplace_back(new std::barrier<>(n - w * 32 < 32 ? n - w * 32 : 32));
        std::vector<uint64_t> lanes(n);
        std::vector<std::thread> threads;
        threads.reserve(n);
        for (unsigned t = 0; t < n; ++t)
          threads.emplace_back([&, t] {
            threadIdx = dim3(t, 0, 0);
            blockIdx = dim3(x, y, z);
            tdsl_emu_barrier = &bar;
            tdsl_emu_smem = memory.data();
            tdsl_emu_warp = warps[t / 32].get();
            tdsl_emu_lanes = lanes.data();
            tdsl_emu_nthreads = n;
            kernel(args...);
          });
        for (auto& th : threads) th.join();
      }
}

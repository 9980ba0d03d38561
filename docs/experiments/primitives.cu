// Not part of the build: a standalone measurement (nvcc -O2 -arch=sm_90a -std=c++17 primitives.cu -o primitives).
// What the building blocks of the long-row select's phases cost inside a kernel, in SM cycles (clock64), on the
// single long row's launch shape: one cluster of 16 blocks of 512 threads. Each primitive runs R times in a
// dependent chain (or back to back, for the barriers and atomics) between two clock reads by every thread; the
// figure is thread 0's cycles / R, median over the 16 blocks. Primitives:
//   syncthreads        __syncthreads, 16 warps
//   cluster relaxed    barrier.cluster.arrive.relaxed + wait (what topk_long's tl_sync does, after its fence)
//   cluster default    barrier.cluster.arrive (release) + wait (acquire): a GPU-wide fence on sm_90
//   dsmem 1 load       warp 0 alone: one distributed-shared-memory load a lane (lane l reads block l % 16),
//                      each address depending on the last value: the round trip
//   dsmem 16 loads     warp 0 alone: 16 loads a lane issued together (one per block, as tl_merge), summed, the
//                      next 16 depending on the sum
//   smem load          warp 0 alone: a dependent chain of local shared-memory loads
//   match_any          every warp: __match_any_sync on 8 distinct values a warp, chained
//   atomics, 1 address every thread: atomicAdd on one shared counter (the result unused)
//   atomics, 8 addresses  every thread: lanes l and l + 8 ... share counter l % 8
//   atomics, distinct  every thread its own counter
//   redux              every warp: __reduce_add_sync chained
//   shfl               every warp: __shfl_xor_sync chained
// H100 80GB HBM3 (2026-11-28, SM clock 1980 MHz): syncthreads 52, cluster relaxed 105, cluster default 1389,
// dsmem 1 load 298, dsmem 16 loads 446, smem load 44, match_any 232, atomics 23 whatever the address count (1, 8 or
// 32 addresses a warp), redux 56, shfl 39 cycles.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

namespace cg = cooperative_groups;

constexpr int kNT = 512, kCL = 16, kR = 64, kModes = 12;
static const char* kNames[kModes] = {"syncthreads",      "cluster relaxed", "cluster default",    "dsmem 1 load",
                                     "dsmem 16 loads",   "smem load",       "match_any",          "atomics, 1 address",
                                     "atomics, 8 addresses", "atomics, distinct", "redux",         "shfl"};

__global__ void __cluster_dims__(kCL, 1, 1) __launch_bounds__(kNT) prim(int mode, long long* cycles, unsigned* sink) {
  __shared__ unsigned sh[1024];
  cg::cluster_group cluster = cg::this_cluster();
  const unsigned rank = cluster.block_rank();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int i = tid; i < 1024; i += kNT) sh[i] = (unsigned)(i & 1);   // every value 0 or 1: chained addresses stay in range
  cluster.sync();
  unsigned v = (unsigned)lane & 1u;
  long long t0 = 0, t1 = 0;
  asm volatile("bar.sync 0;" ::: "memory");
  t0 = clock64();
  switch (mode) {
    case 0:
      for (int r = 0; r < kR; ++r) __syncthreads();
      break;
    case 1:
      for (int r = 0; r < kR; ++r) {
        asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
        asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
      }
      break;
    case 2:
      for (int r = 0; r < kR; ++r) {
        asm volatile("barrier.cluster.arrive.aligned;" ::: "memory");
        asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
      }
      break;
    case 3:
      if (warp == 0) {
        const unsigned* peer = cluster.map_shared_rank(sh, (lane + (int)rank) % kCL);
        for (int r = 0; r < kR; ++r) v = peer[lane * 2 + v];
      }
      break;
    case 4:
      if (warp == 0) {
        for (int r = 0; r < kR; ++r) {
          unsigned q[kCL];
#pragma unroll
          for (int c = 0; c < kCL; ++c) q[c] = cluster.map_shared_rank(sh, c)[lane * 2 + (v & 1u)];
          unsigned s = 0;
#pragma unroll
          for (int c = 0; c < kCL; ++c) s += q[c];
          v = s;
        }
      }
      break;
    case 5:
      if (warp == 0)
        for (int r = 0; r < kR; ++r) v = sh[lane * 2 + v];
      break;
    case 6:
      for (int r = 0; r < kR; ++r) v = __match_any_sync(0xffffffffu, (unsigned)(lane & 7) + (v & 1u)) & 1u;
      break;
    case 7:
      for (int r = 0; r < kR; ++r) atomicAdd(&sh[512], 1u);
      break;
    case 8:
      for (int r = 0; r < kR; ++r) atomicAdd(&sh[512 + (lane & 7)], 1u);
      break;
    case 9:
      for (int r = 0; r < kR; ++r) atomicAdd(&sh[tid], 1u);
      break;
    case 10:
      for (int r = 0; r < kR; ++r) v = __reduce_add_sync(0xffffffffu, v) & 1u;
      break;
    default:
      for (int r = 0; r < kR; ++r) v = __shfl_xor_sync(0xffffffffu, v, 1) + 1u;
      break;
  }
  asm volatile("bar.sync 0;" ::: "memory");   // the slowest warp's work is inside the interval
  t1 = clock64();
  if (v == 0x12345u) *sink = v;
  if (tid == 0) cycles[rank] = t1 - t0;
  cluster.sync();   // no block leaves while another may read its shared memory
}

int main() {
  long long* d;
  unsigned* sink;
  cudaMalloc(&d, kCL * sizeof(long long));
  cudaMalloc(&sink, 4);
  int clock_khz = 0;
  cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0);
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  printf("%s, SM clock attribute %.0f MHz; cycles a primitive (median over 16 blocks of %d repeats)\n", prop.name,
         clock_khz / 1e3, kR);
  // A cluster of 16 is a non-portable size: the kernel must allow it, or every launch fails.
  cudaFuncSetAttribute(prim, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  for (int mode = 0; mode < kModes; ++mode) {
    std::vector<double> per;
    for (int rep = 0; rep < 5; ++rep) {
      prim<<<kCL, kNT>>>(mode, d, sink);
      const cudaError_t le = cudaGetLastError();
      if (le != cudaSuccess) {
        printf("launch failed: %s\n", cudaGetErrorString(le));
        return 1;
      }
      std::vector<long long> h(kCL);
      cudaMemcpy(h.data(), d, sizeof(long long) * kCL, cudaMemcpyDeviceToHost);
      std::sort(h.begin(), h.end());
      if (rep > 0) per.push_back((double)h[kCL / 2] / kR);   // the first launch warms the code
    }
    std::sort(per.begin(), per.end());
    printf("  %-22s %8.1f cycles\n", kNames[mode], per[per.size() / 2]);
  }
  const cudaError_t e = cudaDeviceSynchronize();
  printf("%s\n", e == cudaSuccess ? "no error" : cudaGetErrorString(e));
  return e == cudaSuccess ? 0 : 1;
}

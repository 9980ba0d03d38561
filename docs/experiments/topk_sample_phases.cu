// Not part of the build: the phase harness of the library's sample-threshold select (kernel_src/topk_sample.cu,
// included as it is, with its DSV4_TS_STAMP hook defined here). Build on the GPU machine from the repository root:
//   nvcc -O3 -std=c++17 -arch=sm_90a -Ikernel_src docs/experiments/topk_sample_phases.cu -o /tmp/tsp
// One row of 131072 floats, one cluster of 16 blocks of 512 threads with the plan dsv4_topk_select gives that row on
// an H100 or H200 (slice 8192, the whole slice cached, 32-bit keys, 8192 candidates, 227 KB of shared memory).
// Prints, for random (uniform), bell, quarter-valued and outlier rows (the last two take the kernel's fallback from
// the sample and after the copy) at k = 512 and 1024: whether every slot matches a host sort, the time a
// call as back-to-back calls in a CUDA graph, and thread 0's clock at each phase's end (cycles from the row's start,
// the mean over the 16 blocks and the latest block), read from one call after the timing. Then the same row twice
// in one launch (two rows, row stride 0, one cluster): the second row's phases run on code and data the first
// brought in, so the difference says what the first touch costs. `tsp once [G]`: each case (of generator G alone)
// checked with one call, nothing timed (for compute-sanitizer).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../experiments/time_graph.cuh"

constexpr int kStamps = 11, kBlocks = 16;
__device__ long long g_stamp[2][kBlocks][kStamps];   // by row (0 or 1), block, phase
__device__ __forceinline__ void ts_stamp(long long row, int i) {
  if (threadIdx.x == 0) g_stamp[row & 1][blockIdx.x % kBlocks][i] = clock64();
}
#define DSV4_TS_STAMP(i) ts_stamp(row, i)   // `row`: the kernel's row loop variable where the hook sits
#include "topk_sample.cu"

static unsigned okey(float f) {   // the order key: larger float -> larger key, NaN lowest, -0 == +0
  unsigned u;
  memcpy(&u, &f, 4);
  if (f != f) return 0u;
  if (f == 0.0f) u = 0u;
  return (u >> 31) ? ~u : (u | 0x80000000u);
}

int main(int argc, char** argv) {
  const bool once = argc > 1 && !strcmp(argv[1], "once");   // one call a case, no timing (for compute-sanitizer)
  const int only = argc > 2 ? atoi(argv[2]) : -1;             // `tsp once G`: generator G alone
  const int cols = 131072, slice = 8192, dense = 8192, cap = 8192, wide = 1;
  const unsigned smem = 232448;
  std::vector<float> h(cols);
  uint64_t s = 12345;
  auto rnd = [&] { s = s * 6364136223846793005ull + 1442695040888963407ull; return (double)(s >> 11) / 9007199254740992.0; };
  float *row, *v;
  int* idx;
  cudaMalloc(&row, cols * 4);
  cudaMalloc(&v, 4096 * 4);
  cudaMalloc(&idx, 4096 * 4);
  cudaStream_t st;
  cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  static const char* gen_name[4] = {"random", "bell  ", "quarter", "outlier"};
  for (int gen = 0; gen < 4; ++gen) {
    if (only >= 0 && gen != only) continue;
    for (int c = 0; c < cols; ++c) {
      if (gen == 0) {
        h[c] = (float)((rnd() - 0.5) * 200.0);
      } else if (gen == 1) {
        double a = 0;
        for (int i = 0; i < 4; ++i) a += rnd() - 0.5;
        h[c] = (float)a * 3.46f;
      } else if (gen == 2) {   // ~160 copies a value: the fallback from the sample
        h[c] = (float)std::floor((rnd() - 0.5) * 800.0) * 0.25f;
      } else {   // one 3e38 among values below 1: every other candidate in the lowest bucket, the fallback after the copy
        h[c] = c == 777 ? 3e38f : (float)rnd();
      }
    }
    cudaMemcpy(row, h.data(), cols * 4, cudaMemcpyHostToDevice);
    std::vector<int> order(cols);
    for (int c = 0; c < cols; ++c) order[c] = c;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return okey(h[a]) > okey(h[b]); });
    for (int k : {512, 1024}) {
      long long rows = 1, stride = cols;
      auto launch = [&] {
        cudaLaunchConfig_t cfg = {};
        cudaLaunchAttribute attr;
        attr.id = cudaLaunchAttributeClusterDimension;
        attr.val.clusterDim.x = kBlocks, attr.val.clusterDim.y = 1, attr.val.clusterDim.z = 1;
        cfg.gridDim = dim3(kBlocks), cfg.blockDim = dim3(dsv4::kTsThreads), cfg.dynamicSmemBytes = smem;
        cfg.stream = st, cfg.attrs = &attr, cfg.numAttrs = 1;
        const float* sc = row;
        if (k == 512)
          cudaLaunchKernelEx(&cfg, dsv4::topk_sample<512>, sc, rows, cols, stride, k, v, idx, slice, dense, cap, wide);
        else
          cudaLaunchKernelEx(&cfg, dsv4::topk_sample<1024>, sc, rows, cols, stride, k, v, idx, slice, dense, cap, wide);
      };
      for (auto f : {(const void*)dsv4::topk_sample<512>, (const void*)dsv4::topk_sample<1024>}) {
        cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        cudaFuncSetAttribute(f, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
      }
      cudaMemset(idx, 0xff, 4096 * 4);
      launch();
      std::vector<int> gi(k);
      std::vector<float> gv(k);
      cudaStreamSynchronize(st);
      cudaMemcpy(gi.data(), idx, k * 4, cudaMemcpyDeviceToHost);
      cudaMemcpy(gv.data(), v, k * 4, cudaMemcpyDeviceToHost);
      int bad = 0;
      for (int j = 0; j < k; ++j) bad += gi[j] != order[j] || memcmp(&gv[j], &h[order[j]], 4) != 0;
      for (int twice = 0; twice < 2; ++twice) {
        rows = twice ? 2 : 1, stride = twice ? 0 : cols;
        const float t = once ? 0.0f : time_graph(st, launch);
        cudaMemset(idx, 0xff, 4096 * 4);
        long long zero[2][kBlocks][kStamps] = {};
        cudaMemcpyToSymbol(g_stamp, zero, sizeof zero);
        launch();
        cudaStreamSynchronize(st);
        long long stamp[2][kBlocks][kStamps];
        cudaMemcpyFromSymbol(stamp, g_stamp, sizeof stamp);
        if (twice) {   // the second row's slots must equal the first's
          std::vector<int> gi2(2 * k);
          cudaMemcpy(gi2.data(), idx, 2 * k * 4, cudaMemcpyDeviceToHost);
          for (int j = 0; j < k; ++j) bad += gi2[k + j] != order[j];
        }
        printf("%s k=%4d rows=%d (stride %lld): %d slots wrong, %.2f us a call (graph), %s\n", gen_name[gen],
               k, (int)rows, stride, bad, t, cudaGetErrorString(cudaGetLastError()));
        // Stamp 10 (the threshold's first level) sits between stamps 1 and 2.
        static const int seq[kStamps - 1] = {1, 10, 2, 3, 4, 5, 6, 7, 8, 9};
        static const char* pn[kStamps] = {"start", "loads", "threshold", "filter", "barrier1", "counts", "copy",
                                          "scan+barrier2", "scatter", "rank+write", "level0"};
        for (int rr = 0; rr < (int)rows; ++rr) {
          printf("   row %d, phase end, cycles from the row's start (mean / latest block; step):", rr);
          double prev = 0;
          for (int oi = 0; oi < kStamps - 1; ++oi) {
            const int i = seq[oi];
            double m = 0, mx = 0;
            for (int b = 0; b < kBlocks; ++b) {
              const double d = (double)(stamp[rr][b][i] - stamp[rr][b][0]);
              m += d / kBlocks, mx = std::max(mx, d);
            }
            printf(" %s %.0f/%.0f (+%.0f)", pn[i], m, mx, m - prev);
            prev = m;
          }
          printf("\n");
        }
      }
    }
  }
  return 0;
}

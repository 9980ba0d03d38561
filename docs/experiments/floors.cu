// Not part of the build: a standalone measurement (nvcc -O2 -arch=sm_90a floors.cu -o floors). The figures that
// docs/performance.md quotes ("The floors of the decode path's shape") came from the two programs this file
// merges (the same kernels and timing; this merged form has not run on a GPU yet). Back-to-back calls captured in a CUDA
// graph, per call, median of 15 replays of 200 calls:
//   1. tiny kernels: one alone; two chained (the second reads what the first wrote), with and without
//      programmatic dependent launch (PDL);
//   2. the skeleton of the router's decode path without its arithmetic: A = 112 blocks of 96 threads, each
//      streams 48 KB of a 5.5 MB "weight" (L2-resident back to back) before waiting on the previous kernel,
//      then writes 48 floats (the "partials"); B = one block of 384 threads that waits on A, reads 14 values a
//      thread (the 14 slabs of one token) and writes six (the "ids");
//   3. the single long row's launch shape: 1 x 131072 floats read once by 16 blocks of 512 threads that meet
//      at one cluster barrier, in a cluster of 16 and without one.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "time_graph.cuh"

__global__ void tiny_a(float* buf) {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  buf[threadIdx.x] += 1.0f;
}
__global__ void tiny_b(const float* buf, float* out) {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  const float s = __ldcg(buf + threadIdx.x);
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  if (s == 12345.f) out[threadIdx.x] = s;
}
__global__ void skel_a(const float4* w, float* part) {
  const float4* p = w + (size_t)blockIdx.x * 3072;   // 48 KB a block
  float4 v[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) v[i] = __ldcg(p + threadIdx.x + 96 * i);
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 32; ++i) s += v[i].x + v[i].y + v[i].z + v[i].w;
  if (threadIdx.x < 48) part[blockIdx.x * 48 + threadIdx.x] = s;
}
__global__ void skel_b(const float* part, float* out) {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  float v[14];
#pragma unroll
  for (int j = 0; j < 14; ++j) v[j] = __ldcg(part + threadIdx.x + 384 * j);
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < 14; ++j) s += v[j];
  __shared__ float sh[384];
  sh[threadIdx.x] = s;
  __syncthreads();
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  if (threadIdx.x < 6) out[threadIdx.x] = sh[threadIdx.x * 7];
}
__global__ void row_once(const float* row, float* out) {
  float s = 0.f;
  const float4* p = reinterpret_cast<const float4*>(row) + blockIdx.x * 2048;
  for (int i = threadIdx.x; i < 2048; i += blockDim.x) {
    const float4 v = __ldg(p + i);
    s += v.x + v.y + v.z + v.w;
  }
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n\tbarrier.cluster.wait.aligned;" ::: "memory");
  if (s == 12345.f) out[threadIdx.x] = s;
}

// One launch, with PDL (pdl) and a cluster size (cluster > 0) as asked.
static void launch(const void* f, unsigned grid, unsigned block, cudaStream_t st, bool pdl, int cluster,
                   void** args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(block);
  cfg.stream = st;
  cudaLaunchAttribute at[2];
  int n = 0;
  if (pdl) {
    at[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster > 0) {
    at[n].id = cudaLaunchAttributeClusterDimension;
    at[n].val.clusterDim.x = cluster;
    at[n].val.clusterDim.y = 1;
    at[n++].val.clusterDim.z = 1;
  }
  cfg.attrs = at;
  cfg.numAttrs = n;
  cudaLaunchKernelExC(&cfg, f, args);
}

int main() {
  float *buf, *out, *w, *part;
  cudaMalloc(&buf, 1 << 20);
  cudaMalloc(&out, 4096);
  cudaMalloc(&w, 112 * 49152);
  cudaMalloc(&part, 1 << 20);
  cudaMemset(buf, 0, 1 << 20);
  cudaMemset(w, 0, 112 * 49152);
  cudaMemset(part, 0, 1 << 20);
  cudaStream_t st;
  cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  void* aa[] = {&buf};
  void* ab[] = {&buf, &out};
  void* sa[] = {&w, &part};
  void* sb[] = {&part, &out};
  for (int pdl = 0; pdl < 2; ++pdl) {
    const char* how = pdl ? "with PDL   " : "without PDL";
    const float one = time_graph(st, [&] { launch((const void*)tiny_a, 1, 96, st, pdl, 0, aa); });
    const float two = time_graph(st, [&] {
      launch((const void*)tiny_a, 1, 96, st, pdl, 0, aa);
      launch((const void*)tiny_b, 1, 96, st, pdl, 0, ab);
    });
    const float skel_alone = time_graph(st, [&] { launch((const void*)skel_a, 112, 96, st, pdl, 0, sa); });
    const float skel = time_graph(st, [&] {
      launch((const void*)skel_a, 112, 96, st, pdl, 0, sa);
      launch((const void*)skel_b, 1, 384, st, pdl, 0, sb);
    });
    printf("%s: one tiny kernel %.2f us, two chained %.2f us; decode skeleton %.2f us (its A alone %.2f us)\n",
           how, one, two, skel, skel_alone);
  }
  cudaFuncSetAttribute((const void*)row_once, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  void* ar[] = {&buf, &out};
  for (int cl : {1, 16})
    printf("1 x 131072 read once, 16 blocks x 512, cluster of %2d: %.2f us per call\n", cl,
           time_graph(st, [&] { launch((const void*)row_once, 16, 512, st, false, cl, ar); }));
  printf("%s\n", cudaGetErrorString(cudaGetLastError()));
  return 0;
}

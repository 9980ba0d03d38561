// Not part of the build: a standalone measurement (nvcc -O2 -arch=sm_90a decode_skeleton.cu -o decode_skeleton),
// whose figures docs/performance.md quotes ("The floors of the decode path's shape").
// The skeleton of the decode path without its arithmetic: A = 112 blocks of 96 threads, each streams 48 KB of a
// 5.5 MB "weight" (L2-resident when calls run back to back) before waiting on the previous kernel, then writes
// 48 floats ("partials"); B = one block of 384 threads that waits on A and reads 14 values a thread (the 14 slabs
// of one token), then writes 6 ("ids"). Back-to-back calls in a CUDA graph, with and without PDL; per call,
// median of reps. Also A and B alone.
#include <cstdio>
#include <vector>
#include <algorithm>
#include <cuda_runtime.h>
__global__ void ka(const float4* w, float* part, int trig) {
  const float4* p = w + (size_t)blockIdx.x * 3072;   // 48 KB a block
  float4 v[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) v[i] = __ldcg(p + threadIdx.x + 96 * i);
  asm volatile("griddepcontrol.wait;" ::: "memory");
  if (trig) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 32; ++i) s += v[i].x + v[i].y + v[i].z + v[i].w;
  if (threadIdx.x < 48) part[blockIdx.x * 48 + threadIdx.x] = s;
}
__global__ void kb(const float* part, float* out) {
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
static void launch(const void* f, dim3 g, dim3 b, cudaStream_t st, bool pdl, void** args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = g; cfg.blockDim = b; cfg.stream = st;
  cudaLaunchAttribute at; at.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &at; cfg.numAttrs = pdl ? 1 : 0;
  cudaLaunchKernelExC(&cfg, f, args);
}
int main() {
  float *w, *part, *out; cudaMalloc(&w, 112 * 49152); cudaMalloc(&part, 1 << 20); cudaMalloc(&out, 4096);
  cudaMemset(w, 0, 112 * 49152); cudaMemset(part, 0, 1 << 20);
  cudaStream_t st; cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  const int calls = 200, reps = 15;
  const char* names[] = {"A alone", "B alone", "A,B plain", "A,B both PDL", "A,B PDL, A no trigger"};
  for (int mode = 0; mode < 5; ++mode) {
    int trig = mode == 4 ? 0 : 1;
    cudaGraph_t g; cudaGraphExec_t ge;
    cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal);
    for (int c = 0; c < calls; ++c) {
      void* aa[] = {&w, &part, &trig};
      void* ab[] = {&part, &out};
      if (mode != 1) launch((const void*)ka, dim3(112), dim3(96), st, mode >= 3 || mode == 0, aa);
      if (mode != 0) launch((const void*)kb, dim3(1), dim3(384), st, mode >= 3 || mode == 1, ab);
    }
    cudaStreamEndCapture(st, &g); cudaGraphInstantiate(&ge, g, 0);
    std::vector<float> t;
    for (int r = 0; r < reps; ++r) {
      cudaGraphLaunch(ge, st); cudaEventRecord(e0, st); cudaGraphLaunch(ge, st); cudaEventRecord(e1, st);
      cudaEventSynchronize(e1); float ms; cudaEventElapsedTime(&ms, e0, e1); t.push_back(ms * 1e3f / calls);
    }
    std::sort(t.begin(), t.end());
    printf("skeleton %-24s %6.2f us per call\n", names[mode], t[reps / 2]);
    cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
  }
  printf("%s\n", cudaGetErrorString(cudaGetLastError()));
  return 0;
}

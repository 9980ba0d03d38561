// Not part of the build: a standalone measurement (nvcc -O2 -arch=sm_90a launch_floor.cu -o launch_floor), whose
// figures docs/performance.md quotes ("The floors of the decode path's shape").
// The floor of a two-kernel decode design: back-to-back (A, B) pairs in a CUDA graph, A = `ga` blocks that wait
// on the previous kernel, then write; B = one block of 384 threads that waits on A, reads what A wrote, writes.
// With and without programmatic dependent launch. Per pair, median of reps. (With A at 112 blocks, B reads
// 10752 floats in a dependent loop and its own time dominates those rows: decode_skeleton.cu is the decode shape.)
#include <cstdio>
#include <vector>
#include <algorithm>
#include <cuda_runtime.h>
__global__ void ka(float* buf, int pdl_trigger) {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  if (pdl_trigger) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  buf[blockIdx.x * blockDim.x + threadIdx.x] += 1.0f;
}
__global__ void kb(const float* buf, float* out, int n) {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  float s = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += __ldcg(buf + i);
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  if (s == 12345.f) out[threadIdx.x] = s;
}
// One row of 131072 floats on a cluster of 16 blocks of 512 threads: each block reads its 8192 columns once and
// the cluster meets at one barrier; the floor of the single-row long top-k's launch shape.
__global__ void kc(const float* row, float* out) {
  float s = 0.f;
  const float4* p = reinterpret_cast<const float4*>(row) + blockIdx.x * 2048;
  for (int i = threadIdx.x; i < 2048; i += blockDim.x) { float4 v = __ldg(p + i); s += v.x + v.y + v.z + v.w; }
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n\tbarrier.cluster.wait.aligned;" ::: "memory");
  if (s == 12345.f) out[threadIdx.x] = s;
}
static void launch(void (*f)(), dim3 g, dim3 b, cudaStream_t st, bool pdl, void** args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = g; cfg.blockDim = b; cfg.stream = st;
  cudaLaunchAttribute at; at.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &at; cfg.numAttrs = pdl ? 1 : 0;
  cudaLaunchKernelExC(&cfg, (const void*)f, args);
}
int main() {
  float *buf, *out; cudaMalloc(&buf, 1 << 24); cudaMalloc(&out, 4096); cudaMemset(buf, 0, 1 << 24);
  cudaStream_t st; cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  const int calls = 200, reps = 15;
  for (int ga : {1, 112}) for (int mode = 0; mode < 5; ++mode) {
    // mode 0: A only; 1: B only; 2: A,B plain; 3: A,B with PDL (B PDL, A PDL); 4: A,B PDL on B only
    int ta = 96, n = ga * ta, one = 1;
    cudaGraph_t g; cudaGraphExec_t ge;
    cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal);
    for (int c = 0; c < calls; ++c) {
      void* aa[] = {&buf, &one};
      void* ab[] = {&buf, &out, &n};
      if (mode != 1) launch((void (*)())ka, dim3(ga), dim3(ta), st, mode == 3, aa);
      if (mode != 0) launch((void (*)())kb, dim3(1), dim3(384), st, mode >= 3, ab);
    }
    cudaStreamEndCapture(st, &g); cudaGraphInstantiate(&ge, g, 0);
    std::vector<float> t;
    for (int r = 0; r < reps; ++r) {
      cudaGraphLaunch(ge, st); cudaEventRecord(e0, st); cudaGraphLaunch(ge, st); cudaEventRecord(e1, st);
      cudaEventSynchronize(e1); float ms; cudaEventElapsedTime(&ms, e0, e1); t.push_back(ms * 1e3f / calls);
    }
    std::sort(t.begin(), t.end());
    const char* names[] = {"A alone", "B alone", "A,B plain", "A,B both PDL", "A,B PDL on B"};
    printf("A grid %3d  %-14s %6.2f us per call\n", ga, names[mode], t[reps / 2]);
    cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
  }
  {
    cudaFuncSetAttribute((const void*)kc, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    for (int cl : {1, 16}) {
      cudaGraph_t g; cudaGraphExec_t ge;
      cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal);
      for (int c = 0; c < calls; ++c) {
        cudaLaunchConfig_t cfg = {}; cfg.gridDim = dim3(16); cfg.blockDim = dim3(512); cfg.stream = st;
        cudaLaunchAttribute at; at.id = cudaLaunchAttributeClusterDimension; at.val.clusterDim.x = cl;
        at.val.clusterDim.y = 1; at.val.clusterDim.z = 1; cfg.attrs = &at; cfg.numAttrs = 1;
        void* ac[] = {&buf, &out};
        cudaLaunchKernelExC(&cfg, (const void*)kc, ac);
      }
      cudaStreamEndCapture(st, &g); cudaGraphInstantiate(&ge, g, 0);
      std::vector<float> t;
      for (int r = 0; r < reps; ++r) {
        cudaGraphLaunch(ge, st); cudaEventRecord(e0, st); cudaGraphLaunch(ge, st); cudaEventRecord(e1, st);
        cudaEventSynchronize(e1); float ms; cudaEventElapsedTime(&ms, e0, e1); t.push_back(ms * 1e3f / calls);
      }
      std::sort(t.begin(), t.end());
      printf("1 x 131072 read once, 16 blocks x 512, cluster %2d: %6.2f us per call\n", cl, t[reps / 2]);
      cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
    }
  }
  printf("%s\n", cudaGetErrorString(cudaGetLastError()));
  return 0;
}

// Not part of the build: a standalone prototype (nvcc -O3 -arch=sm_90a -std=c++17 topk_sample_skeleton.cu -o tss)
// of the sample-threshold select for one long row (docs/performance.md, "The single long row: a sample threshold";
// the candidate counts come from topk_sample_study.c). One row of 131072 floats, one cluster of 16 blocks of 512
// threads, block r owning columns [r * 8192, (r + 1) * 8192):
//   1. every block loads its slice (16 scores a thread, kept in registers as order keys) and the same strided
//      sample (4096 scores, every 32nd; 8 a thread);
//   2. every block finds the q-th largest sample key (q = 2 k S / cols) by a block-local radix select of three
//      levels (12 + 12 + 8 bits), the same threshold T in every block;
//   3. the scores whose key is >= T go to the block's candidate list in shared memory as composite keys
//      (order key << 32 | ~column: distinct, in output order);
//   4. one cluster barrier; every block reads the 16 counts and copies all candidates into its own shared memory;
//      a second cluster barrier (no block leaves while another still reads its list);
//   5. each candidate of the block is ranked against all of them by a group of threads (the number of larger
//      composite keys) and written to its slot when the rank is below k.
// A row with fewer than k or more than kCap candidates would fall back to the exact radix select (topk_long.cu);
// here it is only reported. To split the time, STOP = 2 ends after the loads, 3 after the threshold, 1 after step
// 4's counts (no copy, no ranks).
// Checked against a host sort; timed as back-to-back calls in a CUDA graph (per call, median of 15 replays of 200).
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "time_graph.cuh"

namespace cg = cooperative_groups;

constexpr int kNT = 512, kCL = 16, kS = 4096, kSPT = kS / kNT, kCap = 8192, kCols = 131072;
constexpr int kSlice = kCols / kCL, kPT = kSlice / kNT;   // 8192 columns a block, 16 a thread

__host__ __device__ inline unsigned okey(float f) {   // order key: larger float -> larger key; NaN 0; -0 == +0
  unsigned u;
  memcpy(&u, &f, 4);
  if (f != f) return 0u;
  if (f == 0.0f) u = 0u;
  return (u >> 31) ? ~u : (u | 0x80000000u);
}
__host__ __device__ inline float key_value(unsigned k) {
  const unsigned u = (k >> 31) ? (k & 0x7fffffffu) : ~k;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

struct Smem {
  unsigned hist[4096];
  unsigned scan[32];
  unsigned pick[2];
  unsigned count;     // this block's candidates
  unsigned offs[kCL + 1];
  unsigned long long own[kSlice];   // this block's candidates
  unsigned long long all[kCap];     // every block's, in block order
};

// The q-th largest (1-based) of the block's sample keys (kSPT a thread), exactly: three radix levels.
__device__ unsigned sample_select(const unsigned (&sk)[kSPT], unsigned q, Smem& sm) {
  unsigned prefix = 0u, mask = 0u, need = q;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll 1
  for (int level = 0; level < 3; ++level) {
    const int bits = level < 2 ? 12 : 8, shift = level == 0 ? 20 : level == 1 ? 8 : 0;
    const int bins = 1 << bits, per = bins / kNT > 0 ? bins / kNT : 1;
    for (int b = threadIdx.x; b < bins; b += kNT) sm.hist[b] = 0u;
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kSPT; ++i)
      if ((sk[i] & mask) == prefix) atomicAdd(&sm.hist[(sk[i] >> shift) & (bins - 1)], 1u);
    __syncthreads();
    // Thread t owns bins [t * per, (t + 1) * per) (threads past the bins own none); suffix sums from the top bin.
    const int b0 = threadIdx.x * per;
    unsigned mine = 0u;
    if (b0 < bins)
      for (int j = 0; j < per; ++j) mine += sm.hist[b0 + j];
    // above = sum over threads > t: an inclusive scan from the top within the warp, then over warps.
    unsigned incl = mine;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const unsigned o = __shfl_down_sync(0xffffffffu, incl, d);
      if (lane + d < 32) incl += o;
    }
    if (lane == 0) sm.scan[warp] = incl;   // the warp's total
    __syncthreads();
    unsigned later = 0u;   // the warps above this one
    for (int w = warp + 1; w < kNT / 32; ++w) later += sm.scan[w];
    const unsigned above = later + incl - mine;   // bins above this thread's
    if (b0 < bins && above < need && need <= above + mine) {
      unsigned acc = above;
      for (int j = per - 1; j >= 0; --j) {
        const unsigned c = sm.hist[b0 + j];
        if (need <= acc + c) {
          sm.pick[0] = (unsigned)(b0 + j), sm.pick[1] = need - acc;
          break;
        }
        acc += c;
      }
    }
    __syncthreads();
    prefix |= sm.pick[0] << shift, mask |= (unsigned)(bins - 1) << shift, need = sm.pick[1];
    __syncthreads();   // pick and hist are reused
  }
  return prefix;
}

// 5. The block's candidates ranked against all `total` (a group of P threads a candidate), written where the rank
// is below k.
__device__ void rank_and_write(Smem& sm, unsigned total, int k, float* __restrict__ out_v, int* __restrict__ out_i) {
  const int tid = threadIdx.x;
  const unsigned n = sm.count;
  unsigned P = 32;
  while (P > 1 && n * P > (unsigned)kNT) P >>= 1;
  const unsigned g = tid / P, gl = tid % P, groups = kNT / P;
  for (unsigned i0 = 0; i0 < n; i0 += groups) {
    const unsigned i = i0 + g;
    const unsigned long long mine = i < n ? sm.own[i] : ~0ull;
    unsigned rank = 0u;
    for (unsigned j = gl; j < total; j += P) rank += sm.all[j] > mine;
    for (unsigned d = P / 2; d > 0; d >>= 1) rank += __shfl_down_sync(0xffffffffu, rank, d, P);
    if (gl == 0 && i < n && rank < (unsigned)k) {
      out_v[rank] = key_value((unsigned)(mine >> 32));
      out_i[rank] = (int)~(unsigned)mine;
    }
  }
}


template <int STOP>
__global__ void __cluster_dims__(kCL, 1, 1) __launch_bounds__(kNT)
    topk_sample(const float* __restrict__ row, int k, float* __restrict__ out_v, int* __restrict__ out_i,
                int* __restrict__ status) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  cg::cluster_group cluster = cg::this_cluster();
  const unsigned r = cluster.block_rank();
  const int tid = threadIdx.x;
  // 1. slice (4 x 16-byte loads a thread) and sample.
  unsigned key[kPT];
  const float4* p4 = reinterpret_cast<const float4*>(row + (size_t)r * kSlice);
#pragma unroll
  for (int c = 0; c < kPT / 4; ++c) {
    const float4 v = __ldg(p4 + tid + c * kNT);
    key[4 * c] = okey(v.x), key[4 * c + 1] = okey(v.y), key[4 * c + 2] = okey(v.z), key[4 * c + 3] = okey(v.w);
  }
  unsigned sk[kSPT];
#pragma unroll
  for (int i = 0; i < kSPT; ++i) sk[i] = okey(__ldg(row + (size_t)(tid + i * kNT) * (kCols / kS)));
  if (tid == 0) sm.count = 0u;
  if constexpr (STOP == 2) {   // the loads alone (their keys kept live)
    unsigned x = 0u;
#pragma unroll
    for (int i = 0; i < kPT; ++i) x ^= key[i];
#pragma unroll
    for (int i = 0; i < kSPT; ++i) x ^= sk[i];
    if (x == 0x12345u) *status = 1;
    return;
  }
  // 2. the threshold.
  const unsigned q = (unsigned)(2 * (long long)k * kS / kCols);
  const unsigned T = sample_select(sk, q, sm);
  if constexpr (STOP == 3) {   // the loads and the threshold
    unsigned x = T;
#pragma unroll
    for (int i = 0; i < kPT; ++i) x ^= key[i];
    if (x == 0x12345u) *status = 1;
    return;
  }
  // 3. filter (warp-aggregated appends).
  const int lane = tid & 31;
#pragma unroll
  for (int c = 0; c < kPT / 4; ++c)
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const bool hit = key[4 * c + u] >= T;
      const unsigned m = __ballot_sync(0xffffffffu, hit);
      if (m == 0u) continue;
      unsigned base = 0u;
      if (lane == __ffs(m) - 1) base = atomicAdd(&sm.count, (unsigned)__popc(m));
      base = __shfl_sync(0xffffffffu, base, __ffs(m) - 1);
      if (hit) {
        const unsigned col = r * kSlice + 4 * (tid + c * kNT) + u;
        sm.own[base + __popc(m & ((1u << lane) - 1u))] = ((unsigned long long)key[4 * c + u] << 32) | (unsigned)~col;
      }
    }
  // 4. counts over the cluster.
  cluster.sync();
  if (tid == 0) {
    unsigned acc = 0u;
    for (int b = 0; b < kCL; ++b) {
      sm.offs[b] = acc;
      acc += *cluster.map_shared_rank(&sm.count, b);
    }
    sm.offs[kCL] = acc;
  }
  __syncthreads();
  const unsigned total = sm.offs[kCL];
  if (total < (unsigned)k || total > (unsigned)kCap) {   // the fallback's case: reported only
    if (r == 0 && tid == 0) *status = (int)total;
    cluster.sync();
    return;
  }
  if constexpr (STOP != 0) {
    if (r == 0 && tid == 0) *status = -(int)total;
    cluster.sync();
  } else {
    for (unsigned j = tid; j < total; j += kNT) {
      int b = 0;
      while (sm.offs[b + 1] <= j) ++b;
      sm.all[j] = cluster.map_shared_rank(sm.own, b)[j - sm.offs[b]];
    }
    cluster.sync();   // every block has read every list
    rank_and_write(sm, total, k, out_v, out_i);
    if (r == 0 && tid == 0) *status = -(int)total;
  }
}
struct Args {
  const float* row;
  int k;
  float* v;
  int* i;
  int* status;
  int stop;
};
static void launch(cudaStream_t st, void* a_) {
  Args* a = (Args*)a_;
  switch (a->stop) {
    case 0: topk_sample<0><<<kCL, kNT, sizeof(Smem), st>>>(a->row, a->k, a->v, a->i, a->status); break;
    case 1: topk_sample<1><<<kCL, kNT, sizeof(Smem), st>>>(a->row, a->k, a->v, a->i, a->status); break;
    case 2: topk_sample<2><<<kCL, kNT, sizeof(Smem), st>>>(a->row, a->k, a->v, a->i, a->status); break;
    default: topk_sample<3><<<kCL, kNT, sizeof(Smem), st>>>(a->row, a->k, a->v, a->i, a->status); break;
  }
}

int main() {
  for (auto f : {(const void*)topk_sample<0>, (const void*)topk_sample<1>, (const void*)topk_sample<2>,
                 (const void*)topk_sample<3>}) {
    cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sizeof(Smem));
    cudaFuncSetAttribute(f, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  }
  std::vector<float> h(kCols);
  uint64_t s = 12345;
  auto rnd = [&] { s = s * 6364136223846793005ull + 1442695040888963407ull; return (double)(s >> 11) / 9007199254740992.0; };
  float *row, *v;
  int *idx, *status;
  cudaMalloc(&row, kCols * 4);
  cudaMalloc(&v, 4096 * 4);
  cudaMalloc(&idx, 4096 * 4);
  cudaMalloc(&status, 4);
  cudaStream_t st;
  cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  printf("smem %zu bytes a block\n", sizeof(Smem));
  for (int gen = 0; gen < 2; ++gen) {
    for (int c = 0; c < kCols; ++c) {
      if (gen == 0) h[c] = (float)((rnd() - 0.5) * 200.0);   // the bench's random rows
      else {                                                  // the bench's bell rows
        double a = 0;
        for (int i = 0; i < 4; ++i) a += rnd() - 0.5;
        h[c] = (float)a * 3.46f;
      }
    }
    cudaMemcpy(row, h.data(), kCols * 4, cudaMemcpyHostToDevice);
    std::vector<int> order(kCols);
    for (int c = 0; c < kCols; ++c) order[c] = c;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return okey(h[a]) > okey(h[b]); });
    for (int k : {512, 2048}) {
      Args a{row, k, v, idx, status, 0};
      cudaMemset(idx, 0xff, 4096 * 4);
      launch(st, &a);
      int stat = 0;
      std::vector<int> gi(k);
      std::vector<float> gv(k);
      cudaStreamSynchronize(st);
      cudaMemcpy(&stat, status, 4, cudaMemcpyDeviceToHost);
      cudaMemcpy(gi.data(), idx, k * 4, cudaMemcpyDeviceToHost);
      cudaMemcpy(gv.data(), v, k * 4, cudaMemcpyDeviceToHost);
      int bad = 0;
      for (int j = 0; j < k; ++j) bad += gi[j] != order[j] || memcmp(&gv[j], &h[order[j]], 4) != 0;
      const float t_full = time_graph(st, [&] { launch(st, &a); });
      float t_stop[4];
      for (int stop = 1; stop < 4; ++stop) a.stop = stop, t_stop[stop] = time_graph(st, [&] { launch(st, &a); });
      printf("%s row, k = %4d: %s (%d candidates, %d slots wrong); us a call: the loads %.2f, + the threshold %.2f,"
             " + filter and the cluster's counts %.2f, whole %.2f\n",
             gen ? "bell  " : "random", k, stat < 0 ? "fast path" : "would fall back", stat < 0 ? -stat : stat, bad,
             t_stop[2], t_stop[3], t_stop[1], t_full);
    }
  }
  const cudaError_t e = cudaGetLastError();
  printf("%s\n", e == cudaSuccess ? "no error" : cudaGetErrorString(e));
  return 0;
}

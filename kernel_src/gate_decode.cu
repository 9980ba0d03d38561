// Decode gate GEMM, split-K partials (SPEC section 2, the dense logits, for N <= 64 tokens):
//   partial[s][n][e] = sum over h in split s of x[n,h] * W[e,h]       x: bf16 [N,H], W: bf16 [E,H]
// Split s covers hidden [s*512, min(H, (s+1)*512)). A successor (dsv4_activation_topk_enqueue with
// num_splits = splits) sums the slabs in split order; the split partition depends on H only, never on N.
//
// Tensor cores: mma.sync m16n8k16 bf16 -> fp32 with W as the A operand (16 experts x 16 hidden) and x^T as
// the B operand (16 hidden x 8 tokens). A reduction over k may permute k, as long as A and B use the same
// permutation, so each lane's 16-byte shared-memory read is used as is: lane (g = lane/4, q = lane%4) reads
// W[row][c*32 + q*8 .. +8) for row = g and g+8, and x[token][the same 8 hidden]; elements 0-3 feed one MMA
// and 4-7 the next (the registers of A are {row g, row g+8, row g, row g+8} x {elements 0-1, 2-3}).
//
// One warp = one 16-expert tile x one split. Block = `warps` tiles of the same split (blockDim/32, 1..8,
// chosen by the host); grid = ceil(tiles/warps) x splits. Memory-level parallelism first:
//   1. each warp streams its whole W tile (16 x 512 bf16 = 16 KB: 32 x 16-byte cp.async per lane, all in
//      flight, coalesced 512 B per warp instruction) into its own shared-memory slice (one bulk copy (TMA)
//      per row instead was measured on H200: no faster, 4.12 vs 3.97 us at N = 1);
//   2. griddepcontrol.wait (a no-op unless this kernel was launched with PDL: W is a constant, x may be the
//      previous kernel's output, and the slabs may still be read by the previous router call);
//   3. the block stages the split's x tile (8*ceil(N/8) rows x 512 bf16) with cp.async, zero-filled past N
//      and past H, then one barrier;
//   4. each warp runs its MMA chain, 32 hidden per step, over every token tile; plain stores of the tile.
//      The token tiles are compiled in at 1 or 8 (gate_tile): an MMA under a false predicate still issues
//      with its operand moves, and at N = 1 eight tiles' instructions took ~2 us of a block's ~3.4 (H100,
//      timestamps in the kernel); one tile's take a fraction of that. (2 and 4 as well sped N = 9..32 up,
//      but made NVRTC take 1.4 x longer on this kernel, the slowest of the router's: the cold compile
//      of the whole router would pass its 400 ms budget.)
// Shared-memory rows have a pitch of 64 mod 128 bytes, so the 8 lanes of a quarter warp (rows g, g+1)
// read 128 distinct bytes (no bank conflicts). Shared memory is dynamic: x rows, then `warps` W tiles.
//
// Determinism and batch invariance: a (tile, split, token) sum never depends on N, the token's position,
// or the block shape. Four accumulators per output, each a fixed chain (MMA #0 of even chunks, #1 of even,
// #0 of odd, #1 of odd, in chunk order), combined as (a0 + a1) + (a2 + a3) at the end; four independent
// chains keep the MMA latency off the critical path when N <= 8 (one token tile). Each MMA output column
// (token) is independent of the others, and tokens past N are zeros. No atomics anywhere.
//
// griddepcontrol.launch_dependents right after this grid's own griddepcontrol.wait (step 2) lets a PDL-launched
// successor be launched and resident while this grid works (it waits for this grid's end on its own wait).
// Specialised on H and E; the layout constants must match runtime/ops/gate_decode.c.
#include "common.cuh"

namespace dsv4 {

constexpr int kGateSplit = 512;      // hidden elements per split (slab); host: DSV4_GATE_DECODE_SPLIT
constexpr int kGateMaxWarps = 8;     // warps (expert tiles) per block

template <int H>
struct gate_decode_shape {
  static_assert(H >= 8 && H <= 16384 && H % 8 == 0, "H must be a multiple of 8 in 8..16384");
  static constexpr int kSplits = (H + kGateSplit - 1) / kGateSplit;
  // Hidden elements of one split's x row in shared memory, padded to whole 32-wide chunks.
  static constexpr int kSplitPad = H < kGateSplit ? (H + 31) / 32 * 32 : kGateSplit;
  static constexpr int kChunks = kSplitPad / 32;
  // Row pitch in bytes, = 64 mod 128: lanes g and g+1 of a quarter warp hit disjoint bank halves.
  static constexpr int kRowBytes = (kSplitPad * 2) % 128 == 0 ? kSplitPad * 2 + 64 : kSplitPad * 2;
};

// 16 bytes global -> shared; src_bytes = 0 writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void gate_cp_async16(unsigned smem_addr, const void* gptr, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr), "l"(gptr), "r"(src_bytes)
               : "memory");
}

__device__ __forceinline__ void gate_mma(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                         unsigned b0, unsigned b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// One 32-hidden step of chunk c for every token tile: MMA #0 (elements 0-3) into chain 2P, #1 (elements
// 4-7) into chain 2P+1, where P = c & 1 is a compile-time parity. w_lane / x_lane: this lane's 16 bytes of
// W row g / x row g of chunk 0 in shared memory. NTT: token tiles compiled in (>= nt, the tiles staged).
template <int P, int ROWB, int NTT>
__device__ __forceinline__ void gate_step(float (&acc)[NTT][4][4], const unsigned char* w_lane,
                                          const unsigned char* x_lane, int c, int nt) {
  const uint4 wa = *reinterpret_cast<const uint4*>(w_lane + c * 64);             // row g
  const uint4 wb = *reinterpret_cast<const uint4*>(w_lane + 8 * ROWB + c * 64);  // row g + 8
#pragma unroll
  for (int t = 0; t < NTT; ++t) {
    if (t < nt) {
      const uint4 b = *reinterpret_cast<const uint4*>(x_lane + t * 8 * ROWB + c * 64);
      gate_mma(acc[t][2 * P], wa.x, wb.x, wa.y, wb.y, b.x, b.y);
      gate_mma(acc[t][2 * P + 1], wa.z, wb.z, wa.w, wb.w, b.z, b.w);
    }
  }
}

// Step 4 and 5 of the kernel for one warp (one 16-expert tile of one split), with NTT token tiles compiled
// in: every tile's MMAs and operand moves are issued whether or not its predicate is on, so the kernel takes
// NTT = 1 for N <= 8 (one tile's instructions instead of eight) and 8 above. The arithmetic is the same for
// every NTT.
template <int NTT, int ROWB, int E>
__device__ __forceinline__ void gate_tile(const unsigned char* w_lane, const unsigned char* x_lane, int chunks,
                                          int nt, int tile, int lane, int num_tokens, float* __restrict__ out) {
  float acc[NTT][4][4];
#pragma unroll
  for (int t = 0; t < NTT; ++t)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[t][j][0] = acc[t][j][1] = acc[t][j][2] = acc[t][j][3] = 0.0f;
  // With one token tile the chunk pairs are unrolled x8 (a whole 512-wide split: the shared-memory loads are
  // issued ahead of the MMA chains): H100, v4-pro router decode 4.46 -> 4.27 us at N = 1, 4.80 -> 4.62 at
  // N = 8; NVRTC +23 ms on this kernel. Eight tiles stay rolled: x2 there gave N = 32 / 64 another 0.15-0.2 us
  // (7.01 / 8.43 us) for +37 ms more of NVRTC, and the router's cold compile is at or over its 400 ms budget.
  constexpr int kUnroll = NTT == 1 ? 8 : 1;
#pragma unroll kUnroll
  for (int c = 0; c < chunks; c += 2) {
    gate_step<0, ROWB, NTT>(acc, w_lane, x_lane, c, nt);
    if (c + 1 < chunks) gate_step<1, ROWB, NTT>(acc, w_lane, x_lane, c + 1, nt);
  }

  // Plain stores: acc[t][.] = {(r0, n), (r0, n+1), (r1, n), (r1, n+1)}, n = 8t + 2q, r1 = r0 + 8.
  const int g = lane >> 2, q = lane & 3;
  const int r0 = tile * 16 + g, r1 = r0 + 8;
  const bool v0 = E % 16 == 0 || r0 < E, v1 = E % 16 == 0 || r1 < E;
#pragma unroll
  for (int t = 0; t < NTT; ++t) {
    if (t < nt) {
      float d[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) d[i] = (acc[t][0][i] + acc[t][1][i]) + (acc[t][2][i] + acc[t][3][i]);
      const int n = t * 8 + 2 * q;
      if (n < num_tokens) {
        if (v0) out[(size_t)n * E + r0] = d[0];
        if (v1) out[(size_t)n * E + r1] = d[2];
      }
      if (n + 1 < num_tokens) {
        if (v0) out[(size_t)(n + 1) * E + r0] = d[1];
        if (v1) out[(size_t)(n + 1) * E + r1] = d[3];
      }
    }
  }
}

// x: bf16 bits [num_tokens, H]; w: bf16 bits [E, H]; both 16-byte aligned. num_tokens in 1..64.
// partials: fp32 [splits][num_tokens][E]. blockDim.x = 32 * warps; gridDim.x = ceil(tiles/warps) * splits;
// dynamic shared memory = (8 * ceil(num_tokens/8) + 16 * warps) * kRowBytes.
template <int H, int E>
__global__ void __launch_bounds__(kGateMaxWarps * 32, 1)
    gate_decode(const unsigned short* __restrict__ x, int num_tokens, const unsigned short* __restrict__ w,
                float* __restrict__ partials) {
  static_assert(E >= 1 && E <= 1024, "E must be in 1..1024");
  typedef gate_decode_shape<H> S;
  constexpr int kTiles = (E + 15) / 16;
  constexpr int kPieces = S::kSplitPad / 8;  // 16-byte pieces per row of a split
  constexpr int ROWB = S::kRowBytes;
  extern __shared__ __align__(16) unsigned char smem[];

  const int warps = blockDim.x >> 5;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int groups = (kTiles + warps - 1) / warps;
  const int split = blockIdx.x / groups;
  if (split >= S::kSplits) return;  // whole block: no barrier is skipped
  const int tile = (blockIdx.x - split * groups) * warps + warp;
  const bool active = tile < kTiles;
  const int k0 = split * kGateSplit;
  const int klen = H % kGateSplit == 0 ? kGateSplit : min(kGateSplit, H - k0);
  const int nt = (num_tokens + 7) >> 3;
  const unsigned xs = (unsigned)__cvta_generic_to_shared(smem);
  const unsigned ws = xs + nt * 8 * ROWB + warp * 16 * ROWB;  // this warp's W tile

  // 1. This warp's W tile: rows past E and hidden past H are zero-filled (never read).
  if (active) {
    for (int i = lane; i < 16 * kPieces; i += 32) {
      const int r = i / kPieces, p = i - r * kPieces, e = tile * 16 + r;
      const bool in = (E % 16 == 0 || e < E) && (H % kGateSplit == 0 || p * 8 < klen);
      const unsigned short* src = in ? w + (size_t)e * H + k0 + p * 8 : w;
      gate_cp_async16(ws + r * ROWB + p * 16, src, in ? 16 : 0);
    }
  }

  // 2. Everything before this only read constants. Then, once the previous kernel on the stream is done, a
  // PDL-launched successor may start: its blocks then wait on griddepcontrol (the end of this grid, its writes
  // visible) already resident, off the critical path. The trigger comes after the wait so that the successor's
  // part before its own wait never runs beside this kernel's predecessor (hash_scored reads the token ids
  // there, which that predecessor may write).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif

  // 3. The split's x tile, rows [0, 8*nt): tokens >= N and hidden >= H are zeros (plain shared stores: no
  // memory request for them).
#pragma unroll 4
  for (int i = threadIdx.x; i < nt * 8 * kPieces; i += blockDim.x) {
    const int n = i / kPieces, p = i - n * kPieces;
    const bool in = n < num_tokens && (H % kGateSplit == 0 || p * 8 < klen);
    if (in)
      gate_cp_async16(xs + n * ROWB + p * 16, x + (size_t)n * H + k0 + p * 8, 16);
    else
      asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};" ::"r"(xs + n * ROWB + p * 16), "r"(0) : "memory");
  }
  asm volatile("cp.async.wait_all;\n" ::: "memory");
  __syncthreads();

  if (active) {
    // 4-5. MMA chains over the chunks that hold data (a split's tail chunk is partly zeros), then the stores.
    const int g = lane >> 2, q = lane & 3;
    const unsigned char* w_lane = smem + (nt * 8 + warp * 16 + g) * ROWB + q * 16;
    const unsigned char* x_lane = smem + g * ROWB + q * 16;
    const int chunks = H % kGateSplit == 0 ? S::kChunks : (klen + 31) / 32;
    float* out = partials + (size_t)split * num_tokens * E;
    if (nt <= 1)
      gate_tile<1, ROWB, E>(w_lane, x_lane, chunks, nt, tile, lane, num_tokens, out);
    else
      gate_tile<8, ROWB, E>(w_lane, x_lane, chunks, nt, tile, lane, num_tokens, out);
  }

}

}  // namespace dsv4

/* A SIMT emulator for the long-row top-k kernel (kernel_src/topk_long.cu) on the CPU, for
 * test_topk_long_emu.cc, which includes this header once and then the kernel's source.
 *
 * Every CUDA thread of a cluster is a coroutine (its own stack, switched by emu_switch: x86-64 only) on one
 * OS thread. Block barriers, warp shuffles/votes/reductions and the two halves of the cluster barrier are
 * the only points where a thread gives way; the scheduler runs the threads that can run in a new random
 * order every round, so shared memory read without the barrier that orders it gives different answers from
 * run to run. Each block's shared memory is its own heap buffer of exactly the launch's dynamic size
 * (16-byte aligned, filled with garbage), so an access past the layout is caught by AddressSanitizer in a
 * sanitizer build; distributed shared memory (tl_peer) maps an address to the same offset in the peer
 * block's buffer. The vector types carry CUDA's alignment, so UBSan catches a misaligned vector access.
 * Aborts with a message on what the GPU would not allow: a partial warp mask, a barrier not every thread
 * of its scope reaches (a deadlock), a cluster arrive without its wait or the reverse, a peer access to a
 * block that has exited, a misaligned 16-byte global load.
 *
 * atomicAdd needs nothing: a thread is never interrupted between two sync points. */
#ifndef DSV4_TOPK_LONG_EMU_H
#define DSV4_TOPK_LONG_EMU_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>
#include <functional>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#ifdef EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#error "topk_long_emu.h switches stacks with x86-64 assembly"
#endif

namespace emu {

[[noreturn]] inline void die(const char* what) {
  fprintf(stderr, "emu: %s\n", what);
  abort();
}

// Saves the callee-saved registers on the current stack, stores the stack pointer in *from_sp, continues on
// to_sp (a stack saved the same way, or a new one laid out by run_cluster).
extern "C" void emu_switch(void** from_sp, void* to_sp);
asm(R"(
.text
.globl emu_switch
.type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch, .-emu_switch
)");

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

struct Thread;
// A barrier of n threads; gen counts its completions. Threads waiting on it are not scheduled.
struct Barrier {
  int n = 0, count = 0;
  unsigned gen = 0;
  std::vector<Thread*> waiting;
};

struct Block {
  unsigned char* smem = nullptr;
  size_t smem_bytes = 0;
  Barrier bar;
  std::vector<Barrier> warp_bar;
  std::vector<unsigned long long> slot[2];   // warp exchange slots, one per thread, by warp barrier parity
  std::vector<unsigned> combined, combined_gen;   // per warp: the last warp_combine's result and its barrier gen
  int rank = 0, live = 0;                    // live: threads not yet exited
  unsigned or_acc[3] = {0u, 0u, 0u};         // __syncthreads_or: call c gathers in or_acc[c % 3]
};

struct Thread {
  void* sp = nullptr;
  void* stack = nullptr;
  size_t stack_bytes = 0;
  bool done = false, blocked = false;
  int tid = 0, lane = 0, warp = 0;
  Block* block = nullptr;
  dim3 threadIdx, blockIdx;
  unsigned cluster_gen = 0;   // the cluster barrier's generation at this thread's arrive
  bool arrived = false;       // a cluster arrive whose wait has not happened yet
  unsigned or_calls = 0;      // this thread's __syncthreads_or calls so far
  void* fake_stack = nullptr; // ASan's bookkeeping of the thread's stack
};

struct State {
  std::vector<Thread*> threads;
  std::vector<Block> blocks;
  Barrier cluster_bar;
  Thread* cur = nullptr;
  void* sched_sp = nullptr;
  const void* sched_stack = nullptr;   // the scheduler's stack (ASan)
  size_t sched_stack_bytes = 0;
  std::function<void()> body;
  std::vector<void*> stacks;   // kept from cluster to cluster (mapping them anew each time dominates small cases)
  dim3 gridDim, blockDim;
  int cl = 1;
  unsigned long long rng = 12345;   // the scheduler's xorshift64 state
};
inline State g;

// The running thread gives way to the scheduler.
inline void yield() {
  Thread* t = g.cur;
#ifdef EMU_ASAN
  __sanitizer_start_switch_fiber(t->done ? nullptr : &t->fake_stack, g.sched_stack, g.sched_stack_bytes);
#endif
  emu_switch(&t->sp, g.sched_sp);
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(t->fake_stack, nullptr, nullptr);
#endif
}

inline void release(Barrier& b) {
  b.count = 0;
  ++b.gen;
  for (Thread* t : b.waiting) t->blocked = false;
  b.waiting.clear();
}
inline void block_on(Barrier& b) {
  g.cur->blocked = true;
  b.waiting.push_back(g.cur);
  yield();
}
inline void arrive_and_wait(Barrier& b) {
  if (++b.count == b.n) {
    release(b);
    yield();   // the last one in does not always run on first
  } else {
    block_on(b);
  }
}

inline void trampoline() {
#ifdef EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g.sched_stack, &g.sched_stack_bytes);
#endif
  g.body();
  if (g.cur->arrived) die("a thread exits with a cluster arrive not waited for");
  g.cur->done = true;
  --g.cur->block->live;
  yield();
  die("an exited thread resumed");
}

// Runs body on one cluster: cl blocks of nt threads with smem_bytes of dynamic shared memory each, block
// indices first_block .. first_block + cl - 1 of gridDim.
inline void run_cluster(int cl, int nt, size_t smem_bytes, unsigned first_block, dim3 gridDim,
                        std::function<void()> body) {
  g.body = std::move(body);
  g.cl = cl;
  g.gridDim = gridDim;
  g.blockDim.x = (unsigned)nt;
  g.blocks.assign((size_t)cl, Block());
  g.cluster_bar = Barrier();
  g.cluster_bar.n = cl * nt;
  for (int b = 0; b < cl; ++b) {
    Block& B = g.blocks[(size_t)b];
    void* p = nullptr;
    if (posix_memalign(&p, 16, smem_bytes)) die("out of memory");
    B.smem = static_cast<unsigned char*>(p);
    B.smem_bytes = smem_bytes;
    memset(B.smem, 0xA5, smem_bytes);   // shared memory starts as garbage
    B.bar.n = nt;
    B.warp_bar.assign((size_t)(nt / 32), Barrier());
    for (Barrier& w : B.warp_bar) w.n = 32;
    B.slot[0].assign((size_t)nt, 0ull);
    B.slot[1].assign((size_t)nt, 0ull);
    B.combined.assign((size_t)(nt / 32), 0u);
    B.combined_gen.assign((size_t)(nt / 32), 0u);
    B.rank = b;
    B.live = nt;
  }
  const size_t stack_bytes = 256 * 1024;
  std::vector<Thread> ts((size_t)(cl * nt));
  while (g.stacks.size() < ts.size()) {
    void* p = mmap(nullptr, stack_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) die("no memory for a thread's stack");
    g.stacks.push_back(p);
  }
  g.threads.clear();
  for (int b = 0; b < cl; ++b)
    for (int t = 0; t < nt; ++t) {
      Thread& T = ts[(size_t)(b * nt + t)];
      T.tid = t, T.lane = t & 31, T.warp = t >> 5;
      T.block = &g.blocks[(size_t)b];
      T.threadIdx.x = (unsigned)t;
      T.blockIdx.x = first_block + (unsigned)b;
      T.stack = g.stacks[(size_t)(b * nt + t)];
      T.stack_bytes = stack_bytes;
#ifdef EMU_ASAN
      __asan_unpoison_memory_region(T.stack, stack_bytes);   // the frames an earlier thread never returned from
#endif
      // The new stack as emu_switch leaves a saved one: six registers, then the address it returns to.
      void** sp = reinterpret_cast<void**>(((uintptr_t)T.stack + stack_bytes) & ~(uintptr_t)15);
      *--sp = nullptr;                                  // trampoline's return address (it never returns)
      *--sp = reinterpret_cast<void*>(&trampoline);     // where emu_switch returns to
      for (int r = 0; r < 6; ++r) *--sp = nullptr;      // rbp rbx r12 r13 r14 r15
      T.sp = sp;
      g.threads.push_back(&T);
    }
  // Each round runs every thread that is not waiting, once, in a random order (Fisher-Yates, xorshift64).
  std::vector<Thread*> order(g.threads.size());
  for (;;) {
    size_t n = 0;
    bool live = false;
    for (Thread* T : g.threads) {
      live |= !T->done;
      if (!T->done && !T->blocked) order[n++] = T;
    }
    if (!live) break;
    if (n == 0) die("deadlock: every live thread waits at a barrier the others do not reach");
    Thread** o = order.data();
    for (size_t i = n - 1; i > 0; --i) {
      g.rng ^= g.rng >> 12, g.rng ^= g.rng << 25, g.rng ^= g.rng >> 27;
      const size_t j = (size_t)((g.rng * 0x2545F4914F6CDD1Dull) % (i + 1));
      Thread* x = o[i];
      o[i] = o[j], o[j] = x;
    }
    for (size_t i = 0; i < n; ++i) {
      Thread* T = o[i];
      g.cur = T;
#ifdef EMU_ASAN
      void* fake = nullptr;
      __sanitizer_start_switch_fiber(&fake, T->stack, T->stack_bytes);
#endif
      emu_switch(&g.sched_sp, T->sp);
#ifdef EMU_ASAN
      __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
    }
  }
  for (Block& B : g.blocks) free(B.smem);
  g.threads.clear();
}

// A warp-wide exchange: every lane offers v (up to 8 bytes) and gets lane src's. One barrier: the slots
// alternate with the warp barrier's parity, and a lane reuses a parity only after the next barrier, which
// every lane reaches after its read.
template <typename T>
inline T warp_exchange(T v, int src) {
  static_assert(sizeof(T) <= 8, "8-byte slots");
  Thread* t = g.cur;
  Block* b = t->block;
  Barrier& wb = b->warp_bar[(size_t)t->warp];
  unsigned long long* slot = b->slot[wb.gen & 1u].data() + t->warp * 32;
  unsigned long long bits = 0;
  memcpy(&bits, &v, sizeof v);
  slot[t->lane] = bits;
  arrive_and_wait(wb);
  T r;
  memcpy(&r, &slot[src], sizeof r);
  return r;
}
// A warp-wide combination: every lane offers a 32-bit value and gets f(the 32 values, lane order), computed
// once per warp by the first lane to read it (a lane overwrites `combined` only after the next barrier).
template <typename F>
inline unsigned warp_combine(unsigned v, F f) {
  Thread* t = g.cur;
  Block* b = t->block;
  Barrier& wb = b->warp_bar[(size_t)t->warp];
  unsigned long long* slot = b->slot[wb.gen & 1u].data() + t->warp * 32;
  slot[t->lane] = v;
  arrive_and_wait(wb);
  if (b->combined_gen[(size_t)t->warp] != wb.gen) {
    unsigned all[32];
    for (int l = 0; l < 32; ++l) all[l] = (unsigned)slot[l];
    b->combined[(size_t)t->warp] = f(all);
    b->combined_gen[(size_t)t->warp] = wb.gen;
  }
  return b->combined[(size_t)t->warp];
}
inline void full_mask(unsigned mask) {
  if (mask != 0xffffffffu) die("a warp operation with a partial mask");
}

}  // namespace emu

// ---- the CUDA surface the kernel uses ----
#define DSV4_TL_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define threadIdx (emu::g.cur->threadIdx)
#define blockIdx (emu::g.cur->blockIdx)
#define blockDim (emu::g.blockDim)
#define gridDim (emu::g.gridDim)

struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }
inline uint2 make_uint2(unsigned a, unsigned b) { return uint2{a, b}; }
inline float __uint_as_float(unsigned u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  memcpy(&u, &f, 4);
  return u;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
inline int __clz(unsigned x) { return x ? __builtin_clz(x) : 32; }
inline unsigned __vmaxu2(unsigned a, unsigned b) {
  const unsigned lo = std::max(a & 0xffffu, b & 0xffffu), hi = std::max(a >> 16, b >> 16);
  return (hi << 16) | lo;
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const unsigned long long v = ((unsigned long long)y << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
  return r;
}
inline float __ldg(const float* p) { return *p; }
inline float4 __ldg(const float4* p) {
  if (((uintptr_t)p & 15) != 0) emu::die("a misaligned 16-byte global load");
  return *p;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  const unsigned old = *p;
  *p = old + v;
  return old;
}
inline void __syncthreads() { emu::arrive_and_wait(emu::g.cur->block->bar); }
// Call c of the block gathers in or_acc[c % 3]; after its barrier every thread clears the buffer of call c + 2 (last
// used by call c - 1, which every thread has read before reaching this barrier; written again only after the
// barrier of call c + 1, which no thread passes before every thread has cleared it).
inline int __syncthreads_or(int pred) {
  emu::Thread* t = emu::g.cur;
  emu::Block* b = t->block;
  const unsigned c = t->or_calls++;
  if (pred) b->or_acc[c % 3] = 1u;
  emu::arrive_and_wait(b->bar);
  const int r = b->or_acc[c % 3] != 0u;
  b->or_acc[(c + 2) % 3] = 0u;
  return r;
}
inline unsigned atomicMax(unsigned* p, unsigned v) {
  const unsigned old = *p;
  if (v > old) *p = v;
  return old;
}
template <typename T>
inline T min(T a, T b) { return b < a ? b : a; }
template <typename T>
inline T max(T a, T b) { return a < b ? b : a; }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  emu::full_mask(mask);
  emu::arrive_and_wait(emu::g.cur->block->warp_bar[(size_t)emu::g.cur->warp]);
}
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src) {
  emu::full_mask(mask);
  return emu::warp_exchange(v, src & 31);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned d) {
  emu::full_mask(mask);
  const int lane = emu::g.cur->lane;
  return emu::warp_exchange(v, lane >= (int)d ? lane - (int)d : lane);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned d) {
  emu::full_mask(mask);
  const int lane = emu::g.cur->lane;
  return emu::warp_exchange(v, lane + (int)d < 32 ? lane + (int)d : lane);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int m) {
  emu::full_mask(mask);
  return emu::warp_exchange(v, emu::g.cur->lane ^ m);
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  emu::full_mask(mask);
  return emu::warp_combine(pred ? 1u : 0u, [](const unsigned* v) {
    unsigned r = 0;
    for (int l = 0; l < 32; ++l) r |= v[l] << l;
    return r;
  });
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0u; }
inline unsigned __reduce_max_sync(unsigned mask, unsigned x) {
  emu::full_mask(mask);
  return emu::warp_combine(x, [](const unsigned* v) {
    unsigned r = 0;
    for (int l = 0; l < 32; ++l) r = v[l] > r ? v[l] : r;
    return r;
  });
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned x) {
  emu::full_mask(mask);
  return emu::warp_combine(x, [](const unsigned* v) {
    unsigned r = 0;
    for (int l = 0; l < 32; ++l) r += v[l];
    return r;
  });
}

// The cluster primitives topk_long.cuh leaves to a host harness.
namespace dsv4 {
inline unsigned char* tl_smem() { return emu::g.cur->block->smem; }
inline unsigned tl_cluster_rank() { return (unsigned)emu::g.cur->block->rank; }
inline unsigned tl_cluster_size() { return (unsigned)emu::g.cl; }
inline void tl_cluster_arrive() {
  emu::Thread* t = emu::g.cur;
  emu::Barrier& b = emu::g.cluster_bar;
  if (t->arrived) emu::die("a cluster arrive twice without a wait");
  t->arrived = true;
  t->cluster_gen = b.gen;
  if (++b.count == b.n) emu::release(b);
  emu::yield();
}
inline void tl_cluster_wait() {
  emu::Thread* t = emu::g.cur;
  if (!t->arrived) emu::die("a cluster wait without an arrive");
  t->arrived = false;
  if (emu::g.cluster_bar.gen == t->cluster_gen) emu::block_on(emu::g.cluster_bar);
}
template <typename T>
inline T* tl_peer(T* p, unsigned rank) {
  emu::Block* me = emu::g.cur->block;
  const uintptr_t off = (uintptr_t)p - (uintptr_t)me->smem;
  if (off >= me->smem_bytes || rank >= (unsigned)emu::g.cl) emu::die("tl_peer of a non-shared pointer or bad rank");
  if (emu::g.blocks[rank].live == 0) emu::die("an access to the shared memory of a block that has exited");
  return reinterpret_cast<T*>(emu::g.blocks[rank].smem + off);
}
}  // namespace dsv4

#endif

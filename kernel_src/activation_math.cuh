// s = sqrt(softplus(z)) in FP32 (SPEC section 2). The main path (finite z >= -70, every logit a router
// sees in practice) uses the GPU's special-function unit for 2^f and for the square root; the rest is fma,
// mul, add, max and integer operations on bit patterns, so that two approximate instructions and nothing
// else decide a result:
//
//   a  = max(-|z|, -70)                    t = e^a in [e^-70, 1]; for z > 70, z + log1p(e^-z) == z in FP32
//                                          and so is z + log1p(e^-70): the clamp changes nothing
//   t  = 2^k * 2^f                         k = rint(a*log2(e)) in [-101, 0] by the 1.5*2^23 shifter (one
//                                          fma); f = a*log2(e) - k from two fma with log2(e) split in two
//                                          floats (|f| <= 0.5 + 2^-19, absolute error below 2^-24); 2^f by
//                                          ex2.approx.ftz.f32 (one MUFU.EX2), 2^k by an integer add to the
//                                          exponent field (t stays normal)
//   L  = t + t^2 * Q(t)                    = log1p(t), Q the degree-7 minimax fit of (log1p(t)-t)/t^2 on
//                                          [0,1], weighted for relative error in L (fit error 3.3e-8)
//   sp = max(z, 0) + L                     softplus, in [2^-101, FLT_MAX] (L >= e^-70 > 2^-101)
//   s  = sqrt(sp)                          sqrt.approx.ftz.f32 (one MUFU.SQRT; sp is a normal float)
// 7 + 9 + 2 + 1 = 19 instructions per element on sm_80, sm_90a and sm_100a, none a branch (the lane form
// in topk.cuh adds half an instruction to spot the rare inputs). Those (dsv4_am_sqrt_softplus_low, exact
// IEEE operations only): z < -70, where log1p(e^z) = e^z (1 - e^z/2 + ...) equals e^z far below FP32
// precision, so s = e^(z/2), computed with a degree-4 polynomial for e^r as (2^(k+64) p(r)) * 2^-64 so that
// it underflows gradually (s is subnormal below z ~ -174.7 and 0 below z ~ -207.9; -inf -> 0); +inf ->
// +inf; NaN -> NaN.
//
// Error: |s - sqrt(softplus(z))| < 1.75 * 2^-22 sqrt(softplus(z)) = 7 * 2^-24 relative for every float z
// whose s is a normal float (and within one subnormal step plus that where s is subnormal), proven where
// the code runs: on the GPU, for all 2^32 inputs, in both forms the kernels use
// (tests/gpu/test_gpu_activation_math.c, which prints the largest error). Why it holds: MUFU.EX2 is within
// 2 ulp (the CUDA math documentation's bound for exp2f, which is ex2.approx.f32) = 4 * 2^-24 relative at
// worst; f's error adds 0.7 * 2^-24, Q's fit and the roundings of L about 2 * 2^-24 (the FP32 log1p alone:
// 1.95 * 2^-24); log1p passes t's relative error on at most unchanged and sp's rounding (z > 0) adds 2^-24
// but scales L's error down by L/sp; the square root halves all of that and MUFU.SQRT adds at most 1 ulp
// (sqrtf without -prec-sqrt, i.e. sqrt.approx.f32, is documented at 1 ulp) = 2 * 2^-24: about 6 * 2^-24 at
// worst. tests/cpu/test_activation_math.c runs that budget on the CPU, with 2^f and the sqrt modelled as
// correctly rounded and then pushed 2 and 1 ulp the wrong way: 6.13 * 2^-24 at most over every float
// (DSV4_TEST_EXHAUSTIVE=1; 2.18 * 2^-24 with both correctly rounded). The bound also keeps two scores' errors plus the rounding of s + bias,
// 2 * (4.2e-7 + 6e-8) = 9.5e-7, under the 1e-6 near-tie allowance of the GPU tests.
//
// Usable from CUDA (NVRTC, included by topk.cuh) and from C11 (the CPU test, built with -ffp-contract=off
// so that no a*b+c is fused behind our back; in CUDA every product is __fmul_rn, which is never fused).
// The C build gives the GPU's bits on the rare path only: on the main path it stands in for MUFU.EX2 and
// MUFU.SQRT with DSV4_AM_EX2 / DSV4_AM_SQRT_APPROX, correctly rounded unless the includer defines them.
#pragma once

#ifdef __CUDACC__
#define DSV4_AM_FN __device__ __forceinline__
typedef unsigned dsv4_am_u32;
#define DSV4_AM_FMA(a, b, c) __fmaf_rn((a), (b), (c))
#define DSV4_AM_MUL(a, b) __fmul_rn((a), (b))
#define DSV4_AM_ADD(a, b) __fadd_rn((a), (b))
#define DSV4_AM_BITS(x) __float_as_uint(x)
#define DSV4_AM_FLOAT(u) __uint_as_float(u)
// 2^x for |x| <= 0.5 + 2^-19 and sqrt(x) for a normal x >= 0: one MUFU instruction each.
__device__ __forceinline__ float dsv4_am_ex2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float dsv4_am_sqrt_approx(float x) {
  float y;
  asm("sqrt.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
#define DSV4_AM_EX2(x) dsv4_am_ex2_approx(x)
#define DSV4_AM_SQRT_APPROX(x) dsv4_am_sqrt_approx(x)
#else
#include <math.h>
#include <stdint.h>
#include <string.h>
#define DSV4_AM_FN static inline
typedef uint32_t dsv4_am_u32;
#define DSV4_AM_FMA(a, b, c) fmaf((a), (b), (c))
#define DSV4_AM_MUL(a, b) ((a) * (b))
#define DSV4_AM_ADD(a, b) ((a) + (b))
#ifndef DSV4_AM_EX2
#define DSV4_AM_EX2(x) ((float)exp2((double)(x)))   /* models MUFU.EX2, correctly rounded (but for ties) */
#endif
#ifndef DSV4_AM_SQRT_APPROX
#define DSV4_AM_SQRT_APPROX(x) sqrtf(x)              /* models MUFU.SQRT, correctly rounded */
#endif
static inline dsv4_am_u32 dsv4_am_bits(float x) {
  dsv4_am_u32 u;
  memcpy(&u, &x, sizeof u);
  return u;
}
static inline float dsv4_am_float(dsv4_am_u32 u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}
#define DSV4_AM_BITS(x) dsv4_am_bits(x)
#define DSV4_AM_FLOAT(u) dsv4_am_float(u)
#endif

#define DSV4_AM_SHIFTER 0x1.8p23f          // 1.5 * 2^23: adding it rounds to an integer, kept in the low bits
#define DSV4_AM_LOG2E 0x1.715476p+0f       // log2(e) rounded; also the high part of the split below
#define DSV4_AM_LOG2E_LO 0x1.4ae0cp-26f    // log2(e) - DSV4_AM_LOG2E, rounded (the rest is 4e-16)
#define DSV4_AM_LN2_HI 0x1.62e4p-1f        // 15 significant bits: k * LN2_HI is exact for |k| < 512
#define DSV4_AM_LN2_LO 0x1.7f7d1cp-20f     // ln2 - LN2_HI, rounded
#define DSV4_AM_EXP_C4 0x1.0fa34ap-7f      // leading coefficients of the two polynomials (see the
#define DSV4_AM_LOG_C7 0x1.5fa0dap-8f      // _k functions)
#define DSV4_AM_LOW_Z (-70.0f)             // below: the e^(z/2) path
#define DSV4_AM_LOW_A_BITS 0xc28c0000u     // the bits of DSV4_AM_LOW_Z (see dsv4_am_main_arg)
#define DSV4_AM_SQRT_MIN 0x1.0p-101f       // the main path's sqrt input is at least this (a normal float)

// e^a * 2^bias for `shifter` = DSV4_AM_SHIFTER + bias, as long as the result is a normal float with
// |rint(a*log2 e) + bias| < 126, from exact IEEE operations (the same bits in C and on every GPU): the rare
// path's exponential. Relative error about 1.5 ulp. log2e and c4 are DSV4_AM_LOG2E and DSV4_AM_EXP_C4.
DSV4_AM_FN float dsv4_am_exp_scaled_k(float a, float shifter, float log2e, float c4) {
  const float j = DSV4_AM_FMA(a, log2e, shifter);          // shifter + k exactly (an integer below 2^24)
  const float kf = DSV4_AM_ADD(j, -shifter);                // k
  float r = DSV4_AM_FMA(kf, -DSV4_AM_LN2_HI, a);            // exact
  r = DSV4_AM_FMA(kf, -DSV4_AM_LN2_LO, r);
  float p = DSV4_AM_FMA(c4, r, 0x1.573a2cp-5f);            // (e^r - 1)/r, minimax degree 4, |r| <= ln2/2
  p = DSV4_AM_FMA(p, r, 0x1.555a7ap-3f);
  p = DSV4_AM_FMA(p, r, 0x1.fffdc6p-2f);
  p = DSV4_AM_FMA(p, r, 0x1.fffff6p-1f);
  p = DSV4_AM_FMA(p, r, 0x1.0p+0f);                         // e^r in [0.70, 1.42]
  // The low 9 bits of j hold k + bias (two's complement); shifted to the exponent field they scale p.
  return DSV4_AM_FLOAT(DSV4_AM_BITS(p) + (DSV4_AM_BITS(j) << 23));
}

// The main path's exponential: e^a for a in [-70, 0] (a normal float in [e^-70, 1]), through MUFU.EX2 on
// the GPU.
// j = shifter + k, k = rint(a * log2e) in [-101, 0]; f = a*log2(e) - k, |f| <= 0.5 + 2^-19, from two fma
// (the first cancels k; each rounds by at most 2^-25 absolute); 2^f in [0.70, 1.42], then 2^k by adding k
// to the exponent field. log2e = DSV4_AM_LOG2E, passed in so that a caller that evaluates many of these can
// hold it in a register (an fma takes one immediate).
DSV4_AM_FN float dsv4_am_exp_main_k(float a, float log2e) {
  const float j = DSV4_AM_FMA(a, log2e, DSV4_AM_SHIFTER);
  const float kf = DSV4_AM_ADD(j, -DSV4_AM_SHIFTER);
  float f = DSV4_AM_FMA(a, log2e, -kf);
  f = DSV4_AM_FMA(a, DSV4_AM_LOG2E_LO, f);
  return DSV4_AM_FLOAT(DSV4_AM_BITS(DSV4_AM_EX2(f)) + (DSV4_AM_BITS(j) << 23));
}

// log1p(t) for t in [0, 1]: t + t^2 Q(t), Q the minimax degree-7 fit of (log1p(t) - t)/t^2 for relative
// error in the result (3.3e-8); c7 = DSV4_AM_LOG_C7. Exact IEEE operations.
DSV4_AM_FN float dsv4_am_log1p_unit_k(float t, float c7) {
  float q = DSV4_AM_FMA(c7, t, -0x1.eca398p-6f);
  q = DSV4_AM_FMA(q, t, 0x1.44707ap-4f);
  q = DSV4_AM_FMA(q, t, -0x1.19af8ep-3f);
  q = DSV4_AM_FMA(q, t, 0x1.884554p-3f);
  q = DSV4_AM_FMA(q, t, -0x1.fd1368p-3f);
  q = DSV4_AM_FMA(q, t, 0x1.5535dep-2f);
  q = DSV4_AM_FMA(q, t, -0x1.ffff14p-2f);
  return DSV4_AM_FMA(q, DSV4_AM_MUL(t, t), t);
}

// a = max(-|z|, -70): one FMNMX. It is -70 exactly (bits DSV4_AM_LOW_A_BITS) for every input off the main
// path (z < -70, +-inf, NaN: max(NaN, -70) = -70, though a max that follows IEEE 754-2008 strictly, as C's
// fmaxf does, gives NaN for a signalling NaN) and for |z| >= 70; every other a is in (-70, -0]. As signed
// integers, the bits of the latter are below DSV4_AM_LOW_A_BITS and those of any NaN a are above.
DSV4_AM_FN float dsv4_am_main_arg(float z) { return fmaxf(-fabsf(z), DSV4_AM_LOW_Z); }

// softplus(z) for finite z >= -70, given a = dsv4_am_main_arg(z); the result lies in [2^-101, FLT_MAX]
// (a normal float, the sqrt's domain). Other inputs give a wrong value: route them to
// dsv4_am_sqrt_softplus_low.
DSV4_AM_FN float dsv4_am_softplus_main_k(float z, float a, float log2e, float log_c7) {
  return DSV4_AM_ADD(fmaxf(z, 0.0f), dsv4_am_log1p_unit_k(dsv4_am_exp_main_k(a, log2e), log_c7));
}

DSV4_AM_FN float dsv4_am_sqrt_softplus_main(float z) {
  return DSV4_AM_SQRT_APPROX(
      dsv4_am_softplus_main_k(z, dsv4_am_main_arg(z), DSV4_AM_LOG2E, DSV4_AM_LOG_C7));
}

// sqrt(softplus(z)) for the other inputs: z < -70 gives e^(z/2) with gradual underflow (-inf -> 0);
// +inf -> +inf; NaN -> NaN. Exact IEEE operations: the same bits in C and on every GPU.
DSV4_AM_FN float dsv4_am_sqrt_softplus_low(float z) {
  if (!(z < 0.0f)) return z;                                 // NaN, +inf
  const float a = fmaxf(DSV4_AM_MUL(z, 0.5f), -110.0f);     // e^-110 rounds to 0 in FP32
  return DSV4_AM_MUL(dsv4_am_exp_scaled_k(a, DSV4_AM_SHIFTER + 64.0f, DSV4_AM_LOG2E, DSV4_AM_EXP_C4),
                     0x1.0p-64f);
}

// Whether z takes the main path (finite, >= -70).
DSV4_AM_FN int dsv4_am_is_main(float z) { return z >= DSV4_AM_LOW_Z && z <= 0x1.fffffep+127f; }

DSV4_AM_FN float dsv4_am_sqrt_softplus(float z) {
  return dsv4_am_is_main(z) ? dsv4_am_sqrt_softplus_main(z) : dsv4_am_sqrt_softplus_low(z);
}

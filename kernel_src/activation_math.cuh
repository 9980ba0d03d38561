// s = sqrt(softplus(z)) in FP32 (SPEC section 2) from IEEE-exact operations: fma, mul, add, max, integer
// operations on bit patterns, and a correctly rounded sqrt. No approximate hardware function (ex2.approx,
// lg2.approx; rsqrt.approx only inside ptxas's own correctly rounded sqrt sequence) decides a result, so
// the same source compiled as C on the CPU gives the same bits as the GPU, and
// tests/cpu/test_activation_math.c proves the error bound by running this very code (and, on a machine
// with a GPU, compares the kernels' bits with it).
//
// Usable from CUDA (NVRTC, included by topk.cuh) and from C11 (the CPU test, built with -ffp-contract=off
// so that no a*b+c is fused behind our back; in CUDA every product is __fmul_rn, which is never fused).
//
// The math, for finite z >= -70 (dsv4_am_softplus_main_k, dsv4_am_sqrt_softplus_main):
//   a  = max(-|z|, -70)                    t = e^a in [e^-70, 1]; for z > 70, z + log1p(e^-z) == z in FP32
//                                          and so is z + log1p(e^-70): the clamp changes nothing
//   t  = 2^k * p(r)                        k = rint(a*log2(e)) by the 1.5*2^23 shifter (one fma),
//                                          r = a - k*ln2 in two fma steps (Cody-Waite: k*LN2_HI is exact),
//                                          p(r) = 1 + r*P(r), P the degree-4 minimax fit of (e^r-1)/r on
//                                          |r| <= ln2/2; 2^k goes in by an integer add to the exponent field
//   L  = t + t^2 * Q(t)                    = log1p(t), Q the degree-7 minimax fit of (log1p(t)-t)/t^2 on
//                                          [0,1], weighted for relative error in L
//   sp = max(z, 0) + L                     softplus, in [2^-101, FLT_MAX] (L >= e^-70 > 2^-101)
//   s  = sqrt(sp)                          dsv4_am_sqrt_in_range: IEEE sqrt on that range
// 1 + 10 + 9 + 2 + 5 = 27 instructions on the GPU (plus one to spot the rare inputs), none a branch.
// The rest (dsv4_am_sqrt_softplus_low): z < -70, where log1p(e^z) = e^z (1 - e^z/2 + ...) equals e^z far
// below FP32 precision, so s = e^(z/2), computed as (2^(k+64) p(r)) * 2^-64 so that it underflows
// gradually (s is subnormal below z ~ -174.7 and 0 below z ~ -207.9; -inf -> 0); +inf -> +inf; NaN -> NaN.
//
// Error, proven by running every float through this code (tests/cpu/test_activation_math.c with
// DSV4_TEST_EXHAUSTIVE=1): |s - sqrt(softplus(z))| < 2^-22 sqrt(softplus(z)) for every float z whose s is
// a normal float; the largest is 1.68e-7 = 2.81 * 2^-24. The parts: e^a about 1.5 ulp (polynomial 0.9e-7,
// reduction and rounding), log1p about 1.5 ulp (polynomial 0.33e-7 plus roundings), both halved by the
// sqrt, which adds its own half ulp.
#pragma once

#ifdef __CUDACC__
#define DSV4_AM_FN __device__ __forceinline__
typedef unsigned dsv4_am_u32;
#define DSV4_AM_FMA(a, b, c) __fmaf_rn((a), (b), (c))
#define DSV4_AM_MUL(a, b) __fmul_rn((a), (b))
#define DSV4_AM_ADD(a, b) __fadd_rn((a), (b))
#define DSV4_AM_BITS(x) __float_as_uint(x)
#define DSV4_AM_FLOAT(u) __uint_as_float(u)
#else
#include <math.h>
#include <stdint.h>
#include <string.h>
#define DSV4_AM_FN static inline
typedef uint32_t dsv4_am_u32;
#define DSV4_AM_FMA(a, b, c) fmaf((a), (b), (c))
#define DSV4_AM_MUL(a, b) ((a) * (b))
#define DSV4_AM_ADD(a, b) ((a) + (b))
#define DSV4_AM_SQRT(x) sqrtf(x)
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
#define DSV4_AM_LOG2E 0x1.715476p+0f
#define DSV4_AM_LN2_HI 0x1.62e4p-1f        // 15 significant bits: k * LN2_HI is exact for |k| < 512
#define DSV4_AM_LN2_LO 0x1.7f7d1cp-20f     // ln2 - LN2_HI, rounded
#define DSV4_AM_EXP_C4 0x1.0fa34ap-7f      // leading coefficients of the two polynomials (see the
#define DSV4_AM_LOG_C7 0x1.5fa0dap-8f      // _k functions)
#define DSV4_AM_LOW_Z (-70.0f)             // below: the e^(z/2) path
#define DSV4_AM_SQRT_MIN 0x1.0p-101f       // dsv4_am_sqrt_in_range's domain is [2^-101, FLT_MAX]

// Correctly rounded sqrt of x in [2^-101, FLT_MAX]. On the GPU this is the instruction sequence that ptxas
// itself emits for sqrt.rn.f32 on that range (MUFU.RSQ, two multiplies, two fma: checked identical for
// sm_80, sm_86, sm_89, sm_90a, sm_100a, sm_103a and sm_120 with CUDA 13.0), minus the range test and the
// call to the slow path for zero, subnormal, infinite, negative and NaN inputs, which the callers here
// never pass. Being sqrt.rn, it is IEEE sqrt, which is what the C build uses.
DSV4_AM_FN float dsv4_am_sqrt_in_range(float x) {
#ifdef __CUDACC__
  float y, h, hy, e;
  asm("rsqrt.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  asm("mul.ftz.f32 %0, %1, %2;" : "=f"(h) : "f"(x), "f"(y));
  asm("mul.ftz.f32 %0, %1, 0f3F000000;" : "=f"(hy) : "f"(y));
  asm("neg.f32 %0, %1;" : "=f"(e) : "f"(h));
  asm("fma.rn.f32 %0, %0, %1, %2;" : "+f"(e) : "f"(h), "f"(x));
  asm("fma.rn.f32 %0, %0, %1, %2;" : "+f"(e) : "f"(hy), "f"(h));
  return e;
#else
  return DSV4_AM_SQRT(x);
#endif
}

// e^a * 2^bias for `shifter` = DSV4_AM_SHIFTER + bias, as long as the result is a normal float with
// |rint(a*log2 e) + bias| < 126. Relative error about 1.5 ulp. log2e and c4 are DSV4_AM_LOG2E and
// DSV4_AM_EXP_C4, passed in so that a caller that evaluates many of these can hold them in registers.
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

// log1p(t) for t in [0, 1]: t + t^2 Q(t), Q the minimax degree-7 fit of (log1p(t) - t)/t^2 for relative
// error in the result; c7 = DSV4_AM_LOG_C7. Relative error about 1.5 ulp.
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

// softplus(z) for finite z >= -70; the result lies in [2^-101, FLT_MAX] (the sqrt's range). Other inputs
// give a wrong value: route them to dsv4_am_sqrt_softplus_low.
DSV4_AM_FN float dsv4_am_softplus_main_k(float z, float log2e, float exp_c4, float log_c7) {
  const float a = fmaxf(-fabsf(z), DSV4_AM_LOW_Z);
  const float t = dsv4_am_exp_scaled_k(a, DSV4_AM_SHIFTER, log2e, exp_c4);
  return DSV4_AM_ADD(fmaxf(z, 0.0f), dsv4_am_log1p_unit_k(t, log_c7));
}

DSV4_AM_FN float dsv4_am_sqrt_softplus_main(float z) {
  return dsv4_am_sqrt_in_range(dsv4_am_softplus_main_k(z, DSV4_AM_LOG2E, DSV4_AM_EXP_C4, DSV4_AM_LOG_C7));
}

// sqrt(softplus(z)) for the other inputs: z < -70 gives e^(z/2) with gradual underflow (-inf -> 0);
// +inf -> +inf; NaN -> NaN.
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

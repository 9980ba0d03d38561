// Shared device helpers for dsv4 kernels. Compiled by NVRTC only; no host headers.
#pragma once

namespace dsv4 {

typedef long long i64;

// Order-preserving image of an FP32 value as an unsigned key: a > b (as floats) <=> key(a) > key(b),
// -0.0 == +0.0, and every NaN maps below -inf (to 0), so a NaN never wins a max.
__device__ __forceinline__ unsigned float_order_key(float f) {
  unsigned u = __float_as_uint(f);
  if (f != f) return 0u;                          // NaN: lowest of all
  if (u == 0x80000000u) u = 0u;                   // -0.0 == +0.0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

}  // namespace dsv4

// Device helpers shared by the CUDA kernels (CUDA runtime only, no torch headers).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 600
#error "kp3d CUDA kernels need sm_60 or newer (atomicAdd on double)"
#endif

namespace kp3d::cuda {

constexpr unsigned kFullMask = 0xffffffffu;

// Blocks for a grid-stride loop over `work` items: at most 2^31 - 1 (the grid limit), the
// kernels loop over the rest. `work` > 0.
inline unsigned grid_for(int64_t work) {
  return static_cast<unsigned>(work < 2147483647 ? work : 2147483647);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Sum over the 32 lanes of a warp (every lane must call it; lane 0 holds the total).
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(kFullMask, v, offset);
  return v;
}

// IEEE round-to-nearest arithmetic that nvcc never contracts into an FMA, so that a result is
// bit-identical to the CPU kernel's (compiled for x86-64 without FMA contraction).
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }

}  // namespace kp3d::cuda

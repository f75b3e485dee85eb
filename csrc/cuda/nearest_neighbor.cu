// CUDA nearest neighbour (the nearest *other* point, ties to the lowest index) and repulsion
// loss L_b = -sum_i d_i exp(-d_i / h) (docs/kernels.md).
//
// One block per sample, any K: the block takes the sample's points kThreads at a time, and
// scans the candidates through shared memory in tiles of kTile points. Squared distances are
// summed over the coordinates in the CPU kernel's order with non-contracted IEEE operations,
// so distances and indices are bit-identical to the CPU kernel's.
//
// Backward: one block per sample as well, so no global atomics: the gradient of point j is
// gathered, not scattered, as the CPU kernel's serial scatter adds it:
//   grad[j] = sum over i ascending of (+u_i if i == j) and (-u_i if n_i == j),
//   u_i = (c_i / d_i) (P_i - P_{n_i}), skipped where d_i == 0,
// with c_i = grad_dist[i] (nn) or grad_loss dl/dd(d_i) (repulsion). For nn_bwd the result is
// bit-identical to the CPU kernel's; for repulsion it can differ in the last bits (exp).
#include <cmath>

#include "common.cuh"
#include "launchers.h"
#include "segment_math.h"

namespace kp3d::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 256;  // candidate points staged per pass

template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    nn_fwd_kernel(const T* __restrict__ points, int64_t B, int64_t K, T* __restrict__ dist,
                  int64_t* __restrict__ index, T* __restrict__ loss, T inv_h) {
  __shared__ T tile[kTile * D];
  __shared__ double part[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    const T* pb = points + b * K * D;
    double lsum = 0;  // this thread's repulsion terms, summed in double as the CPU kernel does
    for (int64_t i0 = 0; i0 < K; i0 += kThreads) {
      const int64_t i = i0 + threadIdx.x;
      const bool valid = i < K;
      T pi[D];
#pragma unroll
      for (int k = 0; k < D; ++k) pi[k] = valid ? pb[i * D + k] : T(0);
      T best = infinity_of<T>();
      int64_t arg = i == 0 ? 1 : 0;
      for (int64_t j0 = 0; j0 < K; j0 += kTile) {
        const int n = static_cast<int>(K - j0 < kTile ? K - j0 : kTile);
        __syncthreads();  // every thread is done with the previous tile
        for (int t = threadIdx.x; t < n * D; t += kThreads) tile[t] = pb[j0 * D + t];
        __syncthreads();
        if (valid) {
          for (int jj = 0; jj < n; ++jj) {
            const int64_t j = j0 + jj;
            if (j == i) continue;
            T d2 = T(0);
#pragma unroll
            for (int k = 0; k < D; ++k) {
              const T diff = sub_rn(pi[k], tile[jj * D + k]);
              d2 = add_rn(d2, mul_rn(diff, diff));
            }
            if (better(d2, best)) {
              best = d2;
              arg = j;
            }
          }
        }
      }
      if (valid) {
        const T d = best > T(0) || best != best ? sqrt(best) : T(0);
        index[b * K + i] = arg;
        dist[b * K + i] = d;
        if (loss != nullptr) lsum += static_cast<double>(repulsion_term(d, inv_h));
      }
    }
    if (loss != nullptr) {  // the same for the whole block
      lsum = warp_sum(lsum);
      __syncthreads();  // `part` is no longer read for the previous sample
      if (lane == 0) part[warp] = lsum;
      __syncthreads();
      if (warp == 0) {
        lsum = warp_sum(lane < kWarps ? part[lane] : 0.0);
        if (lane == 0) loss[b] = static_cast<T>(lsum);
      }
    }
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads)
    nn_bwd_kernel(const T* __restrict__ grad_dist, const T* __restrict__ grad_loss,
                  const T* __restrict__ points, const T* __restrict__ dist,
                  const int64_t* __restrict__ index, int64_t B, int64_t K, T inv_h,
                  T* __restrict__ grad) {
  __shared__ int64_t nbr[kTile];  // n_i, or -1 where point i contributes nothing
  __shared__ T coef[kTile];       // c_i / d_i
  for (int64_t b = blockIdx.x; b < B; b += gridDim.x) {
    const T* pb = points + b * K * D;
    for (int64_t j0 = 0; j0 < K; j0 += kThreads) {
      const int64_t j = j0 + threadIdx.x;
      T acc[D];
#pragma unroll
      for (int k = 0; k < D; ++k) acc[k] = T(0);
      for (int64_t i0 = 0; i0 < K; i0 += kTile) {
        const int n = static_cast<int>(K - i0 < kTile ? K - i0 : kTile);
        __syncthreads();  // every thread is done with the previous tile
        for (int t = threadIdx.x; t < n; t += kThreads) {
          const int64_t i = i0 + t;
          const T d = dist[b * K + i];
          const int64_t ni = index[b * K + i];
          // d == 0: coincident points, gradient 0 by contract; an index that is not a
          // neighbour from nn_fwd contributes nothing (and is never dereferenced).
          const bool skip = d == T(0) || ni < 0 || ni >= K;
          const T c = grad_loss != nullptr ? grad_loss[b] * repulsion_term_grad(d, inv_h)
                                           : grad_dist[b * K + i];
          nbr[t] = skip ? -1 : ni;
          coef[t] = c / d;
        }
        __syncthreads();
        if (j < K) {
          for (int t = 0; t < n; ++t) {
            const int64_t ni = nbr[t];
            if (ni < 0) continue;
            const int64_t i = i0 + t;
            const bool own = i == j, neighbour = ni == j;
            if (!own && !neighbour) continue;
            const T s = coef[t];
#pragma unroll
            for (int k = 0; k < D; ++k) {
              const T u = mul_rn(s, sub_rn(pb[i * D + k], pb[ni * D + k]));
              if (own) acc[k] = add_rn(acc[k], u);        // the CPU's grad[i] += u
              if (neighbour) acc[k] = sub_rn(acc[k], u);  // the CPU's grad[n_i] -= u
            }
          }
        }
      }
      if (j < K) {
#pragma unroll
        for (int k = 0; k < D; ++k) grad[(b * K + j) * D + k] = acc[k];
      }
    }
  }
}

template <typename T, int D>
void launch_fwd(const T* points, int64_t B, int64_t K, T* dist, int64_t* index, T* loss, T inv_h,
                cudaStream_t stream) {
  nn_fwd_kernel<T, D><<<grid_for(B), kThreads, 0, stream>>>(points, B, K, dist, index, loss,
                                                            inv_h);
}

template <typename T, int D>
void launch_bwd(const T* grad_dist, const T* grad_loss, const T* points, const T* dist,
                const int64_t* index, int64_t B, int64_t K, T inv_h, T* grad,
                cudaStream_t stream) {
  nn_bwd_kernel<T, D><<<grid_for(B), kThreads, 0, stream>>>(grad_dist, grad_loss, points, dist,
                                                            index, B, K, inv_h, grad);
}

}  // namespace

template <typename T>
cudaError_t nn_fwd(const T* points, int64_t B, int64_t K, int64_t D, T* dist, int64_t* index,
                   T* loss, double bandwidth, cudaStream_t stream) {
  if (D != 2 && D != 3) return cudaErrorInvalidValue;
  if (B == 0) return cudaSuccess;
  const T inv_h = loss != nullptr ? T(1) / T(bandwidth) : T(0);
  if (D == 2) {
    launch_fwd<T, 2>(points, B, K, dist, index, loss, inv_h, stream);
  } else {
    launch_fwd<T, 3>(points, B, K, dist, index, loss, inv_h, stream);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t nn_bwd(const T* grad_dist, const T* grad_loss, const T* points, const T* dist,
                   const int64_t* index, int64_t B, int64_t K, int64_t D, double bandwidth,
                   T* grad_points, cudaStream_t stream) {
  if (D != 2 && D != 3) return cudaErrorInvalidValue;
  if ((grad_dist == nullptr) == (grad_loss == nullptr)) return cudaErrorInvalidValue;
  if (B == 0 || K == 0) return cudaSuccess;
  const T inv_h = grad_loss != nullptr ? T(1) / T(bandwidth) : T(0);
  if (D == 2) {
    launch_bwd<T, 2>(grad_dist, grad_loss, points, dist, index, B, K, inv_h, grad_points, stream);
  } else {
    launch_bwd<T, 3>(grad_dist, grad_loss, points, dist, index, B, K, inv_h, grad_points, stream);
  }
  return cudaGetLastError();
}

#define KP3D_INSTANTIATE(T)                                                                  \
  template cudaError_t nn_fwd<T>(const T*, int64_t, int64_t, int64_t, T*, int64_t*, T*,      \
                                 double, cudaStream_t);                                      \
  template cudaError_t nn_bwd<T>(const T*, const T*, const T*, const T*, const int64_t*,     \
                                 int64_t, int64_t, int64_t, double, T*, cudaStream_t);
KP3D_INSTANTIATE(float)
KP3D_INSTANTIATE(double)
#undef KP3D_INSTANTIATE

}  // namespace kp3d::cuda

// Fused CPU soft-argmax: one pass over each heatmap forward (online max and sums), one backward.
//
// stats (B, K, 2) saved for the backward: softmax: (max of h/T, sum of exp(h/T - max));
// sum: (the raw sum of h, max(sum, 1e-12)).
#include "common.h"
#include "segment_math.h"

namespace kp3d::cpu {
namespace {

constexpr double kSumFloor = 1e-12;

template <typename T>
void forward_impl(const at::Tensor& heatmaps, double temperature, bool softmax, at::Tensor& coords,
                  at::Tensor& stats) {
  const int64_t B = heatmaps.size(0), K = heatmaps.size(1), H = heatmaps.size(2),
                W = heatmaps.size(3);
  const T* h = heatmaps.data_ptr<T>();
  T* out = coords.data_ptr<T>();
  T* st = stats.data_ptr<T>();
  const T inv_t = T(1) / T(temperature);
  at::parallel_for(0, B * K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t map = begin; map < end; ++map) {
      const T* hm = h + map * H * W;
      // Online softmax in double: running max m, and sums of q, q x, q y rescaled when m grows.
      double m = -std::numeric_limits<double>::infinity(), z = 0, sx = 0, sy = 0;
      bool nan = false;
      for (int64_t r = 0; r < H; ++r) {
        const double y = pixel_centre<T>(r, H);
        for (int64_t c = 0; c < W; ++c) {
          const double x = pixel_centre<T>(c, W);
          const double v = softmax ? double(hm[r * W + c] * inv_t) : double(hm[r * W + c]);
          if (v != v) nan = true;
          if (softmax) {
            if (v > m) {
              const double scale = std::exp(m - v);  // 0 on the first finite value
              z *= scale, sx *= scale, sy *= scale;
              m = v;
            }
            // -inf carries no weight (as in torch.softmax), even before the first finite value
            const double q = v == -std::numeric_limits<double>::infinity() ? 0.0 : std::exp(v - m);
            z += q, sx += q * x, sy += q * y;
          } else {
            z += v, sx += v * x, sy += v * y;
          }
        }
      }
      const double nanv = std::numeric_limits<double>::quiet_NaN();
      if (softmax) {
        out[map * 2] = T(nan ? nanv : sx / z);
        out[map * 2 + 1] = T(nan ? nanv : sy / z);
        st[map * 2] = T(m);
        st[map * 2 + 1] = T(z);
      } else {
        // NaN stays NaN, so that the backward (which divides by it) is NaN too
        const double norm = z != z ? z : (z >= kSumFloor ? z : kSumFloor);
        out[map * 2] = T(sx / norm);
        out[map * 2 + 1] = T(sy / norm);
        st[map * 2] = T(z);
        st[map * 2 + 1] = T(norm);
      }
    }
  });
}

template <typename T>
void backward_impl(const at::Tensor& grad_coords, const at::Tensor& heatmaps,
                   const at::Tensor& coords, const at::Tensor& stats, double temperature,
                   bool softmax, at::Tensor& grad) {
  const int64_t B = heatmaps.size(0), K = heatmaps.size(1), H = heatmaps.size(2),
                W = heatmaps.size(3);
  const T* h = heatmaps.data_ptr<T>();
  const T* gc = grad_coords.data_ptr<T>();
  const T* co = coords.data_ptr<T>();
  const T* st = stats.data_ptr<T>();
  T* gh = grad.data_ptr<T>();
  const T inv_t = T(1) / T(temperature);
  at::parallel_for(0, B * K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t map = begin; map < end; ++map) {
      const T gx = gc[map * 2], gy = gc[map * 2 + 1];
      const T* hm = h + map * H * W;
      T* g = gh + map * H * W;
      if (softmax) {
        // d c / d h(p) = q(p) / T (p - c)
        const T cx = co[map * 2], cy = co[map * 2 + 1], m = st[map * 2], inv_z = T(1) / st[map * 2 + 1];
        const T base = -(gx * cx + gy * cy);
        for (int64_t r = 0; r < H; ++r) {
          const T y = pixel_centre<T>(r, H);
          for (int64_t c = 0; c < W; ++c) {
            const T q = exp(hm[r * W + c] * inv_t - m) * inv_z;
            g[r * W + c] = q * inv_t * (gx * pixel_centre<T>(c, W) + gy * y + base);
          }
        }
      } else {
        // c = sum h p / n with n = max(sum h, 1e-12): d c / d h(p) = (p - c) / n, or p / n where
        // the floor is active (then n does not depend on h).
        const T n = st[map * 2 + 1];
        const bool floored = !(st[map * 2] >= T(kSumFloor));
        const T base = floored ? T(0) : -(gx * co[map * 2] + gy * co[map * 2 + 1]);
        const T inv_n = T(1) / n;
        for (int64_t r = 0; r < H; ++r) {
          const T y = pixel_centre<T>(r, H);
          for (int64_t c = 0; c < W; ++c)
            g[r * W + c] = (gx * pixel_centre<T>(c, W) + gy * y + base) * inv_n;
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> soft_argmax_fwd(const at::Tensor& heatmaps, double temperature,
                                                   bool softmax) {
  check_cpu_float(heatmaps, "heatmaps");
  TORCH_CHECK(heatmaps.dim() == 4, "heatmaps must be (B, K, H, W)");
  auto coords = at::empty({heatmaps.size(0), heatmaps.size(1), 2}, heatmaps.options());
  auto stats = at::empty({heatmaps.size(0), heatmaps.size(1), 2}, heatmaps.options());
  AT_DISPATCH_FLOATING_TYPES(heatmaps.scalar_type(), "soft_argmax_fwd", [&] {
    forward_impl<scalar_t>(heatmaps, temperature, softmax, coords, stats);
  });
  return {coords, stats};
}

at::Tensor soft_argmax_bwd(const at::Tensor& grad_coords, const at::Tensor& heatmaps,
                           const at::Tensor& coords, const at::Tensor& stats, double temperature,
                           bool softmax) {
  check_cpu_float(grad_coords, "grad_coords");
  check_cpu_float(heatmaps, "heatmaps");
  auto grad = at::empty_like(heatmaps);
  AT_DISPATCH_FLOATING_TYPES(heatmaps.scalar_type(), "soft_argmax_bwd", [&] {
    backward_impl<scalar_t>(grad_coords, heatmaps, coords, stats, temperature, softmax, grad);
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(kp3d_kernels, CPU, m) {
  m.impl("soft_argmax_fwd", &soft_argmax_fwd);
  m.impl("soft_argmax_bwd", &soft_argmax_bwd);
}

}  // namespace kp3d::cpu

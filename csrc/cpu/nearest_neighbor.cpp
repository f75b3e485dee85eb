// CPU nearest neighbour (the nearest *other* point of each point, ties to the lowest index) and
// the repulsion loss L_b = -sum_i d_i exp(-d_i / h). O(K^2 D) per sample, samples in parallel;
// the backward of a sample runs serially in it, so no atomics and reproducible sums.
#include "common.h"
#include "segment_math.h"

namespace kp3d::cpu {
namespace {

template <typename T>
void nn_impl(const at::Tensor& points, at::Tensor& dist, at::Tensor& index) {
  const int64_t B = points.size(0), K = points.size(1), D = points.size(2);
  const T* p = points.data_ptr<T>();
  T* dd = dist.data_ptr<T>();
  int64_t* ii = index.data_ptr<int64_t>();
  at::parallel_for(0, B * K, 16, [&](int64_t begin, int64_t end) {
    for (int64_t bi = begin; bi < end; ++bi) {
      const int64_t b = bi / K, i = bi % K;
      const T* pi = p + bi * D;
      T best = std::numeric_limits<T>::infinity();
      int64_t arg = i == 0 ? 1 : 0;
      for (int64_t j = 0; j < K; ++j) {
        if (j == i) continue;
        const T* pj = p + (b * K + j) * D;
        T d2 = 0;
        for (int64_t k = 0; k < D; ++k) {
          const T diff = pi[k] - pj[k];
          d2 += diff * diff;
        }
        if (better(d2, best)) best = d2, arg = j;
      }
      ii[bi] = arg;
      dd[bi] = best > T(0) || best != best ? sqrt(best) : T(0);
    }
  });
}

// grad[i] += g_i u_i, grad[n_i] -= g_i u_i with u_i = (P_i - P_n) / d_i (0 where d_i = 0).
template <typename T>
void scatter_impl(const at::Tensor& points, const at::Tensor& dist, const at::Tensor& index,
                  const std::function<T(int64_t, int64_t)>& grad_of, at::Tensor& grad) {
  const int64_t B = points.size(0), K = points.size(1), D = points.size(2);
  const T* p = points.data_ptr<T>();
  const T* dd = dist.data_ptr<T>();
  const int64_t* ii = index.data_ptr<int64_t>();
  T* g = grad.data_ptr<T>();
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      std::fill(g + b * K * D, g + (b + 1) * K * D, T(0));
      for (int64_t i = 0; i < K; ++i) {
        const int64_t bi = b * K + i;
        const T d = dd[bi];
        if (d == T(0)) continue;  // coincident points: gradient 0 by contract
        const T s = grad_of(b, i) / d;
        const int64_t n = ii[bi];
        for (int64_t k = 0; k < D; ++k) {
          const T u = s * (p[bi * D + k] - p[(b * K + n) * D + k]);
          g[bi * D + k] += u;
          g[(b * K + n) * D + k] -= u;
        }
      }
    }
  });
}

void check_points(const at::Tensor& points) {
  check_cpu_float(points, "points");
  TORCH_CHECK(points.dim() == 3 && points.size(1) >= 2, "points must be (B, K >= 2, D)");
}

std::tuple<at::Tensor, at::Tensor> nn_fwd(const at::Tensor& points) {
  check_points(points);
  auto dist = at::empty({points.size(0), points.size(1)}, points.options());
  auto index = at::empty({points.size(0), points.size(1)}, points.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "nn_fwd",
                             [&] { nn_impl<scalar_t>(points, dist, index); });
  return {dist, index};
}

at::Tensor nn_bwd(const at::Tensor& grad_dist, const at::Tensor& points, const at::Tensor& dist,
                  const at::Tensor& index) {
  check_points(points);
  check_cpu_float(grad_dist, "grad_dist");
  auto grad = at::empty_like(points);
  const int64_t K = points.size(1);
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "nn_bwd", [&] {
    const scalar_t* gd = grad_dist.data_ptr<scalar_t>();
    scatter_impl<scalar_t>(points, dist, index,
                           [&](int64_t b, int64_t i) { return gd[b * K + i]; }, grad);
  });
  return grad;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> repulsion_fwd(const at::Tensor& points,
                                                             double bandwidth) {
  auto [dist, index] = nn_fwd(points);
  auto loss = at::empty({points.size(0)}, points.options());
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "repulsion_fwd", [&] {
    const int64_t B = points.size(0), K = points.size(1);
    const scalar_t inv_h = scalar_t(1) / scalar_t(bandwidth);
    const scalar_t* d = dist.data_ptr<scalar_t>();
    scalar_t* l = loss.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) {
      double sum = 0;
      for (int64_t i = 0; i < K; ++i) sum += repulsion_term(d[b * K + i], inv_h);
      l[b] = scalar_t(sum);
    }
  });
  return {loss, dist, index};
}

at::Tensor repulsion_bwd(const at::Tensor& grad_loss, const at::Tensor& points,
                         const at::Tensor& dist, const at::Tensor& index, double bandwidth) {
  check_points(points);
  check_cpu_float(grad_loss, "grad_loss");
  auto grad = at::empty_like(points);
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "repulsion_bwd", [&] {
    const int64_t K = points.size(1);
    const scalar_t inv_h = scalar_t(1) / scalar_t(bandwidth);
    const scalar_t* gl = grad_loss.data_ptr<scalar_t>();
    const scalar_t* d = dist.data_ptr<scalar_t>();
    scatter_impl<scalar_t>(
        points, dist, index,
        [&](int64_t b, int64_t i) { return gl[b] * repulsion_term_grad(d[b * K + i], inv_h); },
        grad);
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(kp3d_kernels, CPU, m) {
  m.impl("nn_fwd", &nn_fwd);
  m.impl("nn_bwd", &nn_bwd);
  m.impl("repulsion_fwd", &repulsion_fwd);
  m.impl("repulsion_bwd", &repulsion_bwd);
}

}  // namespace kp3d::cpu

// Fused CPU edge map: per pixel, the winning edge of max_e w_e exp(-f_e), and its gradient.
// Extra memory is O(B H W) (the int32 winner per pixel) plus O(B E) per-edge constants; the
// (B, E, H, W) scores are never formed.
#include <vector>

#include "common.h"
#include "segment_math.h"

namespace kp3d::cpu {
namespace {

template <typename T>
std::vector<Segment<T>> make_segments(const T* kp, const T* w, const int64_t* edges, int64_t K,
                                      int64_t E) {
  std::vector<Segment<T>> segs(E);
  for (int64_t e = 0; e < E; ++e) {
    const T* a = kp + 2 * edges[2 * e];
    const T* b = kp + 2 * edges[2 * e + 1];
    segs[e] = make_segment<T>(a[0], a[1], b[0], b[1], w[e]);
  }
  return segs;
}

// The running argmin over edges for one image row; the falloff is a template argument so that
// the pixel loop is branch-free and vectorises (with -fno-trapping-math -fno-math-errno, which
// let GCC if-convert the float compares and sqrt without changing any result).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// One portable build, and an AVX2+FMA clone chosen at load time where the CPU has it (8-wide
// float vectors instead of SSE's 4).
#define KP3D_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define KP3D_CPU_CLONES
#endif

template <typename T, bool Gaussian>
KP3D_CPU_CLONES void best_edges(const Segment<T>* segs, int64_t E, const T* xs, T py, T inv_sigma, int64_t W,
                T* best, int32_t* arg) {
  for (int64_t e = 0; e < E; ++e) {
    const Segment<T> s = segs[e];
    const int32_t ei = static_cast<int32_t>(e);
    for (int64_t c = 0; c < W; ++c) {
      const T cost = falloff_exponent(project(s, xs[c], py), inv_sigma, Gaussian) + s.neg_log_w;
      const T b = best[c];
      const bool take = better(cost, b);
      const int32_t mask = -static_cast<int32_t>(take);  // an integer blend GCC can vectorise
      best[c] = take ? cost : b;
      arg[c] = (ei & mask) | (arg[c] & ~mask);
    }
  }
}

template <typename T>
void forward_impl(const at::Tensor& keypoints, const at::Tensor& weights,
                  const at::Tensor& edges, int64_t H, int64_t W, double sigma, bool gaussian,
                  at::Tensor& out, at::Tensor& winner) {
  const int64_t B = keypoints.size(0), K = keypoints.size(1), E = edges.size(0);
  const T* kp = keypoints.data_ptr<T>();
  const T* w = weights.data_ptr<T>();
  const int64_t* ed = edges.data_ptr<int64_t>();
  T* o = out.data_ptr<T>();
  int32_t* win = winner.data_ptr<int32_t>();
  const T inv_sigma = T(1) / T(sigma);

  std::vector<std::vector<Segment<T>>> segs(B);
  for (int64_t b = 0; b < B; ++b) segs[b] = make_segments<T>(kp + b * K * 2, w + b * E, ed, K, E);

  // One task per image row: the edge loop is outside the pixel loop so that the pixel loop
  // (fixed y, consecutive x) vectorises.
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> best(W), xs(W);
    std::vector<int32_t> arg(W);
    for (int64_t c = 0; c < W; ++c) xs[c] = pixel_centre<T>(c, W);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H, r = row % H;
      const T py = pixel_centre<T>(r, H);
      std::fill(best.begin(), best.end(), std::numeric_limits<T>::infinity());
      std::fill(arg.begin(), arg.end(), 0);
      const Segment<T>* sb = segs[b].data();
      if (gaussian)
        best_edges<T, true>(sb, E, xs.data(), py, inv_sigma, W, best.data(), arg.data());
      else
        best_edges<T, false>(sb, E, xs.data(), py, inv_sigma, W, best.data(), arg.data());
      T* orow = o + row * W;
      int32_t* wrow = win + row * W;
      for (int64_t c = 0; c < W; ++c) {
        orow[c] = exp(-best[c]);
        wrow[c] = arg[c];
      }
    }
  });
}

template <typename T>
void backward_impl(const at::Tensor& grad_out, const at::Tensor& keypoints,
                   const at::Tensor& weights, const at::Tensor& edges, const at::Tensor& winner,
                   double sigma, bool gaussian, at::Tensor& grad_kp, at::Tensor& grad_w) {
  const int64_t B = keypoints.size(0), K = keypoints.size(1), E = edges.size(0);
  const int64_t H = winner.size(1), W = winner.size(2);
  const T* kp = keypoints.data_ptr<T>();
  const T* w = weights.data_ptr<T>();
  const int64_t* ed = edges.data_ptr<int64_t>();
  const T* go = grad_out.data_ptr<T>();
  const int32_t* win = winner.data_ptr<int32_t>();
  const T inv_sigma = T(1) / T(sigma);

  // Per sample: per-edge sums (dw, dPa, dPb) over that sample's pixels, then a scatter to the
  // keypoints. Samples run in parallel; within a sample the rows are split into chunks, each
  // chunk with its own accumulator, summed in a fixed order so that results are reproducible.
  const int64_t chunks_per_sample = std::max<int64_t>(1, std::min<int64_t>(
      H, (at::get_num_threads() + B - 1) / B));
  const int64_t rows_per_chunk = (H + chunks_per_sample - 1) / chunks_per_sample;
  std::vector<double> acc(static_cast<size_t>(B * chunks_per_sample * E * 5), 0.0);

  at::parallel_for(0, B * chunks_per_sample, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks_per_sample, chunk = task % chunks_per_sample;
      const std::vector<Segment<T>> segs = make_segments<T>(kp + b * K * 2, w + b * E, ed, K, E);
      double* a = acc.data() + task * E * 5;
      const int64_t r0 = chunk * rows_per_chunk, r1 = std::min(H, r0 + rows_per_chunk);
      for (int64_t r = r0; r < r1; ++r) {
        const T py = pixel_centre<T>(r, H);
        const int64_t base = (b * H + r) * W;
        for (int64_t c = 0; c < W; ++c) {
          const T g = go[base + c];
          const int64_t e = win[base + c];
          const Segment<T>& s = segs[e];
          const Projection<T> pr = project(s, pixel_centre<T>(c, W), py);
          const T f = falloff_exponent(pr, inv_sigma, gaussian);
          const EdgeGrad<T> eg = edge_grad(s, pr, w[b * E + e], f, inv_sigma, gaussian, g);
          double* ae = a + e * 5;
          ae[0] += eg.w;
          ae[1] += eg.ax;
          ae[2] += eg.ay;
          ae[3] += eg.bx;
          ae[4] += eg.by;
        }
      }
    }
  });

  T* gk = grad_kp.data_ptr<T>();
  T* gw = grad_w.data_ptr<T>();
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      std::vector<double> gkb(K * 2, 0.0);
      for (int64_t e = 0; e < E; ++e) {
        double s[5] = {0, 0, 0, 0, 0};
        for (int64_t chunk = 0; chunk < chunks_per_sample; ++chunk) {
          const double* ae = acc.data() + ((b * chunks_per_sample + chunk) * E + e) * 5;
          for (int j = 0; j < 5; ++j) s[j] += ae[j];
        }
        gw[b * E + e] = static_cast<T>(s[0]);
        const int64_t ia = ed[2 * e], ib = ed[2 * e + 1];
        gkb[2 * ia] += s[1];
        gkb[2 * ia + 1] += s[2];
        gkb[2 * ib] += s[3];
        gkb[2 * ib + 1] += s[4];
      }
      for (int64_t j = 0; j < K * 2; ++j) gk[b * K * 2 + j] = static_cast<T>(gkb[j]);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> edge_map_fwd(const at::Tensor& keypoints,
                                                const at::Tensor& weights,
                                                const at::Tensor& edges, int64_t height,
                                                int64_t width, double sigma, bool gaussian) {
  check_cpu_float(keypoints, "keypoints");
  check_cpu_float(weights, "weights");
  TORCH_CHECK(edges.scalar_type() == at::kLong && edges.is_contiguous(), "edges must be int64");
  auto out = at::empty({keypoints.size(0), height, width}, keypoints.options());
  auto winner = at::empty({keypoints.size(0), height, width}, keypoints.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(keypoints.scalar_type(), "edge_map_fwd", [&] {
    forward_impl<scalar_t>(keypoints, weights, edges, height, width, sigma, gaussian, out, winner);
  });
  return {out, winner};
}

std::tuple<at::Tensor, at::Tensor> edge_map_bwd(const at::Tensor& grad_out,
                                                const at::Tensor& keypoints,
                                                const at::Tensor& weights,
                                                const at::Tensor& edges,
                                                const at::Tensor& winner, double sigma,
                                                bool gaussian) {
  check_cpu_float(grad_out, "grad_out");
  check_cpu_float(keypoints, "keypoints");
  check_cpu_float(weights, "weights");
  TORCH_CHECK(winner.scalar_type() == at::kInt && winner.is_contiguous(), "winner must be int32");
  auto grad_kp = at::empty_like(keypoints);
  auto grad_w = at::empty_like(weights);
  AT_DISPATCH_FLOATING_TYPES(keypoints.scalar_type(), "edge_map_bwd", [&] {
    backward_impl<scalar_t>(grad_out, keypoints, weights, edges, winner, sigma, gaussian, grad_kp,
                            grad_w);
  });
  return {grad_kp, grad_w};
}

}  // namespace

TORCH_LIBRARY_IMPL(kp3d_kernels, CPU, m) {
  m.impl("edge_map_fwd", &edge_map_fwd);
  m.impl("edge_map_bwd", &edge_map_bwd);
}

}  // namespace kp3d::cpu

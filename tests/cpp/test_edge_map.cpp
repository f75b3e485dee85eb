// C++ test of the compiled ops through the dispatcher (run by ctest, see CMakeLists.txt): the
// edge map on a hand-computed 3 x 3 case (values, winners, the tie and zero-weight rules, and the
// backward pass at two pixels), the soft-argmax of a one-hot map, and a nearest-neighbour tie.
// Runs on the CPU kernels always, and on the CUDA kernels too when they are registered and a GPU
// is visible.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <tuple>

namespace {

int failures = 0;
double tolerance = 1e-12;  // relative; float32 runs use 1e-6

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what.c_str());
    ++failures;
  }
}

void check_close(double got, double want, const std::string& what) {
  check(std::abs(got - want) <= tolerance * (1.0 + std::abs(want)),
        what + ": got " + std::to_string(got) + ", want " + std::to_string(want));
}

using EdgeMapFwd = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                      const at::Tensor&, int64_t, int64_t,
                                                      double, bool);
using EdgeMapBwd = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                      const at::Tensor&, const at::Tensor&,
                                                      const at::Tensor&, double, bool);
using SoftArgmaxFwd = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double, bool);
using NnFwd = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&);

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

// Three keypoints P0 = (-1, -1), P1 = (1, -1), P2 = (-1, 1) and the edges (0, 1), (0, 2), (1, 2)
// on the 3 x 3 grid x = c - 1, y = r - 1. Distances to the segments:
//   e0 (the top row y = -1):          d0 = |y + 1|
//   e1 (the left column x = -1):      d1 = |x + 1|
//   e2 (the diagonal x + y = 0; every pixel projects inside it): d2 = |x + y| / sqrt(2)
double dist(int e, int r, int c) {
  const double x = c - 1, y = r - 1;
  return e == 0 ? std::abs(y + 1) : e == 1 ? std::abs(x + 1) : std::abs(x + y) / std::sqrt(2.0);
}

void test_edge_map(const at::TensorOptions& opt, const std::string& where) {
  const auto fwd = op("kp3d_kernels::edge_map_fwd").typed<EdgeMapFwd>();
  const auto bwd = op("kp3d_kernels::edge_map_bwd").typed<EdgeMapBwd>();
  const at::Tensor kp = at::tensor({-1.0, -1.0, 1.0, -1.0, -1.0, 1.0}, opt).view({1, 3, 2});
  const at::Tensor edges = at::tensor({0, 1, 0, 2, 1, 2}, opt.dtype(at::kLong)).view({3, 2});
  const double w[3] = {1.0, 0.5, 0.25};
  const at::Tensor weights = at::tensor({w[0], w[1], w[2]}, opt).view({1, 3});
  const double sigma = 1.0;

  // Winners worked out by hand from the distances above (S = max_e w_e exp(-f(d_e))).
  const int win_gauss[3][3] = {{0, 0, 0}, {1, 0, 0}, {1, 1, 2}};
  const int win_exp[3][3] = {{0, 0, 0}, {1, 0, 0}, {1, 1, 0}};
  for (const bool gaussian : {true, false}) {
    const std::string tag = where + (gaussian ? " gaussian" : " exp");
    auto [out, winner] = fwd.call(kp, weights, edges, 3, 3, sigma, gaussian);
    out = out.cpu();
    winner = winner.cpu();
    check(out.sizes() == at::IntArrayRef({1, 3, 3}) && winner.scalar_type() == at::kInt,
          tag + ": output shape/dtype");
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 3; ++c) {
        const int e = gaussian ? win_gauss[r][c] : win_exp[r][c];
        const double d = dist(e, r, c);
        const double want = w[e] * std::exp(-(gaussian ? d * d : d) / sigma);
        const std::string px = tag + " pixel (" + std::to_string(r) + "," + std::to_string(c) + ")";
        check_close(out[0][r][c].item<double>(), want, px + " value");
        check(winner[0][r][c].item<int>() == e, px + " winner");
      }
    }
  }

  // Ties go to the lowest edge index; a heavier duplicate wins; zero weights give 0.
  const at::Tensor dup = at::tensor({0, 1, 0, 1}, opt.dtype(at::kLong)).view({2, 2});
  const struct {
    double w0, w1;
    int winner;
    double scale;
  } cases[] = {{0.5, 0.5, 0, 0.5}, {0.5, 1.0, 1, 1.0}, {0.0, 0.0, 0, 0.0}};
  for (const auto& cs : cases) {
    const std::string tag = where + " duplicate edge, weights (" + std::to_string(cs.w0) + ", " +
                            std::to_string(cs.w1) + ")";
    auto [out, winner] =
        fwd.call(kp, at::tensor({cs.w0, cs.w1}, opt).view({1, 2}), dup, 3, 3, sigma, true);
    out = out.cpu();
    winner = winner.cpu();
    for (int r = 0; r < 3; ++r) {
      for (int c = 0; c < 3; ++c) {
        const double d = dist(0, r, c);
        check_close(out[0][r][c].item<double>(), cs.scale * std::exp(-d * d), tag + " value");
        check(winner[0][r][c].item<int>() == cs.winner, tag + " winner");
      }
    }
  }

  // Backward (gaussian, sigma = 1), dL/dS = 1 at pixel (2, 1) and 2 at pixel (1, 0), both won by
  // e1 = (P0, P2), S = w1 exp(-d^2):
  //  (2, 1) = (0, 1): t = 1, r = (1, 0), d = 1: dL/dw1 = e^-1, dS/dr = -2 S r = (-e^-1, 0),
  //          dL/dP2 = -t dS/dr = (e^-1, 0), dL/dP0 = 0;
  //  (1, 0) = (-1, 0): on the segment (t = 1/2, r = 0): dL/dw1 = 2, no end point gradient.
  {
    const auto [out, winner] = fwd.call(kp, weights, edges, 3, 3, sigma, true);
    at::Tensor g = at::zeros({1, 3, 3}, opt);
    g.index_put_({0, 2, 1}, 1.0);
    g.index_put_({0, 1, 0}, 2.0);
    auto [gk, gw] = bwd.call(g, kp, weights, edges, winner, sigma, true);
    gk = gk.cpu();
    gw = gw.cpu();
    const double inv_e = std::exp(-1.0);
    const double want_w[3] = {0.0, inv_e + 2.0, 0.0};
    const double want_kp[3][2] = {{0.0, 0.0}, {0.0, 0.0}, {inv_e, 0.0}};
    for (int e = 0; e < 3; ++e)
      check_close(gw[0][e].item<double>(), want_w[e], where + " grad_weights[" + std::to_string(e) + "]");
    for (int k = 0; k < 3; ++k)
      for (int j = 0; j < 2; ++j)
        check_close(gk[0][k][j].item<double>(), want_kp[k][j],
                    where + " grad_keypoints[" + std::to_string(k) + "][" + std::to_string(j) + "]");
  }
}

// A one-hot 3 x 3 map, hot at row 0, column 2, i.e. (x, y) = (1, -1).
void test_soft_argmax(const at::TensorOptions& opt, const std::string& where) {
  const auto fwd = op("kp3d_kernels::soft_argmax_fwd").typed<SoftArgmaxFwd>();
  at::Tensor h = at::zeros({1, 1, 3, 3}, opt);
  h.index_put_({0, 0, 0, 2}, 1.0);
  {  // normalize="sum": exactly the hot pixel; stats = (sum, max(sum, 1e-12)) = (1, 1)
    auto [coords, stats] = fwd.call(h, 1.0, false);
    coords = coords.cpu();
    stats = stats.cpu();
    check_close(coords[0][0][0].item<double>(), 1.0, where + " sum: x");
    check_close(coords[0][0][1].item<double>(), -1.0, where + " sum: y");
    check_close(stats[0][0][0].item<double>(), 1.0, where + " sum: stats[0]");
    check_close(stats[0][0][1].item<double>(), 1.0, where + " sum: stats[1]");
  }
  {  // softmax, T = 1: q = e / (e + 8) at the hot pixel, 1 / (e + 8) elsewhere; the grid sums to
     // 0, so x = (e - 1) / (e + 8), y = (1 - e) / (e + 8); stats = (max, sum exp(h - max)).
    const double e = std::exp(1.0);
    auto [coords, stats] = fwd.call(h, 1.0, true);
    coords = coords.cpu();
    stats = stats.cpu();
    check_close(coords[0][0][0].item<double>(), (e - 1) / (e + 8), where + " softmax: x");
    check_close(coords[0][0][1].item<double>(), (1 - e) / (e + 8), where + " softmax: y");
    check_close(stats[0][0][0].item<double>(), 1.0, where + " softmax: stats[0]");
    check_close(stats[0][0][1].item<double>(), 1.0 + 8.0 / e, where + " softmax: stats[1]");
  }
}

// Points 0 = (0, 0), 1 = (1, 0), 2 = (-1, 0): point 0 is at distance 1 of both others (the tie
// goes to index 1); points 1 and 2 are nearest to point 0.
void test_nearest_neighbor(const at::TensorOptions& opt, const std::string& where) {
  const auto fwd = op("kp3d_kernels::nn_fwd").typed<NnFwd>();
  auto [dist, index] = fwd.call(at::tensor({0.0, 0.0, 1.0, 0.0, -1.0, 0.0}, opt).view({1, 3, 2}));
  dist = dist.cpu();
  index = index.cpu();
  const int64_t want_index[3] = {1, 0, 0};
  for (int i = 0; i < 3; ++i) {
    check(index[0][i].item<int64_t>() == want_index[i], where + " nn index " + std::to_string(i));
    check_close(dist[0][i].item<double>(), 1.0, where + " nn dist " + std::to_string(i));
  }
}

void run_all(const at::TensorOptions& opt, const std::string& where) {
  test_edge_map(opt, where);
  test_soft_argmax(opt, where);
  test_nearest_neighbor(opt, where);
  // float32: the same cases within float32 rounding.
  const at::TensorOptions opt32 = opt.dtype(at::kFloat);
  tolerance = 1e-6;
  test_edge_map(opt32, where + " float32");
  test_soft_argmax(opt32, where + " float32");
  test_nearest_neighbor(opt32, where + " float32");
  tolerance = 1e-12;
}

}  // namespace

int main() {
  const at::TensorOptions cpu = at::TensorOptions().dtype(at::kDouble);
  try {
    run_all(cpu, "cpu");
    const bool cuda_kernel = op("kp3d_kernels::edge_map_fwd").hasKernelForDispatchKey(
        c10::DispatchKey::CUDA);
    if (cuda_kernel && at::hasCUDA()) {
      run_all(cpu.device(at::kCUDA), "cuda");
    } else {
      std::printf("CUDA kernels %s; GPU %s: the CUDA checks are skipped\n",
                  cuda_kernel ? "built" : "not built", at::hasCUDA() ? "visible" : "not visible");
    }
  } catch (const std::exception& e) {
    std::printf("FAIL: exception: %s\n", e.what());
    return 1;
  }
  if (failures != 0) {
    std::printf("%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("all checks passed\n");
  return 0;
}

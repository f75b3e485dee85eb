// Fused CPU edge map: per pixel, the winning edge of max_e w_e exp(-f_e), and its gradient.
// The forward culls per 8 x 8 tile the edges that provably cannot win there (forward_culled);
// best_edges, the all-edges loop, runs with KP3D_EDGE_MAP_CULL=0. On x86-64 CPUs with AVX2 the
// culled float32 forward runs two hand-vectorised pieces (tile_edge_avx2, select_edges_avx2);
// KP3D_CPU_SIMD=0 runs their portable versions instead (the tests compare both).
// Extra memory is O(B H W) (the int32 winner per pixel) plus O(B E) per-edge constants; the
// (B, E, H, W) scores are never formed.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common.h"
#include "segment_math.h"

namespace kp3d::cpu {
namespace {

template <typename T>
std::vector<Segment<T>> make_segments(const T* kp, const T* w, const int64_t* edges, int64_t K,
                                      int64_t E) {
  std::vector<Segment<T>> segs(E);
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (int64_t e = 0; e < E; ++e) {
    const int64_t ia = edges[2 * e], ib = edges[2 * e + 1];
    // The Python layer checks the indices; one out of range (trusted edges) is a NaN edge,
    // never an out-of-bounds read.
    if (ia < 0 || ia >= K || ib < 0 || ib >= K) {
      segs[e] = make_segment<T>(nan, nan, nan, nan, w[e]);
      continue;
    }
    const T* a = kp + 2 * ia;
    const T* b = kp + 2 * ib;
    segs[e] = make_segment<T>(a[0], a[1], b[0], b[1], w[e]);
  }
  return segs;
}

// exp(-cost), the pixel's output. A cost above 104 (float) or 746 (double) gives +0 without the
// call: exp rounds to +0 there, and glibc takes a slow path (errno) for each such underflow,
// which is most pixels of a sparse edge map.
template <typename T>
inline T score(T cost) {
  const T underflow = sizeof(T) == sizeof(float) ? T(104) : T(746);
  return cost > underflow ? T(0) : exp(-cost);
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

// ---- Exact tile culling ------------------------------------------------------------------------
//
// The image is cut into tiles of kTileRows x kTileCols pixels. For a tile and an edge e, L_e is a
// lower bound on the cost f_e(p) - log w_e that the pixel loop computes (in T, with its
// rounding) at every pixel p of the tile; it comes from the distance between the segment and the
// tile's bounding box (see docs/kernels.md, "Exact culling"). The tile evaluates the edges in
// passes of rising bound (forward_culled), and skips every edge whose bound is strictly above
// the largest per-pixel best cost of the tile so far: such an edge costs more than the best at
// every pixel, so it can neither win nor tie. The per-pixel update
// compares (cost, index) lexicographically (NaN first, then the cost, then the lower index), so
// the winner does not depend on the visiting order and is the one the edge-order scan of
// best_edges finds; so the output and the winner map are bit for bit those of best_edges.

constexpr int64_t kTileRows = 8;
constexpr int64_t kTileCols = 8;
constexpr int64_t kTilePixels = kTileRows * kTileCols;

// Per-sample, per-edge constants of the bound (double, structure of arrays so that the bound
// loop vectorises): the segment's bounding box, its unit normal and the normal's offset, the
// absolute rounding margin, and -log w. An edge that is not cullable gets the bound -inf (it is
// always evaluated): a constant that is not finite, an end point beyond 2^20 (where the rounding
// analysis of the bound does not apply), or w < 0, NaN or +inf. For such an edge the margin is
// +inf and the weight term -inf, so that the bound is exactly -inf.
template <typename T>
struct CullTable {
  std::vector<double> x0, x1, y0, y1, nx, ny, nc, margin;
  std::vector<T> neg_log_w;
};

template <typename T>
CullTable<T> make_cull_table(const std::vector<Segment<T>>& segs) {
  const int64_t E = static_cast<int64_t>(segs.size());
  CullTable<T> t;
  for (auto* v : {&t.x0, &t.x1, &t.y0, &t.y1, &t.nx, &t.ny, &t.nc, &t.margin}) v->resize(E);
  t.neg_log_w.resize(E);
  const double limit = 1048576.0;  // 2^20
  for (int64_t e = 0; e < E; ++e) {
    const Segment<T>& s = segs[e];
    const double ax = s.ax, ay = s.ay, vx = s.vx, vy = s.vy;
    const bool finite = std::isfinite(ax) && std::isfinite(ay) && std::isfinite(vx) &&
                        std::isfinite(vy) && std::isfinite(static_cast<double>(s.inv_len2));
    const bool small = std::fabs(ax) <= limit && std::fabs(ay) <= limit &&
                       std::fabs(vx) <= limit && std::fabs(vy) <= limit;
    const T nlw = s.neg_log_w;
    // -log w finite (w > 0, finite) or +inf (w == 0): then the edge's cost is never NaN.
    const bool weight_ok = std::isfinite(nlw) || nlw == std::numeric_limits<T>::infinity();
    if (!(finite && small && weight_ok)) {
      t.x0[e] = t.x1[e] = t.y0[e] = t.y1[e] = t.nx[e] = t.ny[e] = t.nc[e] = 0;
      t.margin[e] = std::numeric_limits<double>::infinity();
      t.neg_log_w[e] = -std::numeric_limits<T>::infinity();
      continue;
    }
    const double bx = ax + vx, by = ay + vy;  // the segment the pixel loop measures against
    t.x0[e] = std::min(ax, bx);
    t.x1[e] = std::max(ax, bx);
    t.y0[e] = std::min(ay, by);
    t.y1[e] = std::max(ay, by);
    const double len = std::sqrt(vx * vx + vy * vy);
    // A zero-length (or subnormal) segment: no normal axis; the box distance alone is exact.
    const double nx = len > 1e-150 ? -vy / len : 0.0, ny = len > 1e-150 ? vx / len : 0.0;
    t.nx[e] = nx;
    t.ny[e] = ny;
    t.nc[e] = nx * ax + ny * ay;
    // 32 eps (1 + |P_a| + |v|): covers the rounding of r = (p - P_a) - t v in T (below
    // 3 eps (1 + |P_a| + |v|)) and of this bound's own arithmetic in double.
    t.margin[e] = 32.0 * static_cast<double>(machine_eps<T>()) *
                  (1.0 + std::fabs(ax) + std::fabs(ay) + std::fabs(vx) + std::fabs(vy));
    t.neg_log_w[e] = nlw;
  }
  return t;
}

// Lower bounds L_e (in T) of the cost over the pixel box [bx0, bx1] x [by0, by1] (the extreme
// pixel centres of the tile, as the pixel loop computes them).
template <typename T, bool Gaussian>
KP3D_CPU_CLONES void tile_bounds(const double* __restrict x0, const double* __restrict x1,
                                 const double* __restrict y0, const double* __restrict y1,
                                 const double* __restrict nx, const double* __restrict ny,
                                 const double* __restrict nc, const double* __restrict margin,
                                 const T* __restrict neg_log_w, int64_t E, double bx0,
                                 double bx1, double by0, double by1, T inv_sigma,
                                 T* __restrict lower) {
  const double cx = 0.5 * (bx0 + bx1), cy = 0.5 * (by0 + by1);
  const double hx = 0.5 * (bx1 - bx0), hy = 0.5 * (by1 - by0);
  const double shrink = 1.0 - 8.0 * static_cast<double>(machine_eps<T>());
  for (int64_t e = 0; e < E; ++e) {
    // Separation of the two bounding boxes (a lower bound: the segment lies in its box) ...
    const double gx0 = x0[e] - bx1, gx1 = bx0 - x1[e], gy0 = y0[e] - by1, gy1 = by0 - y1[e];
    double gx = gx0 > gx1 ? gx0 : gx1;
    gx = gx > 0.0 ? gx : 0.0;
    double gy = gy0 > gy1 ? gy0 : gy1;
    gy = gy > 0.0 ? gy : 0.0;
    const double d_box = std::sqrt(gx * gx + gy * gy);
    // ... and along the segment's normal (every point of the segment is at offset nc).
    const double d_normal = std::fabs(nx[e] * cx + ny[e] * cy - nc[e]) -
                            (hx * std::fabs(nx[e]) + hy * std::fabs(ny[e]));
    double d = (d_box > d_normal ? d_box : d_normal) - margin[e];
    d = d > 0.0 ? d : 0.0;
    const T d2 = static_cast<T>(d * d * shrink);
    // The same operations, in T, as falloff_exponent + neg_log_w: rounding is monotone, so a
    // smaller d2 gives a cost that is not larger.
    const T f = Gaussian ? d2 * inv_sigma : static_cast<T>(sqrt(d2)) * inv_sigma;
    lower[e] = f + neg_log_w[e];
  }
}

// lex_better (segment_math.h) without the NaN terms, for an edge whose cost is never NaN (a
// cullable one): a NaN best is then never taken, as lex_better would decide.
template <typename T>
inline bool lex_better_number(T cost, int32_t e, T best, int32_t a) {
  return (cost < best) | ((cost == best) & (e < a));
}

// Order-preserving integer keys of floats (and back), through which the max and min loops below
// compare costs, so that they vectorise.
inline int32_t order_key(float x) {
  int32_t i;
  std::memcpy(&i, &x, sizeof(i));
  return i ^ ((i >> 31) & 0x7fffffff);
}
inline int64_t order_key(double x) {
  int64_t i;
  std::memcpy(&i, &x, sizeof(i));
  return i ^ ((i >> 63) & 0x7fffffffffffffffLL);
}
template <typename T, typename Key>
inline T from_order_key(Key k) {
  const Key bits = k ^ ((k >> (8 * sizeof(Key) - 1)) & std::numeric_limits<Key>::max());
  T out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}

// One edge over the kTileRows x kTileCols pixels of a tile, whose pixel centres are tx (per
// column) and ty (per row); a partial tile repeats pixels of the image in its unused slots, which
// changes neither its results nor its worst. Each pixel's cost is that of project +
// falloff_exponent, operation for operation (dx vx is the same on every row, so it is formed once
// per column).
template <typename T, bool Gaussian, bool MaybeNaN>
KP3D_CPU_CLONES void tile_edge(const Segment<T> s, int32_t ei, const T* __restrict tx,
                               const T* __restrict ty, T inv_sigma, T* __restrict best,
                               int32_t* __restrict arg) {
  T dx[kTileCols], dxv[kTileCols];
  for (int64_t c = 0; c < kTileCols; ++c) {
    dx[c] = tx[c] - s.ax;
    dxv[c] = dx[c] * s.vx;
  }
  for (int64_t r = 0; r < kTileRows; ++r) {
    const T dy = ty[r] - s.ay, dyv = dy * s.vy;
    T* __restrict brow = best + r * kTileCols;
    int32_t* __restrict arow = arg + r * kTileCols;
    for (int64_t c = 0; c < kTileCols; ++c) {
      const Projection<T> pr = project_offset(s, dx[c], dy, dxv[c] + dyv);
      const T cost = falloff_exponent(pr, inv_sigma, Gaussian) + s.neg_log_w;
      const T b = brow[c];
      const int32_t a = arow[c];
      const bool take = MaybeNaN ? lex_better(cost, ei, b, a) : lex_better_number(cost, ei, b, a);
      const int32_t mask = -static_cast<int32_t>(take);
      brow[c] = take ? cost : b;
      arow[c] = (ei & mask) | (a & ~mask);
    }
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KP3D_AVX2_TILE 1
// tile_edge<float, Gaussian, false> by hand in AVX2 (a tile row is one 8-float vector): the same
// IEEE operations in the same order, so bit for bit its results. GCC vectorises the generic
// loop with about twice the instructions: it rewrites the clamp of t as blends of products.
// min_ps(1, t) is (1 < t ? 1 : t) and max_ps(0, t) is (0 > t ? 0 : t), NaN kept, as in
// project_offset; no FMA is used (the generic code does not contract).
template <bool Gaussian>
__attribute__((target("avx2"))) void tile_edge_avx2(const Segment<float> s, int32_t ei,
                                                    const float* __restrict tx,
                                                    const float* __restrict ty, float inv_sigma,
                                                    float* __restrict best,
                                                    int32_t* __restrict arg) {
  static_assert(kTileCols == 8, "one AVX2 vector per tile row");
  const __m256 vx = _mm256_set1_ps(s.vx), vy = _mm256_set1_ps(s.vy);
  const __m256 inv_len2 = _mm256_set1_ps(s.inv_len2), inv_s = _mm256_set1_ps(inv_sigma);
  const __m256 nlw = _mm256_set1_ps(s.neg_log_w);
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  const __m256i e = _mm256_set1_epi32(ei);
  const __m256 dx = _mm256_sub_ps(_mm256_loadu_ps(tx), _mm256_set1_ps(s.ax));
  const __m256 dxv = _mm256_mul_ps(dx, vx);
  for (int64_t r = 0; r < kTileRows; ++r) {
    const float dy_s = ty[r] - s.ay;
    const __m256 dy = _mm256_set1_ps(dy_s), dyv = _mm256_set1_ps(dy_s * s.vy);
    __m256 t = _mm256_mul_ps(_mm256_add_ps(dxv, dyv), inv_len2);
    t = _mm256_max_ps(zero, _mm256_min_ps(one, t));
    const __m256 rx = _mm256_sub_ps(dx, _mm256_mul_ps(t, vx));
    const __m256 ry = _mm256_sub_ps(dy, _mm256_mul_ps(t, vy));
    const __m256 d2 = _mm256_add_ps(_mm256_mul_ps(rx, rx), _mm256_mul_ps(ry, ry));
    const __m256 f = _mm256_mul_ps(Gaussian ? d2 : _mm256_sqrt_ps(d2), inv_s);
    const __m256 cost = _mm256_add_ps(f, nlw);
    const __m256 b = _mm256_loadu_ps(best + r * kTileCols);
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(arg + r * kTileCols));
    const __m256 lower_index = _mm256_castsi256_ps(_mm256_cmpgt_epi32(a, e));
    const __m256 tie = _mm256_and_ps(_mm256_cmp_ps(cost, b, _CMP_EQ_OQ), lower_index);
    const __m256 take = _mm256_or_ps(_mm256_cmp_ps(cost, b, _CMP_LT_OQ), tie);
    _mm256_storeu_ps(best + r * kTileCols, _mm256_blendv_ps(b, cost, take));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(arg + r * kTileCols),
                        _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a),
                                                             _mm256_castsi256_ps(e), take)));
  }
}

// The indices of the 8-bit masks' set bits, in order (the left-pack table of select_edges).
struct LeftPack {
  alignas(32) int32_t index[256][8];
  LeftPack() {
    for (int mask = 0; mask < 256; ++mask) {
      int n = 0;
      for (int j = 0; j < 8; ++j)
        if (mask >> j & 1) index[mask][n++] = j;
      while (n < 8) index[mask][n++] = 0;
    }
  }
};

// select_edges over the whole groups of 8 edges: appends to list[m...] and returns how many
// edges it has read (E rounded down to a multiple of 8).
__attribute__((target("avx2,popcnt"))) int64_t select_edges_avx2(const float* __restrict lower,
                                                                int64_t E, float lo, float hi,
                                                                float worst,
                                                                int32_t* __restrict list,
                                                                int64_t& m) {
  static const LeftPack pack;
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi), vw = _mm256_set1_ps(worst);
  int64_t e = 0;
  for (; e + 8 <= E; e += 8) {
    const __m256 l = _mm256_loadu_ps(lower + e);
    const __m256 keep = _mm256_and_ps(
        _mm256_and_ps(_mm256_cmp_ps(l, vlo, _CMP_NLE_UQ), _mm256_cmp_ps(l, vhi, _CMP_LE_OQ)),
        _mm256_cmp_ps(l, vw, _CMP_NGT_UQ));
    const int bits = _mm256_movemask_ps(keep);
    const __m256i idx = _mm256_add_epi32(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(pack.index[bits])),
        _mm256_set1_epi32(static_cast<int32_t>(e)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(list + m), idx);
    m += _mm_popcnt_u32(static_cast<unsigned>(bits));
  }
  return e;
}

inline bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
#endif

// A switch read from the environment at each call: on unless set to "0".
inline bool env_switch(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr || std::strcmp(v, "0") != 0;
}

// Whether the culled float32 forward may use the AVX2 pieces: the CPU has AVX2 and
// KP3D_CPU_SIMD is not "0".
inline bool use_avx2() {
#ifdef KP3D_AVX2_TILE
  return have_avx2() && env_switch("KP3D_CPU_SIMD");
#else
  return false;
#endif
}

// The largest best cost of the tile, NaN if any pixel's best is NaN (then nothing is culled).
template <typename T>
KP3D_CPU_CLONES T tile_worst(const T* __restrict best) {
  using Key = decltype(order_key(T(0)));
  Key worst = std::numeric_limits<Key>::min();
  int32_t nan = 0;
  for (int64_t i = 0; i < kTilePixels; ++i) {
    const T b = best[i];
    const Key k = order_key(b);
    worst = k > worst ? k : worst;
    nan |= static_cast<int32_t>(b != b);
  }
  return nan ? std::numeric_limits<T>::quiet_NaN() : from_order_key<T>(worst);
}

// The edges whose bound l has !(l <= lo), l <= hi and !(l > worst), in index order, into list
// (which has room for 7 more entries); their count.
template <typename T>
int64_t select_edges(const T* __restrict lower, int64_t E, T lo, T hi, T worst,
                     [[maybe_unused]] bool avx2, int32_t* __restrict list) {
  int64_t m = 0, e = 0;
#ifdef KP3D_AVX2_TILE
  if constexpr (std::is_same_v<T, float>) {
    if (avx2) e = select_edges_avx2(lower, E, lo, hi, worst, list, m);
  }
#endif
  for (; e < E; ++e) {
    const T l = lower[e];
    list[m] = static_cast<int32_t>(e);
    m += !(l <= lo) & (l <= hi) & !(l > worst);
  }
  return m;
}

// Whether the forward culls (the default). KP3D_EDGE_MAP_CULL=0 runs the all-edges loop instead:
// the tests compare the two bit for bit and the benchmarks time them side by side.
inline bool culling_enabled() { return env_switch("KP3D_EDGE_MAP_CULL"); }

// The smallest finite value of x[0, n) (+inf if none). Through order keys: the loop vectorises.
template <typename T>
KP3D_CPU_CLONES T finite_min(const T* __restrict x, int64_t n) {
  using Key = decltype(order_key(T(0)));
  const Key inf = order_key(std::numeric_limits<T>::infinity());
  Key lo = inf;
  for (int64_t i = 0; i < n; ++i) {
    const Key k = order_key(x[i]);
    const Key v = k > order_key(-std::numeric_limits<T>::infinity()) ? k : inf;
    lo = v < lo ? v : lo;
  }
  return from_order_key<T>(lo);
}

// A tile refreshes its worst best cost after every kRefresh edges it evaluates; the last of its
// (at most) kMaxPasses passes of rising bound takes every edge left.
constexpr int kRefresh = 8;
constexpr int kMaxPasses = 6;

template <typename T>
void forward_culled(const std::vector<std::vector<Segment<T>>>& segs, int64_t B, int64_t E,
                    int64_t H, int64_t W, T inv_sigma, bool gaussian, T* o, int32_t* win) {
  std::vector<CullTable<T>> tables(B);
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) tables[b] = make_cull_table<T>(segs[b]);
  });
  const int64_t tiles_h = (H + kTileRows - 1) / kTileRows;
  const int64_t tiles_w = (W + kTileCols - 1) / kTileCols;
  const int64_t tiles = tiles_h * tiles_w;
  // Tiles differ a lot in cost (how many edges pass near them): the threads take them one at a
  // time from a shared counter instead of a fixed share each. Which thread renders a tile does
  // not change any result.
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), B * tiles));
  const bool avx2 = use_avx2();
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    std::vector<T> xs(W), ys(H), lower(E);
    for (int64_t c = 0; c < W; ++c) xs[c] = pixel_centre<T>(c, W);
    for (int64_t r = 0; r < H; ++r) ys[r] = pixel_centre<T>(r, H);
    T best[kTilePixels], tx[kTileCols], ty[kTileRows];
    int32_t arg[kTilePixels];
    std::vector<int32_t> list(E + 8);  // select_edges may write 7 past its count
    // The first tile's span: the cost at half the tile's diagonal.
    const T pitch_x = W > 1 ? T(2) / T(W - 1) : T(0), pitch_y = H > 1 ? T(2) / T(H - 1) : T(0);
    const T half_diag2 = T(0.25) * (T(kTileCols * kTileCols) * pitch_x * pitch_x +
                                    T(kTileRows * kTileRows) * pitch_y * pitch_y);
    T span_hint = gaussian ? half_diag2 * inv_sigma : sqrt(half_diag2) * inv_sigma;
    if (!(span_hint > T(0) && span_hint < std::numeric_limits<T>::infinity())) span_hint = T(1);
    for (int64_t task = next.fetch_add(1); task < B * tiles; task = next.fetch_add(1)) {
      const int64_t b = task / tiles, tile = task % tiles;
      const int64_t r0 = (tile / tiles_w) * kTileRows, c0 = (tile % tiles_w) * kTileCols;
      const int64_t rows = std::min(kTileRows, H - r0), cols = std::min(kTileCols, W - c0);
      for (int64_t c = 0; c < kTileCols; ++c) tx[c] = xs[c0 + std::min(c, cols - 1)];
      for (int64_t r = 0; r < kTileRows; ++r) ty[r] = ys[r0 + std::min(r, rows - 1)];
      std::fill(best, best + kTilePixels, std::numeric_limits<T>::infinity());
      std::fill(arg, arg + kTilePixels, 0);
      const Segment<T>* sb = segs[b].data();
      const CullTable<T>& tb = tables[b];
      // pixel_centre is monotone in its index, so the box holds every pixel centre of the tile
      (gaussian ? tile_bounds<T, true> : tile_bounds<T, false>)(
          tb.x0.data(), tb.x1.data(), tb.y0.data(), tb.y1.data(), tb.nx.data(), tb.ny.data(),
          tb.nc.data(), tb.margin.data(), tb.neg_log_w.data(), E, tx[0], tx[cols - 1], ty[0],
          ty[rows - 1], inv_sigma, lower.data());
      auto eval = [&](int32_t e) {
        const bool maybe_nan = !(lower[e] > -std::numeric_limits<T>::infinity());
        auto* fn = gaussian ? (maybe_nan ? tile_edge<T, true, true> : tile_edge<T, true, false>)
                            : (maybe_nan ? tile_edge<T, false, true> : tile_edge<T, false, false>);
#ifdef KP3D_AVX2_TILE
        if constexpr (std::is_same_v<T, float>) {
          if (avx2 && !maybe_nan) fn = gaussian ? tile_edge_avx2<true> : tile_edge_avx2<false>;
        }
#endif
        fn(sb[e], e, tx, ty, inv_sigma, best, arg);
      };
      // Passes over rising thresholds hi = base + span, base the smallest finite bound: a pass
      // evaluates the edges whose bound is in (lo, hi] (lo the last pass's hi) and not above the
      // tile's worst. The span starts from the last tile's final span (a guess of where the
      // worst will settle: it changes how soon the passes end, never the result) and grows 4x a
      // pass, to +inf. An edge is skipped only when its bound is above the worst at that moment,
      // so the result is that of evaluating every edge.
      const T base = finite_min(lower.data(), E);
      T worst = std::numeric_limits<T>::infinity();
      T span = span_hint;
      T lo = std::numeric_limits<T>::quiet_NaN();  // !(l <= NaN) holds for every l
      for (int pass = 0;; ++pass) {
        const T hi = base + span;  // +inf once span overflows, or when no bound is finite
        const int64_t m = select_edges(lower.data(), E, lo, hi, worst, avx2, list.data());
        int since = 0;
        for (int64_t j = 0; j < m; ++j) {
          if (since == kRefresh) {  // refresh the tile's worst every few edges
            worst = tile_worst(best);
            since = 0;
          }
          if (lower[list[j]] > worst) continue;  // can neither win nor tie anywhere in the tile
          eval(list[j]);
          ++since;
        }
        worst = tile_worst(best);
        if (hi >= worst || hi == std::numeric_limits<T>::infinity()) break;
        lo = hi;
        // the last of kMaxPasses passes takes every edge left
        span = pass + 2 < kMaxPasses ? span * T(4) : std::numeric_limits<T>::infinity();
      }
      if (std::isfinite(worst - base) && worst - base > T(0)) span_hint = worst - base;
      for (int64_t i = 0; i < rows; ++i) {
        T* orow = o + (b * H + r0 + i) * W + c0;
        int32_t* wrow = win + (b * H + r0 + i) * W + c0;
        for (int64_t c = 0; c < cols; ++c) {
          orow[c] = score(best[i * kTileCols + c]);
          wrow[c] = arg[i * kTileCols + c];  // the unused slots repeat pixels: not written
        }
      }
    }
  });
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
  if (culling_enabled() && E > 0) {
    forward_culled<T>(segs, B, E, H, W, inv_sigma, gaussian, o, win);
    return;
  }

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
        orow[c] = score(best[c]);
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
          if (e < 0 || e >= E) continue;  // not a winner from edge_map_fwd: contributes nothing
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
        if (ia < 0 || ia >= K || ib < 0 || ib >= K) continue;  // a NaN edge: no keypoint
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

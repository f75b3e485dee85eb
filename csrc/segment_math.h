// Segment math shared by the CPU (csrc/cpu) and CUDA (csrc/cuda) kernels.
//
// Conventions (docs/kernels.md): keypoints are (x, y) in [-1, 1]; pixel (r, c) of an H x W
// grid has centre x = -1 + 2c/(W-1), y = -1 + 2r/(H-1). For edge e = (a, b), v = P_b - P_a,
//   t = clamp(<p - P_a, v> / (|v|^2 + 1e-12), 0, 1),  r = p - P_a - t v,  d = |r|,
//   gaussian: f = d^2 / sigma       exp: f = d / sigma,
// and the edge's score is w exp(-f). The max over edges is found as the argmin of
// cost = f - log w, so a pixel needs a single exp (and no sqrt for the gaussian falloff).
// This header needs only the C++ standard library, so nvcc can compile kernels that include
// it without any torch header.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define KP3D_HD __host__ __device__ __forceinline__
#else
#define KP3D_HD inline
#endif

namespace kp3d {

#if !defined(__CUDACC__) && !defined(__HIPCC__)
// Host code: pick the float overloads (nvcc supplies its own for device code).
using std::exp;
using std::fabs;
using std::log;
using std::sqrt;
#endif

// +inf and a quiet NaN of T, usable in device code too (std::numeric_limits is constexpr host
// code, which nvcc only accepts in device code with --expt-relaxed-constexpr).
template <typename T>
KP3D_HD T infinity_of() {
#if defined(__CUDA_ARCH__)
  if (sizeof(T) == sizeof(float)) return T(__int_as_float(0x7f800000));
  return T(__longlong_as_double(0x7ff0000000000000LL));
#else
  return std::numeric_limits<T>::infinity();
#endif
}

template <typename T>
KP3D_HD T quiet_nan_of() {
#if defined(__CUDA_ARCH__)
  if (sizeof(T) == sizeof(float)) return T(__int_as_float(0x7fc00000));
  return T(__longlong_as_double(0x7ff8000000000000LL));
#else
  return std::numeric_limits<T>::quiet_NaN();
#endif
}

// Centre of pixel `i` on an axis of `n` pixels (align-corners grid; a 1-pixel axis sits at -1,
// as torch.linspace(-1, 1, 1) does).
template <typename T>
KP3D_HD T pixel_centre(int64_t i, int64_t n) {
  return n > 1 ? T(-1) + T(2) * T(i) / T(n - 1) : T(-1);
}

// Machine epsilon, usable in device code without --expt-relaxed-constexpr.
template <typename T>
KP3D_HD T machine_eps();
template <>
KP3D_HD float machine_eps<float>() { return 1.1920929e-7f; }
template <>
KP3D_HD double machine_eps<double>() { return 2.220446049250313e-16; }

// Per-edge constants, computed once per edge and reused for every pixel.
template <typename T>
struct Segment {
  T ax, ay;        // start point P_a
  T vx, vy;        // direction v = P_b - P_a
  T inv_len2;      // 1 / (|v|^2 + 1e-12)
  T neg_log_w;     // -log w (+inf for w == 0, NaN for NaN w)
};

template <typename T>
KP3D_HD Segment<T> make_segment(T ax, T ay, T bx, T by, T w) {
  Segment<T> s;
  s.ax = ax;
  s.ay = ay;
  s.vx = bx - ax;
  s.vy = by - ay;
  s.inv_len2 = T(1) / (s.vx * s.vx + s.vy * s.vy + T(1e-12));
  // w > 0: -log w; w == 0: +inf (the edge never wins unless every edge has w == 0);
  // negative or NaN w is outside the contract and gives NaN, which propagates.
  s.neg_log_w = w > T(0) ? -log(w) : (w == T(0) ? infinity_of<T>() : quiet_nan_of<T>());
  return s;
}

// Where pixel p falls on the segment: t and the residual r = p - P_a - t v.
template <typename T>
struct Projection {
  T t, rx, ry;
};

// The same, from the offsets dx = px - ax, dy = py - ay and dot = dx vx + dy vy (a caller that
// visits a grid forms dx vx once per column and dy vy once per row).
template <typename T>
KP3D_HD Projection<T> project_offset(const Segment<T>& s, T dx, T dy, T dot) {
  T t = dot * s.inv_len2;
  t = T(1) < t ? T(1) : t;  // clamp to [0, 1] as two selects (vectorisable), keeping NaN
  t = t < T(0) ? T(0) : t;
  Projection<T> pr;
  pr.t = t;
  pr.rx = dx - t * s.vx;
  pr.ry = dy - t * s.vy;
  return pr;
}

template <typename T>
KP3D_HD Projection<T> project(const Segment<T>& s, T px, T py) {
  const T dx = px - s.ax, dy = py - s.ay;
  return project_offset(s, dx, dy, dx * s.vx + dy * s.vy);
}

// f = d^2 / sigma (gaussian) or d / sigma (exp).
template <typename T>
KP3D_HD T falloff_exponent(const Projection<T>& pr, T inv_sigma, bool gaussian) {
  const T d2 = pr.rx * pr.rx + pr.ry * pr.ry;
  return gaussian ? d2 * inv_sigma : sqrt(d2) * inv_sigma;
}

// The running-best rule of the max over edges: a smaller cost wins, ties keep the earlier
// (lower) edge index, and the first NaN wins and sticks, so NaN propagates as torch.max does.
template <typename T>
KP3D_HD bool better(T cost, T best) {
  // bitwise, not short-circuit: branch-free, so the CPU pixel loop vectorises
  return (cost < best) | ((cost != cost) & (best == best));
}

// The running best when edges are visited out of index order (the culled forwards): a NaN
// cost first (the lowest-index NaN among NaNs), then the smaller cost, then the lower index.
// Visiting the edges in any order with it finds the edge that an index-order scan with `better`
// finds (strictly smaller wins, the first NaN sticks).
template <typename T>
KP3D_HD bool lex_better(T cost, int32_t e, T best, int32_t a) {
  const bool cn = cost != cost, bn = best != best, lower = e < a;
  return (cost < best) | ((cost == best) & lower) | (cn & (!bn | lower));
}

// x is neither infinite nor NaN (no <cmath> classification call, so device code can use it).
KP3D_HD bool finite_double(double x) { return x - x == 0.0; }

// A lower bound, valid in the rounding of T, on the cost f - log w that project +
// falloff_exponent + neg_log_w compute for segment s at every pixel centre (px, py) in the box
// [bx0, bx1] x [by0, by1] (docs/kernels.md, "Exact culling"): the distance from the segment to
// the box, bounded below by the gap between their bounding boxes and the gap along the
// segment's normal, less a rounding margin of 32 eps (1 + |P_a| + |v|), squared and scaled by
// 1 - 8 eps, then through the pixel loop's own operations in T (rounding is monotone). -inf for
// an edge the analysis does not cover (a non-finite constant, an end point beyond 2^20, w < 0,
// NaN or +inf): such an edge is never culled. Never NaN.
template <typename T>
KP3D_HD T tile_cost_bound(const Segment<T>& s, double bx0, double bx1, double by0, double by1,
                          T inv_sigma, bool gaussian) {
  const double ax = s.ax, ay = s.ay, vx = s.vx, vy = s.vy, nlw = s.neg_log_w;
  const double limit = 1048576.0;  // 2^20
  const bool ok = finite_double(ax) && finite_double(ay) && finite_double(vx) &&
                  finite_double(vy) && finite_double(static_cast<double>(s.inv_len2)) &&
                  fabs(ax) <= limit && fabs(ay) <= limit && fabs(vx) <= limit &&
                  fabs(vy) <= limit && (finite_double(nlw) || nlw > 0.0);
  if (!ok) return -infinity_of<T>();
  const double bx = ax + vx, by = ay + vy;
  const double x0 = ax < bx ? ax : bx, x1 = ax < bx ? bx : ax;
  const double y0 = ay < by ? ay : by, y1 = ay < by ? by : ay;
  double gx = x0 - bx1 > bx0 - x1 ? x0 - bx1 : bx0 - x1;
  gx = gx > 0.0 ? gx : 0.0;
  double gy = y0 - by1 > by0 - y1 ? y0 - by1 : by0 - y1;
  gy = gy > 0.0 ? gy : 0.0;
  const double d_box = sqrt(gx * gx + gy * gy);
  const double len = sqrt(vx * vx + vy * vy);
  const double nx = len > 1e-150 ? -vy / len : 0.0, ny = len > 1e-150 ? vx / len : 0.0;
  const double cx = 0.5 * (bx0 + bx1), cy = 0.5 * (by0 + by1);
  const double hx = 0.5 * (bx1 - bx0), hy = 0.5 * (by1 - by0);
  const double d_normal = fabs(nx * (cx - ax) + ny * (cy - ay)) - (hx * fabs(nx) + hy * fabs(ny));
  const double eps = static_cast<double>(machine_eps<T>());
  const double margin = 32.0 * eps * (1.0 + fabs(ax) + fabs(ay) + fabs(vx) + fabs(vy));
  double d = (d_box > d_normal ? d_box : d_normal) - margin;
  d = d > 0.0 ? d : 0.0;
  const T d2 = static_cast<T>(d * d * (1.0 - 8.0 * eps));
  const T f = gaussian ? d2 * inv_sigma : static_cast<T>(sqrt(d2)) * inv_sigma;
  return f + s.neg_log_w;
}

// Gradient of S = w exp(-f) for the winning edge, given dL/dS = g at a pixel:
//   dL/dw = g exp(-f),  dL/dP_a = -(1 - t) G,  dL/dP_b = -t G,  G = g dS/dr,
//   gaussian: dS/dr = -2 S r / sigma;  exp: dS/dr = -S r / (sigma d), 0 where d == 0.
// Inside the segment (0 < t < 1) r is orthogonal to v in exact arithmetic, but for a pixel
// close to the segment the computed r = (p - P_a) - t v is a difference of nearly equal
// numbers whose rounding error has a component along v that is large relative to d; it would
// turn the direction r/d by ~eps |p - P_a| / d (1e-4 in float32 a pixel's hundredth away).
// Projecting that component out restores the direction to full precision. What is left
// below the rounding level of the inputs (|r| <= 8 eps (|r| + |v|) before the projection: the
// pixel lies on the segment up to rounding) counts as d = 0, where the exp falloff's gradient
// is 0 by contract.
template <typename T>
struct EdgeGrad {
  T w;               // dL/dw
  T ax, ay, bx, by;  // dL/dP_a, dL/dP_b
};

template <typename T>
KP3D_HD EdgeGrad<T> edge_grad(const Segment<T>& s, const Projection<T>& pr, T w, T f,
                              T inv_sigma, bool gaussian, T g) {
  T rx = pr.rx, ry = pr.ry;
  if (pr.t > T(0) && pr.t < T(1)) {
    const T noise = T(8) * machine_eps<T>() *
                    (fabs(rx) + fabs(ry) + fabs(s.vx) + fabs(s.vy));
    const T along = (rx * s.vx + ry * s.vy) * s.inv_len2;
    rx -= along * s.vx;
    ry -= along * s.vy;
    if (rx * rx + ry * ry <= noise * noise) rx = ry = T(0);
  }
  const T e = exp(-f);
  const T S = w * e;
  T coef;  // dS/dr = coef * r
  if (gaussian) {
    coef = T(-2) * S * inv_sigma;
  } else {
    const T d = sqrt(rx * rx + ry * ry);
    coef = d > T(0) ? -S * inv_sigma / d : T(0);
  }
  const T Gx = g * coef * rx, Gy = g * coef * ry;
  EdgeGrad<T> out;
  out.w = g * e;
  out.ax = -(T(1) - pr.t) * Gx;
  out.ay = -(T(1) - pr.t) * Gy;
  out.bx = -pr.t * Gx;
  out.by = -pr.t * Gy;
  return out;
}

// Repulsion term of one point with nearest-neighbour distance d and bandwidth h:
// l(d) = -d exp(-d / h), and its derivative dl/dd = -exp(-d / h) (1 - d / h).
template <typename T>
KP3D_HD T repulsion_term(T d, T inv_h) {
  return -d * exp(-d * inv_h);
}

template <typename T>
KP3D_HD T repulsion_term_grad(T d, T inv_h) {
  return -exp(-d * inv_h) * (T(1) - d * inv_h);
}

}  // namespace kp3d

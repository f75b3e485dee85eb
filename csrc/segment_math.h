// Segment math shared by the CPU (csrc/cpu) and CUDA (csrc/cuda) kernels.
//
// Conventions (SPEC section 2-3): keypoints are (x, y) in [-1, 1]; pixel (r, c) of an H x W
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

template <typename T>
KP3D_HD Projection<T> project(const Segment<T>& s, T px, T py) {
  const T dx = px - s.ax, dy = py - s.ay;
  T t = (dx * s.vx + dy * s.vy) * s.inv_len2;
  t = T(1) < t ? T(1) : t;  // clamp to [0, 1] as two selects (vectorisable), keeping NaN
  t = t < T(0) ? T(0) : t;
  Projection<T> pr;
  pr.t = t;
  pr.rx = dx - t * s.vx;
  pr.ry = dy - t * s.vy;
  return pr;
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

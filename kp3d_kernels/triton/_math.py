"""Device helpers shared by the kernels. Only core `tl` operations: libdevice functions do not
run under the interpreter (docs/kernels.md)."""

import triton
import triton.language as tl


@triton.jit
def scalar_from_bits(bits):
    """The float64 whose IEEE bits are the int64 `bits` (see _config.f64_bits)."""
    return bits.to(tl.int64).to(tl.float64, bitcast=True)


@triton.jit
def div_rn(a, b):
    """Correctly rounded a / b (Triton's `/` on float32 is an approximate division on the GPU)."""
    if a.dtype == tl.float32:
        return tl.div_rn(a, b)
    else:
        return a / b


@triton.jit
def sqrt_rn(x):
    """Correctly rounded square root in either precision."""
    if x.dtype == tl.float32:
        return tl.sqrt_rn(x)
    else:
        return tl.sqrt(x)


@triton.jit
def reciprocal_of_bits(bits, DT: tl.constexpr):
    """1 / x in dtype DT, for x passed as f64 bits, rounded as the C++ kernels do: T(1) / T(x)."""
    x = scalar_from_bits(bits).to(DT)
    return div_rn(tl.full([], 1.0, DT), x)


@triton.jit
def pixel_centre(i, n, DT: tl.constexpr):
    """Centre of pixel i (a tensor of indices) on an axis of n pixels: -1 + 2i/(n-1), and -1
    when n == 1. The same expression, in the same order, as segment_math.h and the reference's
    pixel_grid, correctly rounded, so that every backend puts the pixels at the same points."""
    fi = i.to(DT)
    den = tl.zeros_like(fi) + tl.maximum(n - 1, 1).to(DT)
    centre = -1.0 + div_rn(2.0 * fi, den)
    return tl.where(n > 1, centre, -1.0)

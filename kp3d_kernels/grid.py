"""The pixel-centre grid every op and caller shares."""

import torch


def pixel_grid(height: int, width: int, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres of an H x W image in the [-1, 1] frame: (xs (W,), ys (H,)), with
    x = -1 + 2c / (W - 1) for column c and y = -1 + 2r / (H - 1) for row r (the align-corners
    grid). Written as that formula rather than torch.linspace, so that the fused kernels, which
    evaluate the same expression per pixel, agree to the last bit; a 1-pixel axis sits at -1.

    Example:
        >>> xs, ys = pixel_grid(3, 5)
        >>> xs.tolist(), ys.tolist()
        ([-1.0, -0.5, 0.0, 0.5, 1.0], [-1.0, 0.0, 1.0])
    """

    def axis(n):
        i = torch.arange(n, dtype=dtype, device=device)
        return -1 + 2 * i / (n - 1) if n > 1 else torch.full((1,), -1.0, dtype=dtype, device=device)

    return axis(width), axis(height)


__all__ = ["pixel_grid"]

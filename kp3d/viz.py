"""Pictures: keypoints and their strongest links over images, reconstructions, 3D structure."""

import numpy as np

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
           (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
           (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128)]


def colour(i):
    return PALETTE[i % len(PALETTE)]


def to_uint8(image):
    """(3, H, W) tensor in [-1, 1] -> (H, W, 3) uint8."""
    a = image.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().byte()
    return a.permute(1, 2, 0).numpy()


def to_pixels(kp, size):
    """[-1, 1] (x, y) -> pixel coordinates (align-corners grid): p = (x + 1) / 2 * (S - 1)."""
    kp = np.asarray(kp, dtype=np.float64)
    return (kp + 1.0) / 2.0 * (size - 1)


def strongest_edges(edge_weights, top=None):
    """Indices of the `top` heaviest edges, heaviest first; every edge when top is None or the
    weights are all equal (fixed weights: a top-n cut would be an arbitrary subset)."""
    w = np.asarray(edge_weights, dtype=np.float64)
    order = np.argsort(-w, kind="stable")
    if top is None or len(w) == 0 or np.ptp(w) <= 1e-6 * max(float(np.abs(w).max()), 1e-12):
        return order
    return order[:top]


def draw_keypoints(image_u8, keypoints, edges=None, edge_weights=None, *, scale=4, top_edges=None,
                   radius=None):
    """Return a PIL image: the image upscaled by `scale` with the keypoints (coloured dots) and
    the links (white, opacity by weight; the `top_edges` strongest, all if None)."""
    from PIL import Image, ImageDraw

    H, W = image_u8.shape[:2]
    img = Image.fromarray(image_u8).resize((W * scale, H * scale), Image.NEAREST).convert("RGBA")
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    pts = (to_pixels(keypoints, W) + 0.5) * scale - 0.5
    if edges is not None and edge_weights is not None and len(edges):
        w = np.asarray(edge_weights, dtype=np.float64)
        order = strongest_edges(w, top_edges)
        wmax = max(float(w[order].max()), 1e-12)
        for e in order:
            a, b = edges[e]
            alpha = int(60 + 195 * float(w[e]) / wmax)
            draw.line([tuple(pts[a]), tuple(pts[b])], fill=(255, 255, 255, alpha),
                      width=max(1, scale // 2))
    r = radius or max(2, scale)
    for i, (x, y) in enumerate(pts):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour(i) + (255,), outline=(0, 0, 0, 255))
    return Image.alpha_composite(img, overlay).convert("RGB")


def grid(images, columns):
    """Tile a list of equally sized PIL images."""
    from PIL import Image

    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    out = Image.new("RGB", (w * columns, h * rows), (0, 0, 0))
    for i, im in enumerate(images):
        out.paste(im, ((i % columns) * w, (i // columns) * h))
    return out


def keypoint_sheet(images, keypoints, edges, edge_weights, path, *, max_images=16, scale=3,
                   top_edges=None):
    """PNG of keypoints + links over up to max_images images (B, 3, H, W) in [-1, 1]."""
    n = min(max_images, images.shape[0])
    K = keypoints.shape[1]
    top = top_edges if top_edges is not None else 2 * K
    tiles = [draw_keypoints(to_uint8(images[i]), keypoints[i].detach().cpu().numpy(),
                            edges, edge_weights, scale=scale, top_edges=top) for i in range(n)]
    grid(tiles, min(n, 8)).save(path)


def reconstruction_sheet(images, masked, edge_map, reconstruction, path, *, max_images=8, scale=2):
    """PNG with one row per image: original, masked input, edge map, reconstruction."""
    from PIL import Image

    n = min(max_images, images.shape[0])
    tiles = []
    em = edge_map.detach().float()
    for i in range(n):
        e = em[i, 0]
        e = (e / e.max().clamp_min(1e-12)) * 2 - 1
        row = [images[i], masked[i], e.expand(3, -1, -1), reconstruction[i]]
        for t in row:
            u8 = to_uint8(t)
            H, W = u8.shape[:2]
            tiles.append(Image.fromarray(u8).resize((W * scale, H * scale), Image.NEAREST))
    grid(tiles, 4).save(path)


def structure_sheet(mean_shape, edges, edge_weights, path, *, top_edges=None, size=256):
    """PNG of the mean shape seen from the front (x, y) and from the side (z, y)."""
    from PIL import Image, ImageDraw

    M = np.asarray(mean_shape, dtype=np.float64)
    w = np.asarray(edge_weights, dtype=np.float64)
    order = strongest_edges(w, top_edges or 2 * len(M))
    out = Image.new("RGB", (2 * size, size), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    extent = max(np.abs(M).max(), 1e-6) * 1.15
    for panel, (u, v) in enumerate(((0, 1), (2, 1))):
        p = np.stack([M[:, u], M[:, v]], 1) / extent * (size / 2 - 4) + size / 2
        p[:, 0] += panel * size
        for e in order:
            a, b = edges[e]
            draw.line([tuple(p[a]), tuple(p[b])], fill=(160, 160, 160), width=1)
        for i, (x, y) in enumerate(p):
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour(i), outline=(0, 0, 0))
    draw.text((4, 4), "front (x, y)", fill=(0, 0, 0))
    draw.text((size + 4, 4), "side (z, y)", fill=(0, 0, 0))
    out.save(path)


__all__ = ["draw_keypoints", "keypoint_sheet", "reconstruction_sheet", "structure_sheet",
           "to_pixels", "to_uint8", "grid"]

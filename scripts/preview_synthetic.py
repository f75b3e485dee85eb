"""Sample grids of a dataset, for looking at the data.

    python scripts/preview_synthetic.py docs/synthetic_samples.png --palette   # the committed grid
    python scripts/preview_synthetic.py out.png --spec synthetic:car --size 64 --marks

With ``--marks`` the landmarks are drawn: green = visible, red = self-occluded.
"""

from __future__ import annotations

import argparse

import numpy as np


def item_to_pil(item, marks: bool = False, cell: int | None = None):
    """An item's image as a PIL image, resized to ``cell`` pixels, landmarks drawn on top."""
    from PIL import Image, ImageDraw

    a = ((item["image"].numpy().transpose(1, 2, 0) + 1) * 127.5).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(a)
    S = im.width
    cell = cell or S
    if cell != S:
        im = im.resize((cell, cell), Image.BILINEAR)
    if marks:
        f = cell / S
        d = ImageDraw.Draw(im)
        r = max(1.0, cell / 64)
        for (x, y), v in zip(item["landmarks_2d"].numpy(), item["visible"].numpy()):
            if np.isfinite(x) and np.isfinite(y):
                cx, cy = (x + 0.5) * f - 0.5, (y + 0.5) * f - 0.5
                d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(40, 255, 40) if v else (255, 40, 40))
    return im


def sample_grid(rows, cols: int = 8, cell: int = 96):
    """rows: list of (spec, image_size, marks, seed). Every cell is shown at ``cell`` pixels."""
    from PIL import Image

    from kp3d.data import build_dataset

    grid = Image.new("RGB", (cols * cell, len(rows) * cell))
    for r, (spec, size, marks, seed) in enumerate(rows):
        ds = build_dataset(spec, "train", size, seed=seed, length=cols)
        for c in range(cols):
            grid.paste(item_to_pil(ds[c], marks, cell), (c * cell, r * cell))
    return grid


def main(argv=None):
    p = argparse.ArgumentParser(description="Save a grid of dataset samples as a PNG.")
    p.add_argument("out")
    p.add_argument("--spec", action="append", help="dataset spec(s); default: synthetic:face and synthetic:car")
    p.add_argument("--size", type=int, default=None, help="render size (default: rows at 128 and, marked, at 64)")
    p.add_argument("--marks", action="store_true", help="draw the landmarks on every row")
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--palette", action="store_true", help="save with a 256-colour palette (smaller file)")
    a = p.parse_args(argv)
    from PIL import Image

    specs = a.spec or ["synthetic:face", "synthetic:car"]
    rows = []
    for s in specs:
        if a.size:
            rows.append((s, a.size, a.marks, a.seed))
        else:
            rows += [(s, 128, a.marks, a.seed), (s, 64, False, a.seed + 1), (s, 128, True, a.seed + 1)]
    grid = sample_grid(rows, a.cols)
    if a.palette:  # 256 adaptive colours: a third of the file size, for the committed docs picture
        pal = grid.quantize(256, method=Image.Quantize.MEDIANCUT)
        grid = grid.quantize(palette=pal, dither=Image.Dither.FLOYDSTEINBERG)
    grid.save(a.out, optimize=True)


if __name__ == "__main__":
    main()

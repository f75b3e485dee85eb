"""The demo's pictures and its report page (Markdown, pictures beside it)."""

import csv
import os

import numpy as np
import torch

from . import viz as visualize


# ----------------------------------------------------------------------------- pictures

def _images(ds, indices):
    return torch.stack([ds[int(i)]["image"] for i in indices])


def _spread_by_yaw(yaw, n):
    """n indices whose yaws span the test set's range, ordered by yaw."""
    order = np.argsort(yaw)
    if len(order) <= n:
        return order
    return order[np.round(np.linspace(0, len(order) - 1, n)).astype(int)]


def _views(P, edges, w, path, titles, size=220, top_edges=None, colours=None):
    """PNG: the point set P (K, 3) (x right, y down, z depth) in front (x, y), side (z, y) and
    top (x, z) views, with its strongest links."""
    from PIL import Image, ImageDraw

    P = np.asarray(P, np.float64)
    P = P - P.mean(0)
    extent = max(np.abs(P).max(), 1e-6) * 1.2
    axes = ((0, 1), (2, 1), (0, 2))
    out = Image.new("RGB", (len(axes) * size, size), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    order = visualize.strongest_edges(w, top_edges or 2 * len(P)) if w is not None else []
    for panel, (u, v) in enumerate(axes):
        p = np.stack([P[:, u], P[:, v]], 1) / extent * (size / 2 - 6) + size / 2
        p[:, 0] += panel * size
        for e in order:
            a, b = edges[e]
            draw.line([tuple(p[a]), tuple(p[b])], fill=(150, 150, 150), width=1)
        for i, (x, y) in enumerate(p):
            c = colours[i] if colours is not None else visualize.colour(i)
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=c, outline=(0, 0, 0))
        draw.text((panel * size + 4, 4), titles[panel], fill=(0, 0, 0))
        if panel:
            draw.line([(panel * size, 0), (panel * size, size)], fill=(200, 200, 200))
    out.save(path)
    return out


def _scatter_panel(draw, ox, size, pts_list, colours, title, extent):
    for pts, c in zip(pts_list, colours):
        p = pts / extent * (size / 2 - 6) + size / 2
        for x, y in p:
            draw.ellipse([ox + x - 3, y - 3, ox + x + 3, y + 3], fill=c, outline=(0, 0, 0))
    draw.text((ox + 4, 4), title, fill=(0, 0, 0))
    draw.line([(ox, 0), (ox, size)], fill=(200, 200, 200))


def _regressed_3d(preds, key):
    """Test-set 3D landmarks regressed (bias-free, as the metric does) from the predicted 3D
    keypoints (key "keypoints_3d") or from the flat z = 0 lift (key "flat")."""
    from .eval.metrics import _centre_depth, to_regression_frame
    from .eval.regression import fit_bias_free

    def feats(p):
        k2 = p["keypoints_2d"]
        X = p["keypoints_3d"] if key == "keypoints_3d" else np.concatenate(
            [k2, np.zeros_like(k2[..., :1])], -1)
        return to_regression_frame(np.asarray(X, np.float64), "kp3d").reshape(len(X), -1)

    G = _centre_depth(np.asarray(preds["regress"]["landmarks_3d"], np.float64))
    W = fit_bias_free(feats(preds["regress"]), G.reshape(len(G), -1))
    Gt = _centre_depth(np.asarray(preds["test"]["landmarks_3d"], np.float64))
    P = (feats(preds["test"]) @ W).reshape(Gt.shape)
    P[:, :, 2] -= np.nanmean(P[:, :, 2], 1, keepdims=True)
    return P, Gt


def _per_image_3d(ds, preds, idx, edges, w, path, size=200):
    """One row per test image: the image with its keypoints; the predicted 3D keypoints seen from
    above (x, z); the 3D landmarks regressed from them (red) over the ground truth (grey), from
    the front and from above; the same for the flat z = 0 lift (blue)."""
    from PIL import Image, ImageDraw

    has3d = "keypoints_3d" in preds["test"]
    P3, G = _regressed_3d(preds, "keypoints_3d") if has3d else (None, None)
    F3, G = _regressed_3d(preds, "flat")
    cols = 6 if has3d else 3
    sheet = Image.new("RGB", (cols * size, len(idx) * size), (255, 255, 255))
    for row, i in enumerate(idx):
        item = ds[int(i)]
        S = item["image"].shape[-1]
        kp = preds["test"]["keypoints_2d"][i]
        tile = visualize.draw_keypoints(visualize.to_uint8(item["image"]), kp, edges, w,
                                        scale=max(1, size // S), top_edges=2 * len(kp))
        tile = tile.resize((size, size))
        sheet.paste(tile, (0, row * size))
        panel = Image.new("RGB", ((cols - 1) * size, size), (255, 255, 255))
        d = ImageDraw.Draw(panel)
        g = G[i] - np.nanmean(G[i], 0)
        ext = np.nanmax(np.abs(g)) * 1.3 + 1e-6
        ox = 0
        if has3d:
            k3 = preds["test"]["keypoints_3d"][i]
            k3 = k3 - k3.mean(0)
            e3 = np.abs(k3).max() * 1.3 + 1e-6
            for k, (x, z) in enumerate(k3[:, [0, 2]] / e3 * (size / 2 - 6) + size / 2):
                d.ellipse([x - 4, z - 4, x + 4, z + 4], fill=visualize.colour(k), outline=(0, 0, 0))
            d.text((4, 4), "predicted 3D kp, top (x, z)", fill=(0, 0, 0))
            ox = size
            p = P3[i] - np.nanmean(G[i], 0)
            _scatter_panel(d, ox, size, [g[:, [0, 1]], p[:, [0, 1]]], [(190, 190, 190), (220, 40, 40)],
                           "3D -> landmarks, front", ext)
            _scatter_panel(d, ox + size, size, [g[:, [0, 2]], p[:, [0, 2]]],
                           [(190, 190, 190), (220, 40, 40)], "3D -> landmarks, top", ext)
            ox += 2 * size
        f = F3[i] - np.nanmean(G[i], 0)
        _scatter_panel(d, ox, size, [g[:, [0, 1]], f[:, [0, 1]]], [(190, 190, 190), (40, 90, 220)],
                       "flat lift, front", ext)
        _scatter_panel(d, ox + size, size, [g[:, [0, 2]], f[:, [0, 2]]],
                       [(190, 190, 190), (40, 90, 220)], "flat lift, top", ext)
        d.text((4, size - 14), f"yaw {float(preds['test']['yaw_deg'][i]):+.0f} deg",
               fill=(0, 0, 0))
        sheet.paste(panel, (size, row * size))
    sheet.save(path)


def learning_curves(csv_path, path):
    """PNG of the loss terms in OUT/train/metrics.csv against the step (log scale)."""
    if not os.path.exists(csv_path):
        return False
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = np.array([float(r["step"]) for r in rows])
    skip = {"step", "time", "images_per_s", "lr", "step_time_s"}
    keys = [k for k in rows[0] if k not in skip]
    fig, ax = plt.subplots(1, 1, figsize=(7, 4), dpi=100)
    for k in keys:
        v = np.array([float(r[k]) if r.get(k) not in (None, "") else np.nan for r in rows])
        if np.isfinite(v).any() and np.nanmax(np.abs(v)) > 0:
            ax.plot(step, np.abs(v), label=k)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("|loss term| (unweighted)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


@torch.no_grad()
def draw_pictures(model, spec, preds, out, *, device="cpu", train_dir=None, n_grid=16, n_3d=4,
                  prefix="", only_keypoints=False):
    """Write the demo's PNGs under out, each name starting with prefix; returns
    {name: file name} of those written. only_keypoints: the keypoint sheet alone."""
    from .data import build_dataset

    model = model.eval()
    S = model.config.image_size
    ds = build_dataset(spec, "test", S, length=len(preds["test"]["keypoints_2d"]))
    yaw = np.asarray(preds["test"]["yaw_deg"], np.float64)
    edges = model.renderer.edges.tolist()
    w = model.renderer.weights.detach().cpu().numpy()
    pics = {}

    def name(key):
        pics[prefix + key] = f"{prefix}{key}.png"
        return os.path.join(out, pics[prefix + key])

    idx = _spread_by_yaw(yaw, n_grid)
    imgs = _images(ds, idx)
    kp = torch.as_tensor(preds["test"]["keypoints_2d"][idx])
    visualize.keypoint_sheet(imgs, kp, edges, w, name("keypoints"), max_images=n_grid,
                             scale=max(1, 192 // S))
    if only_keypoints:
        return pics

    sub = imgs[np.linspace(0, len(idx) - 1, min(6, len(idx))).astype(int)]
    fwd = model(sub.to(device), torch.Generator().manual_seed(0))
    visualize.reconstruction_sheet(fwd["target"].cpu(), fwd["masked"].cpu(), fwd["edge_map"].cpu(),
                                   fwd["reconstruction"].float().cpu(), name("reconstruction"),
                                   max_images=6, scale=max(1, 128 // S))
    if model.has_3d:
        _views(model.shape.mean_shape.detach().cpu().numpy(), edges, w, name("structure"),
               ("front (x, y)", "side (z, y)", "top (x, z)"))
    _per_image_3d(ds, preds, _spread_by_yaw(yaw, n_3d), edges, w, name("reconstructions_3d"))
    if train_dir and not learning_curves(os.path.join(train_dir, "metrics.csv"),
                                         name("learning_curves")):
        del pics[prefix + "learning_curves"]
    return pics


# ----------------------------------------------------------------------------- report

def _pct(x):
    return "n/a" if x is None else f"{100 * x:.2f} %"


def _r(x):
    return "n/a" if x is None else f"{x:.2f}"


def _div(a, b):
    return None if a is None or b is None or not b else a / b


def comparison_table(m: dict) -> list:
    """Markdown rows: kp3d beside its AutoLink ablation (m["autolink"]) and the baselines."""
    a = m.get("autolink", {})
    rows = ["| figure | kp3d | AutoLink (`--mode autolink`) | baseline |", "| --- | --- | --- | --- |"]
    rows.append(f"| 2D NME, K keypoints (inter-ocular) | {_pct(m.get('nme_2d'))} | "
                f"{_pct(a.get('nme_2d'))} | mean landmark {_pct(m.get('nme_2d_mean_baseline'))} |")
    rows.append(f"| 2D NME / mean-landmark baseline | {_r(_div(m.get('nme_2d'), m.get('nme_2d_mean_baseline')))} | "
                f"{_r(_div(a.get('nme_2d'), a.get('nme_2d_mean_baseline')))} | 1 |")
    if "nme_3d" in m:
        rows.append(f"| 3D NME, keypoints at the structure's depth (sqrt(w h) box) | "
                    f"{_pct(m.get('nme_3d'))} | {_pct(a.get('nme_3d'))} (no 3D: the flat lift) | "
                    f"flat z = 0 lift {_pct(m.get('nme_3d_flat_baseline'))} |")
        rows.append(f"| 3D NME / flat-lift baseline | {_r(_div(m.get('nme_3d'), m.get('nme_3d_flat_baseline')))} | "
                    f"1 | 1 |")
        rows.append(f"| 3D NME up to reflection | {_pct(m.get('nme_3d_reflect'))} | | "
                    f"flat lift {_pct(m.get('nme_3d_flat_baseline_reflect'))} |")
        rows.append(f"| 3D NME, mean-shape baseline | | | {_pct(m.get('nme_3d_mean_baseline'))} |")
    rows.append(f"| structure's yaw vs true yaw, abs. correlation | {_r(m.get('structure_yaw_corr'))} | "
                f"(no structure) | 0 |")
    return rows


def write_report(out, m, pictures):
    """Write OUT/report.md from the demo's metrics and pictures. Returns its path."""
    c = m["config"]
    model, tr = c["model"], c["train"]
    L = ["# kp3d demo report\n",
         "Unsupervised 2D keypoints, their links and a 3D structure learned from single images "
         "of synthetic faces, with no labels (Wang, Cao, Bernard, CVPR 2024), beside its 2D "
         "ablation, AutoLink (He, Wandt, Rhodin, NeurIPS 2022), trained with the same budget. "
         "The landmarks are used only to score the result.\n", "## What was trained\n"]
    L.append(f"- data: `{c['data']['spec']}` (procedural 3D heads, framed as AutoLink's CelebA "
             f"protocol, yaw within +-30 deg), {model['image_size']} x {model['image_size']} pixels")
    links = ("links learned" if model["learn_edge_weights"] else
             f"links fixed: every pair at weight {model['edge_weight_init']:g}")
    L.append(f"- setting `{m['setting']}`: {m['step']} steps, batch {tr['batch_size']}, "
             f"K = {model['num_keypoints']} keypoints, AdamW lr {tr['lr']}, detector widths "
             f"{list(model['detector_widths'])}, decoder widths {list(model['decoder_widths'])}, "
             f"reconstruction loss `{tr['reconstruction']}`, {links}")
    L.append(f"- kp3d: reconstruction + projection + repulsion (weight {tr['w_repulsion']:g}) + "
             f"canonicalisation; AutoLink: reconstruction alone")
    L.append(f"- device `{m['device']}`, {m['threads']} CPU threads, seed {m['seed']}")
    a = m.get("autolink", {})
    L.append(f"- time: kp3d training {m['time_train_s']:.0f} s and evaluation "
             f"{m['time_eval_s']:.0f} s; AutoLink {a.get('time_train_s', 0):.0f} s and "
             f"{a.get('time_eval_s', 0):.0f} s; pictures {m['time_pictures_s']:.0f} s; "
             f"total {m['time_total_s']:.0f} s\n")
    L.append("## Results on held-out test faces\n")
    L.append(f"{m['num_test']} test faces; the bias-free linear regressor from the keypoints to "
             f"the {m['num_landmarks']} landmarks is fit on {m['num_train']} other faces. Lower "
             "is better; fractions of the normaliser.\n")
    L += comparison_table(m)
    L.append("")
    L.append("Depth reflection: a weak-perspective model cannot tell a shape from its depth "
             "mirror. The plain 3D figure fits one linear map for all faces; the "
             "reflection-tolerant one lets each face's ground-truth depth be mirrored during "
             "the fit and scores each test face against the better of the two depths. The "
             "structure's yaw is read from the fitted structure of each face against their "
             "mean (Procrustes), and compared with the true head yaw.\n")
    if "yaw_bins" in m:
        b = m["yaw_bins"]
        L.append("kp3d by head yaw (test faces per bin: " + ", ".join(
            f"{n} deg: {c}" for n, c in zip(b["bins_deg"], b["count"])) + "):\n")
        L.append("| figure | " + " | ".join(f"{n} deg" for n in b["bins_deg"]) + " |")
        L.append("| --- |" + " --- |" * len(b["bins_deg"]))
        for key in ("nme_2d", "nme_2d_mean_baseline", "nme_3d", "nme_3d_flat_baseline"):
            if key in b:
                L.append(f"| {key} | " + " | ".join(_pct(v) for v in b[key]) + " |")
        L.append("")
    captions = {
        "keypoints": "kp3d's keypoints (same colour = same keypoint) and their strongest links "
                     "(white, opacity by weight) over test faces, ordered by yaw.",
        "autolink_keypoints": "The same for AutoLink.",
        "reconstruction": "kp3d's reconstructions, one row per face: the image, masked input, "
                          "edge map drawn from the keypoints, decoder output.",
        "structure": "kp3d's learned 3D mean shape with its strongest links: front, side, top.",
        "reconstructions_3d": "Per-face 3D: the face with its keypoints; the keypoints at the "
                              "structure's depth, from above; the 3D landmarks regressed from "
                              "them (red) over the ground truth (grey), front and top; the same "
                              "for the flat z = 0 lift (blue).",
        "learning_curves": "kp3d's loss terms over training.",
    }
    L.append("## Pictures\n")
    for key, file in pictures.items():
        L += [f"### {key.replace('_', ' ')}\n", captions.get(key, ""), f"\n![{key}]({file})\n"]
    L.append("## Files\n")
    L.append("- `metrics.json`: every figure above (fractions, not percent), kp3d's at the top "
             "level and AutoLink's under `autolink`, the setting and the timings")
    L.append("- `kp3d/`, `autolink/`: the training runs: the checkpoint (`kp3d eval`, "
             "`kp3d infer`, `kp3d export` take it), `metrics.csv` and the training pictures\n")
    L.append("Reproduce: `kp3d demo --out DIR" + (" --tiny" if m["setting"] == "tiny" else "") +
             f" --steps {m['step']} --seed {m['seed']}`\n")
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(L))
    return path


__all__ = ["draw_pictures", "write_report", "comparison_table", "learning_curves"]

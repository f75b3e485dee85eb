"""The demo's pictures and its report page (Markdown, pictures beside it)."""

import csv
import math
import os

import numpy as np
import torch

from .train import visualize


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
def draw_pictures(model, spec, preds, out, *, device="cpu", train_dir=None, n_grid=16, n_3d=4):
    """Write the demo's PNGs under out; returns {name: file name} of those written."""
    from .data import build_dataset
    from .model.structure3d import random_rotations  # noqa: F401  (the forward draws them)

    model = model.eval()
    S = model.config.image_size
    ds = build_dataset(spec, "test", S, length=len(preds["test"]["keypoints_2d"]))
    yaw = np.asarray(preds["test"]["yaw_deg"], np.float64)
    edges = model.renderer.edges.tolist()
    w = model.renderer.weights.detach().cpu().numpy()
    pics = {}

    idx = _spread_by_yaw(yaw, n_grid)
    imgs = _images(ds, idx)
    kp = torch.as_tensor(preds["test"]["keypoints_2d"][idx])
    visualize.keypoint_sheet(imgs, kp, edges, w, os.path.join(out, "keypoints.png"),
                             max_images=n_grid, scale=max(1, 192 // S))
    pics["keypoints"] = "keypoints.png"

    sub = imgs[np.linspace(0, len(idx) - 1, min(6, len(idx))).astype(int)]
    g = torch.Generator().manual_seed(0)
    fwd = model(sub.to(device), g)
    visualize.reconstruction_sheet(fwd["target"].cpu(), fwd["masked"].cpu(), fwd["edge_map"].cpu(),
                                   fwd["reconstruction"].float().cpu(),
                                   os.path.join(out, "reconstruction.png"), max_images=6,
                                   scale=max(1, 128 // fwd["target"].shape[-1]))  # the model's size
    pics["reconstruction"] = "reconstruction.png"

    if model.has_3d:
        M = model.shape.mean_shape.detach().cpu().numpy()
        _views(M, edges, w, os.path.join(out, "structure.png"),
               ("front (x, y)", "side (z, y)", "top (x, z)"))
        pics["structure"] = "structure.png"
    idx3 = _spread_by_yaw(yaw, n_3d)
    _per_image_3d(ds, preds, idx3, edges, w, os.path.join(out, "reconstructions_3d.png"))
    pics["reconstructions_3d"] = "reconstructions_3d.png"

    if train_dir and learning_curves(os.path.join(train_dir, "metrics.csv"),
                                     os.path.join(out, "learning_curves.png")):
        pics["learning_curves"] = "learning_curves.png"
    return pics


def structure_stats(preds):
    """How much the fitted 3D structure turns across the test faces, and how that follows the
    head's yaw: a cheap check that depth carries information; with a view head, how its view
    follows the yaw (view_corr_with_yaw, its sign dropped)."""
    t = preds["test"]
    out = {}
    if "view" in t and "yaw_deg" in t:
        v, true = np.asarray(t["view"], np.float64), np.asarray(t["yaw_deg"], np.float64)
        c = float(np.corrcoef(v, true)[0, 1]) if v.std() > 1e-12 and true.std() > 0 else 0.0
        out["view_corr_with_yaw"] = abs(c)
    if "fitted_3d" not in t:
        return out
    P = np.asarray(t["fitted_3d"], np.float64)
    P = P - P.mean(1, keepdims=True)
    # the yaw of each prediction relative to the mean prediction (Procrustes about all axes)
    ref = P.mean(0)
    yaws = []
    for p in P:
        U, _, Vt = np.linalg.svd(ref.T @ p)
        d = np.sign(np.linalg.det(U @ Vt))
        R = U @ np.diag([1, 1, d]) @ Vt
        yaws.append(math.degrees(math.atan2(R[0, 2], R[2, 2])))
    yaws = np.array(yaws)
    true = np.asarray(t["yaw_deg"], np.float64)
    c = float(np.corrcoef(yaws, true)[0, 1]) if yaws.std() > 1e-9 else 0.0
    return {**out, "predicted_yaw_spread_deg": float(yaws.std()),
            "predicted_yaw_corr_with_true": abs(c)}


# ----------------------------------------------------------------------------- report

def _pct(x):
    return "n/a" if x is None else f"{100 * x:.2f} %"


def _r(x):
    return "n/a" if x is None else f"{x:.2f}"


def write_report(out, m, pictures, model_config, train_config):
    s = m["setting"]
    r2, r3 = m.get("ratio_2d_to_mean_baseline"), m.get("ratio_3d_to_flat_baseline")
    ok2 = r2 is not None and r2 <= 0.5
    ok3 = r3 is not None and r3 <= 0.8
    L = []
    L.append("# kp3d demo report\n")
    L.append("Unsupervised 2D keypoints, their links and a 3D structure learned from single "
             "images of synthetic faces, with no labels (the method of Wang, Cao, Bernard, CVPR "
             "2024, on AutoLink). The landmarks are used only to score the result.\n")
    L.append("## What was trained\n")
    L.append(f"- data: `{m.get('data')}` (procedural 3D heads, yaw up to +-75 deg, random "
             f"appearance and background), {s['image_size']} x {s['image_size']} pixels")
    L.append(f"- setting `{s['name']}`: {m['step']} steps, batch {s['batch_size']}, "
             f"K = {s['keypoints']} keypoints, AdamW lr {s['lr']}, detector widths "
             f"{list(s['detector_widths'])}, decoder widths {list(s['decoder_widths'])}, "
             f"reconstruction loss `{s['reconstruction']}`, {model_config['num_basis']} "
             f"deformation bases")
    if model_config.get("learn_edge_weights", True):
        links = f"links learned (edge weights start at {model_config.get('edge_weight_init', 0):.3g})"
    else:
        links = (f"links fixed: every pair at weight {model_config.get('edge_weight_init', 0):.3g}"
                 " (learned weights shrink towards 0 in a short run; docs/training.md)")
    warm = int(train_config.get("projection_warmup", 0))
    proj = ("the projection loss trains the 3D structure only, never the detector"
            if warm >= m["step"] else
            f"the projection loss moves the detector after step {warm}" if warm else
            "the projection loss trains the detector and the 3D structure")
    grid = model_config.get("mask_grid", 16)
    shown = model_config.get("decoder_input", "mask")
    seen = {"shuffle": f"the decoder sees all {grid} x {grid} image patches, shuffled",
            "mirror-warp": "the decoder sees the mirror image warped onto the keypoints"}.get(
        shown, f"mask keeps {model_config.get('mask_keep', 0.2):.0%} of the patches of the "
               + {"flip": "mirror image", "pair": "same scene at another pose"}.get(shown, "image"))
    if model_config.get("keypoint_map_sigma", 0):
        seen += ", and one Gaussian map per keypoint"
        if model_config.get("keypoint_appearance", False):
            seen += " coloured by the image under its heatmap"
    if model_config.get("equivariance_shift", 0):
        seen += "; the keypoints must follow turned, scaled and shifted copies of the image"
    if model_config.get("part_maps", False):
        seen += ("; the keypoints are the centres of parts that tile the image, each part "
                 f"pushed to one colour (weight {train_config.get('w_part_colour', 1.0):g})")
    reach = model_config.get("refine_reach", 0)
    if reach:
        side = 2 * model_config.get("refine_radius", 2) + 1
        seen += (f"; each keypoint also has a refined copy, the best match of a learned "
                 f"{side} x {side} template near it, a Gaussian prior of width {reach:g} on the "
                 f"distance (both are evaluated)")
    scale = model_config.get("work_scale", 1)
    if scale > 1:
        size = model_config["image_size"]
        seen += (f"; the detector, edge map and decoder work on the {size} x {size} image "
                 f"average-pooled to {size // scale} x {size // scale}, the copies' search on the "
                 f"full image")
    L.append(f"- {links}; {proj}; {seen}")
    view = m.get("view_head")
    if view:
        v = view["settings"]
        L.append(f"- then the view head, without labels: on {v['faces']} training images and "
                 f"their mirror images, an image network (odd under mirroring, on head crops in "
                 f"chromaticity) learns the sign of the odd part of the keypoints' layout on the "
                 f"{v['keep']:.0%} of the faces it calls most turned, crops turned in-plane by up "
                 f"to {v['turn']:g} deg; {v['rounds']} round(s) of {v['steps']} steps, from the "
                 f"second the last head's views teach; its views agree in sign with the odd "
                 f"layout's on {view['agreement_with_odd_layout']:.0%} of the training faces. The 3D "
                 f"keypoints take their depth from its view (a plane through the points turned "
                 f"by it), not from the structure (docs/method.md)")
    L.append(f"- device `{m['device']}`, {m['threads']} CPU threads, seed {m['seed']}")
    L.append(f"- time: training {m['time_train_s']:.0f} s, "
             + (f"view head {m['time_view_head_s']:.0f} s, " if view else "")
             + f"evaluation {m['time_eval_s']:.0f} s, "
             f"pictures {m['time_pictures_s']:.0f} s, total {m['time_total_s']:.0f} s\n")
    L.append("## Results on held-out test images\n")
    L.append(f"{m['num_test']} test images; the linear regressor from keypoints to the "
             f"{m['num_landmarks']} landmarks is fit on {m['num_train']} other images (SPEC "
             "section 8). Lower is better; fractions of the normaliser.\n")
    L.append("| figure | ours | baseline | ratio | target |")
    L.append("| --- | --- | --- | --- | --- |")
    L.append(f"| 2D NME (inter-ocular) | {_pct(m.get('nme_2d'))} | mean landmark "
             f"{_pct(m.get('nme_2d_mean_baseline'))} | {_r(r2)} | <= 0.5 "
             f"{'(met)' if ok2 else '(not met)'} |")
    L.append(f"| 2D NME (sqrt(w h) box) | {_pct(m.get('nme_2d_box'))} | mean landmark "
             f"{_pct(m.get('nme_2d_box_mean_baseline'))} | "
             f"{_r(_div(m.get('nme_2d_box'), m.get('nme_2d_box_mean_baseline')))} | |")
    if "nme_3d" in m:
        L.append(f"| 3D NME (sqrt(w h) box) | {_pct(m.get('nme_3d'))} | flat z = 0 lift "
                 f"{_pct(m.get('nme_3d_flat_baseline'))} | {_r(r3)} | <= 0.8 "
                 f"{'(met)' if ok3 else '(not met)'} |")
        L.append(f"| 3D NME up to reflection | {_pct(m.get('nme_3d_reflect'))} | flat z = 0 lift "
                 f"{_pct(m.get('nme_3d_flat_baseline_reflect'))} | "
                 f"{_r(_div(m.get('nme_3d_reflect'), m.get('nme_3d_flat_baseline_reflect')))} | |")
        L.append(f"| 3D NME, mean-shape baseline | | {_pct(m.get('nme_3d_mean_baseline'))} | | |")
    L.append("")
    L.append("Depth reflection: a weak-perspective model cannot tell a shape from its depth "
             "mirror. The plain 3D figure fits one linear map for all images; the "
             "reflection-tolerant one lets each image's ground-truth depth be mirrored during "
             "the fit and scores each test image against the better of the two depths.\n")
    if "yaw_bins" in m:
        b = m["yaw_bins"]
        L.append("By head yaw (test images per bin: " + ", ".join(
            f"{n} deg: {c}" for n, c in zip(b["bins_deg"], b["count"])) + "):\n")
        L.append("| figure | " + " | ".join(f"{n} deg" for n in b["bins_deg"]) + " |")
        L.append("| --- |" + " --- |" * len(b["bins_deg"]))
        for key in ("nme_2d", "nme_2d_mean_baseline", "nme_3d", "nme_3d_flat_baseline"):
            if key in b:
                L.append(f"| {key} | " + " | ".join(_pct(v) for v in b[key]) + " |")
        L.append("")
    if "predicted_yaw_spread_deg" in m:
        L.append(("3D structure check (the structure, not the view head that gives the 3D keypoints "
                  "their depth): " if view else "3D structure check: ") +
                 f"the 3D structure fitted to the points turns by "
                 f"{m['predicted_yaw_spread_deg']:.1f}"
                 f" deg (standard deviation) across the test images; the correlation of that "
                 f"turn with the true head yaw is {m['predicted_yaw_corr_with_true']:.2f} "
                 "(0 = the depth carries no pose information).\n")
    if view and "view_corr_with_yaw" in m:
        L.append(f"View head check: the correlation of its view with the true head yaw is "
                 f"{m['view_corr_with_yaw']:.2f} on the test images (its sign is a gauge).\n")
    L.append("## Pictures\n")
    captions = {
        "keypoints": "Discovered keypoints (coloured, same colour = same keypoint) and their "
                     "strongest links (white, opacity by weight) over test images, "
                     "ordered by head yaw from left-facing to right-facing."
                     + (" The points without links are the keypoints' refined copies."
                        if model_config.get("refine_reach", 0) else ""),
        "reconstruction": "Reconstruction samples, one row per image: target, masked input, "
                          "edge map drawn from the keypoints, decoder output.",
        "structure": "The learned 3D mean shape with its strongest links: front, side, top.",
        "reconstructions_3d": "Per-image 3D: the image with its keypoints; the 3D keypoints "
                              + ("(each point at the depth of the plane turned by the view "
                                 "head's view) " if view else
                                 "(each point at the depth of the structure fitted to them) ")
                              + "from above; the 3D landmarks regressed from them (red) "
                              "over the ground truth (grey), front and top; the same for the flat "
                              "z = 0 lift (blue).",
        "learning_curves": "Loss terms over training.",
    }
    for key, name in pictures.items():
        L.append(f"### {key.replace('_', ' ')}\n")
        L.append(captions.get(key, ""))
        L.append(f"\n![{key}]({name})\n")
    L.append("## Files\n")
    L.append("- `metrics.json`: every figure above (fractions, not percent), the setting and "
             "the timings")
    if view:
        L.append("- `model.pt`: the model with its view head (`kp3d eval`, `kp3d infer`, "
                 "`kp3d export` take it)")
    L.append("- `train/`: the training checkpoint (it resumes training; without the view head), "
             "`metrics.csv` and the training pictures\n" if view else
             "- `train/`: the checkpoint (`kp3d eval`, `kp3d infer`, `kp3d export` take it), "
             "`metrics.csv` and the training pictures\n")
    L.append("Reproduce: `kp3d demo --out DIR" + (" --tiny" if s["name"] == "tiny" else "") +
             f" --steps {m['step']} --seed {m['seed']}`\n")
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(L))
    return path


def _div(a, b):
    return None if a is None or b is None or not b else a / b


__all__ = ["draw_pictures", "write_report", "structure_stats", "learning_curves"]

"""Landmark metrics (docs/data.md): 2D and 3D NME after a bias-free linear regression, with the
trivial baselines beside every figure. See docs/data.md for every convention used here."""

from __future__ import annotations

import warnings

import numpy as np

from .regression import fit_bias_free, fit_reflection_tolerant

YAW_BINS = ((0.0, 30.0), (30.0, 60.0), (60.0, np.inf))
YAW_BIN_NAMES = ("0-30", "30-60", "60-90")


def _arr(x, name, last=None):
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 3 or (last is not None and a.shape[2] not in last):
        want = "/".join(str(v) for v in last) if last else "D"
        raise ValueError(f"{name}: expected an array of shape (N, K, {want}), got {a.shape}")
    return a


def to_regression_frame(pred: np.ndarray, input_frame: str) -> np.ndarray:
    """Map predictions to the frame the bias-free regression sees.

    ``"kp3d"``: coordinates in the kp3d convention [-1, 1] become AutoLink's
    [0, 1] frame, ``(p + 1) / 2``, so that a bias-free map can still produce the landmark offset.
    ``"raw"``: used as given.
    """
    if input_frame == "kp3d":
        return (pred + 1.0) / 2.0
    if input_frame == "raw":
        return pred
    raise ValueError(f"input_frame: expected 'kp3d' or 'raw', got {input_frame!r}")


def interocular(gt: np.ndarray, eye_indices) -> np.ndarray:
    a, b = eye_indices
    return np.linalg.norm(gt[:, a, :2] - gt[:, b, :2], axis=1)


def box_size(gt: np.ndarray, kind: str) -> np.ndarray:
    """Per-image size of the ground-truth landmark box in x, y: ``diag`` or ``sqrtwh`` (sqrt(w h))."""
    xy = gt[:, :, :2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        w = np.nanmax(xy[:, :, 0], 1) - np.nanmin(xy[:, :, 0], 1)
        h = np.nanmax(xy[:, :, 1], 1) - np.nanmin(xy[:, :, 1], 1)
    return np.hypot(w, h) if kind == "diag" else np.sqrt(w * h)


def nme(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray):
    """Normalised mean error. pred, gt: (N, L, D); norm: (N,).

    Returns (nme, per_image (N,), per_landmark (L,)): the error of each landmark divided by its
    image's norm; an image's figure is the mean over its annotated landmarks, the NME is the mean
    over images. Images whose norm is not positive and finite are left out (per_image NaN).
    """
    ok_img = np.isfinite(norm) & (norm > 0)
    err = np.linalg.norm(pred - gt, axis=2) / np.where(ok_img, norm, 1.0)[:, None]
    err[~ok_img] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_image = np.nanmean(err, axis=1)
        per_landmark = np.nanmean(err, axis=0)
        value = float(np.nanmean(per_image)) if np.isfinite(per_image).any() else float("nan")
    return value, per_image, per_landmark


def _centre_depth(Y: np.ndarray) -> np.ndarray:
    Y = Y.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        Y[:, :, 2] -= np.nanmean(Y[:, :, 2], axis=1, keepdims=True)
    return Y


def _centre_like(P: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Zero-mean depth of a prediction over the landmarks annotated in gt."""
    P = P.copy()
    m = np.isfinite(gt[:, :, 2])
    zm = np.where(m, P[:, :, 2], 0.0).sum(1) / np.maximum(m.sum(1), 1)
    P[:, :, 2] -= zm[:, None]
    return P


def _mirror(P: np.ndarray) -> np.ndarray:
    M = P.copy()
    M[:, :, 2] *= -1
    return M


def _nan_list(a):
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, float)]


def _reflect_best(P: np.ndarray, gt: np.ndarray, norm: np.ndarray):
    e1 = np.linalg.norm(P - gt, axis=2)
    e2 = np.linalg.norm(_mirror(P) - gt, axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        use_m = np.nanmean(e2, 1) < np.nanmean(e1, 1)
    return np.where(use_m[:, None, None], _mirror(P), P)


def evaluate_keypoints(pred_train_2d, gt_train_2d, pred_test_2d, gt_test_2d, *, eye_indices=None,
                       pred_train_3d=None, gt_train_3d=None, pred_test_3d=None, gt_test_3d=None,
                       yaw_test_deg=None, input_frame: str = "kp3d", landmark_names=None) -> dict:
    """2D (and 3D) NME of discovered keypoints after a bias-free linear regression.

    pred_*_2d: (N, K, 2) discovered 2D keypoints; with ``input_frame="kp3d"`` (default) they are in
    the kp3d frame [-1, 1] and are mapped to AutoLink's [0, 1] frame before the regression; use
    ``input_frame="raw"`` to regress from the values as given. gt_*_2d: (N, L, 2) landmarks in
    pixels (NaN = not annotated). pred_*_3d: (N, K, 3) discovered 3D keypoints (same frame rule);
    gt_*_3d: (N, L, 3) landmarks (pixels; depth made zero-mean per image). yaw_test_deg: (N,).
    eye_indices: (left, right) landmark indices for inter-ocular normalisation, or None for the
    landmark-box diagonal. Returns a JSON-ready dict of fractions (not percent).
    """
    P2tr = _arr(pred_train_2d, "pred_train_2d", (2,))
    G2tr = _arr(gt_train_2d, "gt_train_2d", (2, 3))[:, :, :2]
    P2te = _arr(pred_test_2d, "pred_test_2d", (2,))
    G2te = _arr(gt_test_2d, "gt_test_2d", (2, 3))[:, :, :2]
    for name, p, g in (("train", P2tr, G2tr), ("test", P2te, G2te)):
        if len(p) != len(g):
            raise ValueError(f"pred_{name}_2d has {len(p)} images but gt_{name}_2d has {len(g)}")
        if len(p) == 0:
            raise ValueError(f"the {name} split is empty")
        if not np.isfinite(p).all():
            raise ValueError(f"pred_{name}_2d contains NaN or infinite values")
    if P2tr.shape[1] != P2te.shape[1] or G2tr.shape[1] != G2te.shape[1]:
        raise ValueError("train and test must have the same number of keypoints and of landmarks")
    N, L = G2te.shape[:2]
    if eye_indices is not None:
        eye_indices = tuple(int(i) for i in eye_indices)
        if len(eye_indices) != 2 or not all(0 <= i < L for i in eye_indices):
            raise ValueError(f"eye_indices must be two landmark indices in [0, {L}), got {eye_indices}")

    out: dict = {"num_train": int(len(P2tr)), "num_test": int(N), "num_keypoints": int(P2tr.shape[1]),
                 "num_landmarks": int(L), "input_frame": input_frame}
    if landmark_names is not None:
        out["landmark_names"] = list(landmark_names)

    # ------------------------------------------------------------------ 2D
    Xtr = to_regression_frame(P2tr, input_frame).reshape(len(P2tr), -1)
    Xte = to_regression_frame(P2te, input_frame).reshape(N, -1)
    W2 = fit_bias_free(Xtr, G2tr.reshape(len(G2tr), -1))
    pred2 = (Xte @ W2).reshape(N, L, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean2 = np.nanmean(G2tr, axis=0)
    base2 = np.broadcast_to(mean2, G2te.shape)
    if eye_indices is not None:
        norm2, out["nme_2d_norm"] = interocular(G2te, eye_indices), "inter-ocular"
    else:
        norm2, out["nme_2d_norm"] = box_size(G2te, "diag"), "box-diagonal"
    out["nme_2d"], per_img_2d, per_lm_2d = nme(pred2, G2te, norm2)
    out["nme_2d_mean_baseline"], per_img_2d_base, per_lm_2d_base = nme(base2, G2te, norm2)
    out["per_landmark_2d"] = _nan_list(per_lm_2d)
    out["per_landmark_2d_mean_baseline"] = _nan_list(per_lm_2d_base)
    out["num_test_excluded_2d"] = int((~np.isfinite(per_img_2d)).sum())
    nbox = box_size(G2te, "sqrtwh")
    out["nme_2d_box"], per_img_2d_box, _ = nme(pred2, G2te, nbox)
    out["nme_2d_box_mean_baseline"], per_img_2d_box_base, _ = nme(base2, G2te, nbox)
    per_image = {"nme_2d": per_img_2d, "nme_2d_mean_baseline": per_img_2d_base,
                 "nme_2d_box": per_img_2d_box, "nme_2d_box_mean_baseline": per_img_2d_box_base}

    # ------------------------------------------------------------------ 3D
    given3 = [x is not None for x in (pred_train_3d, gt_train_3d, pred_test_3d, gt_test_3d)]
    if any(given3) and not all(given3):
        raise ValueError("3D evaluation needs all of pred_train_3d, gt_train_3d, pred_test_3d, gt_test_3d")
    if all(given3):
        P3tr = _arr(pred_train_3d, "pred_train_3d", (3,))
        G3tr = _arr(gt_train_3d, "gt_train_3d", (3,))
        P3te = _arr(pred_test_3d, "pred_test_3d", (3,))
        G3te = _arr(gt_test_3d, "gt_test_3d", (3,))
        if len(P3tr) != len(P2tr) or len(G3tr) != len(P2tr) or len(P3te) != N or len(G3te) != N:
            raise ValueError("the 3D arrays must have as many images as the 2D arrays of the same split")
        if not (np.isfinite(P3tr).all() and np.isfinite(P3te).all()):
            raise ValueError("pred_train_3d / pred_test_3d contain NaN or infinite values")
        if G3tr.shape[1] != L or G3te.shape[1] != L:
            raise ValueError(f"gt 3D landmarks must have the same {L} landmarks as the 2D ones")
        G3tr, G3te = _centre_depth(G3tr), _centre_depth(G3te)
        norm3 = box_size(G3te, "sqrtwh")
        X3tr = to_regression_frame(P3tr, input_frame).reshape(len(P3tr), -1)
        X3te = to_regression_frame(P3te, input_frame).reshape(N, -1)
        flat_tr = np.concatenate([P2tr, np.zeros_like(P2tr[:, :, :1])], 2)
        flat_te = np.concatenate([P2te, np.zeros_like(P2te[:, :, :1])], 2)
        Ftr = to_regression_frame(flat_tr, input_frame).reshape(len(flat_tr), -1)
        Fte = to_regression_frame(flat_te, input_frame).reshape(N, -1)
        Y3tr = G3tr.reshape(len(G3tr), -1)

        def plain(Xa, Xb):
            W = fit_bias_free(Xa, Y3tr)
            return _centre_like((Xb @ W).reshape(N, L, 3), G3te)

        def reflect(Xa, Xb):
            W, _ = fit_reflection_tolerant(Xa, G3tr, input_depth=Xa.reshape(len(Xa), -1, 3)[:, :, 2])
            return _reflect_best(_centre_like((Xb @ W).reshape(N, L, 3), G3te), G3te, norm3)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean3 = np.nanmean(G3tr, axis=0)
        base3 = np.broadcast_to(mean3, G3te.shape)
        figs = {
            "nme_3d": plain(X3tr, X3te),
            "nme_3d_reflect": reflect(X3tr, X3te),
            "nme_3d_flat_baseline": plain(Ftr, Fte),
            "nme_3d_flat_baseline_reflect": reflect(Ftr, Fte),
            "nme_3d_mean_baseline": _centre_like(base3, G3te),
        }
        figs["nme_3d_mean_baseline_reflect"] = _reflect_best(figs["nme_3d_mean_baseline"], G3te, norm3)
        for key, P in figs.items():
            out[key], per_image[key], per_lm = nme(P, G3te, norm3)
            if key in ("nme_3d", "nme_3d_reflect", "nme_3d_flat_baseline"):
                out["per_landmark_" + key[4:]] = _nan_list(per_lm)
        out["nme_3d_norm"] = "sqrt(w*h) of the ground-truth box"

    # ------------------------------------------------------------------ yaw bins
    if yaw_test_deg is not None:
        yaw = np.abs(np.asarray(yaw_test_deg.detach().cpu().numpy() if hasattr(yaw_test_deg, "detach")
                                else yaw_test_deg, np.float64).reshape(-1))
        if len(yaw) != N:
            raise ValueError(f"yaw_test_deg has {len(yaw)} values for {N} test images")
        if not np.isfinite(yaw).any():  # a dataset without pose (NaN yaw): no bins
            yaw_test_deg = None
    if yaw_test_deg is not None:
        bins = {"bins_deg": list(YAW_BIN_NAMES), "count": []}
        masks = [(yaw >= lo) & (yaw < hi) for lo, hi in YAW_BINS]
        bins["count"] = [int(m.sum()) for m in masks]
        for key, v in per_image.items():
            vals = []
            for m in masks:
                sel = v[m]
                sel = sel[np.isfinite(sel)]
                vals.append(float(sel.mean()) if sel.size else None)
            bins[key] = vals
            have = [x for x in vals if x is not None]
            out[key + "_yaw_mean"] = float(np.mean(have)) if have else None
        out["yaw_bins"] = bins
    # JSON has no NaN: figures that cannot be computed (no usable image) are None
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}


def structure_yaw_correlation(fitted_3d, yaw_deg) -> float | None:
    """|Pearson correlation| between the true yaw (N,) and the yaw of each fitted 3D structure
    (N, K, 3) relative to their mean shape (Procrustes over all three axes, the yaw read as
    atan2(R_02, R_22)): whether the structure turns with the head. The sign is a gauge (a
    weak-perspective model cannot tell a shape from its depth mirror). None without finite yaws
    or when the structure never turns."""
    P = np.asarray(fitted_3d, np.float64)
    true = np.asarray(yaw_deg, np.float64).reshape(-1)
    if P.ndim != 3 or P.shape[-1] != 3 or len(P) != len(true):
        raise ValueError(f"fitted_3d must be (N, K, 3) and yaw_deg (N,), got {P.shape} and {true.shape}")
    keep = np.isfinite(true) & np.isfinite(P).all((1, 2))
    if keep.sum() < 2 or true[keep].std() == 0:
        return None
    P, true = P[keep] - P[keep].mean(1, keepdims=True), true[keep]
    ref = P.mean(0)
    U, _, Vt = np.linalg.svd(np.einsum("kd,nke->nde", ref, P))
    d = np.sign(np.linalg.det(U @ Vt))
    R = U @ (np.eye(3) * np.stack([np.ones_like(d), np.ones_like(d), d], -1)[:, None, :]) @ Vt
    yaws = np.degrees(np.arctan2(R[:, 0, 2], R[:, 2, 2]))
    if yaws.std() < 1e-9:
        return None
    return float(abs(np.corrcoef(yaws, true)[0, 1]))


def format_metrics(m: dict) -> str:
    """A short human-readable table: each figure beside its baseline(s)."""
    def pct(x):
        return "   n/a " if x is None or not np.isfinite(x) else f"{100 * x:6.2f}%"

    lines = [f"test images {m['num_test']}, regression fit on {m['num_train']}, "
             f"K = {m['num_keypoints']} keypoints -> L = {m['num_landmarks']} landmarks"]
    lines.append(f"  2D NME ({m['nme_2d_norm']}):  {pct(m['nme_2d'])}   mean-landmark baseline {pct(m['nme_2d_mean_baseline'])}")
    lines.append(f"  2D NME (sqrt(w*h) box):  {pct(m['nme_2d_box'])}   mean-landmark baseline {pct(m['nme_2d_box_mean_baseline'])}")
    if "nme_3d" in m:
        lines.append(f"  3D NME (sqrt(w*h) box):  {pct(m['nme_3d'])}   flat z=0 lift {pct(m['nme_3d_flat_baseline'])}"
                     f"   mean shape {pct(m['nme_3d_mean_baseline'])}")
        lines.append(f"  3D NME up to reflection: {pct(m['nme_3d_reflect'])}   flat z=0 lift "
                     f"{pct(m['nme_3d_flat_baseline_reflect'])}   mean shape {pct(m['nme_3d_mean_baseline_reflect'])}")
    if "yaw_bins" in m:
        b = m["yaw_bins"]
        for key in ("nme_2d", "nme_2d_box", "nme_3d", "nme_3d_reflect"):
            if key in b:
                cells = "  ".join(f"[{n}] {pct(v)}" for n, v in zip(b["bins_deg"], b[key]))
                lines.append(f"  {key} by |yaw| (n = {b['count']}): {cells}   mean {pct(m[key + '_yaw_mean'])}")
    return "\n".join(lines)

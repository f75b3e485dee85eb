"""Glue between a keypoint predictor and the metrics: run it over the ``regress`` and ``test``
splits of a dataset spec and evaluate (SPEC section 8)."""

from __future__ import annotations

import numpy as np
import torch

from .metrics import evaluate_keypoints


def collect(ds, predict=None, *, batch_size: int = 64, device="cpu", num_workers: int = 0):
    """Run ``predict`` over a dataset and gather predictions and annotations.

    predict(images) takes a float (B, 3, S, S) batch in [-1, 1] on ``device`` and returns the 2D
    keypoints (B, K, 2) in the kp3d frame, or a tuple/dict with the 2D keypoints first / under
    "kp2d" and optionally 3D keypoints (B, K, 3) second / under "kp3d".
    Returns a dict of numpy arrays: pred_2d, pred_3d (or None), gt_2d, gt_3d, visible, yaw_deg.
    """
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    out = {k: [] for k in ("pred_2d", "pred_3d", "gt_2d", "gt_3d", "visible", "yaw_deg")}
    with torch.no_grad():
        for b in dl:
            if predict is not None:
                r = predict(b["image"].to(device))
                if isinstance(r, dict):
                    p2, p3 = r["kp2d"], r.get("kp3d")
                elif isinstance(r, (tuple, list)):
                    p2, p3 = r[0], (r[1] if len(r) > 1 else None)
                else:
                    p2, p3 = r, None
                out["pred_2d"].append(p2.detach().float().cpu().numpy())
                if p3 is not None:
                    out["pred_3d"].append(p3.detach().float().cpu().numpy())
            out["gt_2d"].append(b["landmarks_2d"].numpy())
            out["gt_3d"].append(b["landmarks_3d"].numpy())
            out["visible"].append(b["visible"].numpy())
            out["yaw_deg"].append(b["yaw_deg"].numpy())
    return {k: (np.concatenate(v) if v else None) for k, v in out.items()}


def evaluate_on_spec(predict, spec: str, image_size: int, *, seed: int = 0, regress_length=None,
                     test_length=None, batch_size: int = 64, device="cpu", num_workers: int = 0) -> dict:
    """Build the ``regress`` and ``test`` splits of ``spec``, run ``predict`` (see ``collect``)
    and return ``evaluate_keypoints``'s metrics, plus the dataset name and landmark names.
    3D metrics are computed when the predictor returns 3D keypoints and the dataset has 3D
    ground truth; yaw bins when the test split carries yaw (synthetic faces, AFLW2000-3D)."""
    from kp3d.data import build_dataset

    ds_r = build_dataset(spec, "regress", image_size, seed=seed, length=regress_length)
    ds_t = build_dataset(spec, "test", image_size, seed=seed, length=test_length)
    r = collect(ds_r, predict, batch_size=batch_size, device=device, num_workers=num_workers)
    t = collect(ds_t, predict, batch_size=batch_size, device=device, num_workers=num_workers)
    kw = {}
    use3d = (ds_t.info.has_3d and r["pred_3d"] is not None and t["pred_3d"] is not None
             and np.isfinite(t["gt_3d"]).any())
    if use3d:
        kw.update(pred_train_3d=r["pred_3d"], gt_train_3d=r["gt_3d"], pred_test_3d=t["pred_3d"], gt_test_3d=t["gt_3d"])
    if np.isfinite(t["yaw_deg"]).all():
        kw["yaw_test_deg"] = t["yaw_deg"]
    m = evaluate_keypoints(r["pred_2d"], r["gt_2d"], t["pred_2d"], t["gt_2d"], eye_indices=ds_t.info.eye_indices,
                           landmark_names=ds_t.info.landmark_names, **kw)
    m["dataset"] = spec
    m["image_size"] = int(image_size)
    return m

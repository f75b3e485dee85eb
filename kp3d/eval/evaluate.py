"""Run a trained model over a dataset and score it: the evaluation `kp3d eval`, `kp3d train
--eval` and the demo share.

    from kp3d.eval.evaluate import evaluate_model
    metrics, predictions = evaluate_model(model, "synthetic:face", split="val")
"""

import numpy as np
import torch

from ..data import build_dataset
from .metrics import evaluate_keypoints, structure_yaw_correlation


@torch.no_grad()
def predict_dataset(model, dataset, *, batch_size: int = 64, device="cpu",
                    num_workers: int = 0) -> dict:
    """Run the model over a dataset. Returns numpy arrays: keypoints_2d (N, K, 2) and, with the
    3D branch, keypoints_3d and fitted_3d (N, K, 3) (kp3d frame, [-1, 1];
    see `predict`); and the dataset's landmarks_2d, landmarks_3d, visible, yaw_deg, index."""
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers)
    acc = {}
    for batch in loader:
        pred = model.predict(batch["image"].to(device))
        items = {k: pred[k] for k in ("keypoints_2d", "keypoints_3d", "fitted_3d")
                 if k in pred}
        for key in ("landmarks_2d", "landmarks_3d", "visible", "yaw_deg", "index"):
            if key in batch:
                items[key] = batch[key]
        for k, v in items.items():
            acc.setdefault(k, []).append(torch.as_tensor(v).cpu())
    model.train(was_training)
    return {k: torch.cat(v).numpy() for k, v in acc.items()}


def evaluate_model(model, spec, *, split="test", image_size=None, device="cpu", batch_size=64,
                   seed=0, regress_length=None, test_length=None):
    """Fit the evaluation regressors on the "regress" split of a dataset and score the model on
    `split` ("test" for published figures, "val" to choose settings), with the metrics of
    `kp3d.eval.evaluate_keypoints` and the structure's yaw correlation. Returns
    (metrics, {"regress": predictions, "test": predictions on `split`}).

    A model without the 3D branch (mode "autolink") is scored in 3D with its flat (z = 0) lift,
    so its nme_3d equals the flat baseline; metrics["structure_3d"] says which case it is."""
    if split not in ("val", "test"):
        raise ValueError(f"evaluation split must be val or test, got {split!r}")
    model = getattr(model, "module", model)  # a DistributedDataParallel wrapper
    size = image_size or model.config.image_size
    ds_r = build_dataset(spec, "regress", size, seed=seed, length=regress_length)
    ds_t = build_dataset(spec, split, size, seed=seed, length=test_length)
    pr = predict_dataset(model, ds_r, batch_size=batch_size, device=device)
    pt = predict_dataset(model, ds_t, batch_size=batch_size, device=device)
    kwargs = {}
    if getattr(ds_t.info, "has_3d", False):
        def lift(p):
            if "keypoints_3d" in p:
                return p["keypoints_3d"]
            return np.concatenate([p["keypoints_2d"], np.zeros_like(p["keypoints_2d"][..., :1])], -1)
        kwargs = {"pred_train_3d": lift(pr), "gt_train_3d": pr["landmarks_3d"],
                  "pred_test_3d": lift(pt), "gt_test_3d": pt["landmarks_3d"]}
    metrics = evaluate_keypoints(pr["keypoints_2d"], pr["landmarks_2d"], pt["keypoints_2d"],
                                 pt["landmarks_2d"], eye_indices=ds_t.info.eye_indices,
                                 yaw_test_deg=pt.get("yaw_deg"),
                                 landmark_names=ds_t.info.landmark_names, **kwargs)
    if "fitted_3d" in pt and "yaw_deg" in pt:
        metrics["structure_yaw_corr"] = structure_yaw_correlation(pt["fitted_3d"], pt["yaw_deg"])
    metrics.update({"structure_3d": bool(model.has_3d), "data": spec, "split": split,
                    "num_keypoints": model.config.num_keypoints,
                    "num_points": int(pt["keypoints_2d"].shape[1])})
    return metrics, {"regress": pr, "test": pt}


__all__ = ["evaluate_model", "predict_dataset"]

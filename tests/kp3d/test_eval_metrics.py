"""Evaluation: known answers for the regression, the NMEs and the baselines."""

import numpy as np
import pytest
import torch

from kp3d.data import build_dataset
from kp3d.eval import evaluate_keypoints, fit_bias_free, format_metrics


def _faces(n, L=6, seed=0, depth=True):
    rng = np.random.default_rng(seed)
    base = rng.uniform(10, 50, (L, 3))
    g = base + rng.normal(0, 3, (n, L, 3))
    g[:, :, 2] = rng.normal(0, 5, (n, L)) if depth else 0
    return g


def test_perfect_predictions_give_zero():
    gtr, gte = _faces(40, seed=1), _faces(20, seed=2)
    to_kp = lambda g: g / 63.0 * 2 - 1  # noqa: E731  (pixels of a 64 image -> kp3d frame)
    m = evaluate_keypoints(to_kp(gtr[..., :2]), gtr[..., :2], to_kp(gte[..., :2]), gte[..., :2], eye_indices=(0, 1),
                           pred_train_3d=to_kp(gtr), gt_train_3d=gtr, pred_test_3d=to_kp(gte), gt_test_3d=gte,
                           yaw_test_deg=np.linspace(-80, 80, 20))
    for k in ("nme_2d", "nme_2d_box", "nme_3d", "nme_3d_reflect", "nme_2d_yaw_mean", "nme_3d_yaw_mean"):
        assert m[k] == pytest.approx(0.0, abs=1e-9), k
    assert m["nme_2d_mean_baseline"] > 0.05 and m["nme_3d_flat_baseline"] > 0.01
    assert len(m["per_landmark_2d"]) == 6 and max(m["per_landmark_2d"]) < 1e-9
    assert "3D NME" in format_metrics(m)
    import json

    json.dumps(m, allow_nan=False)  # metrics.json material: plain JSON types, no NaN


def test_linear_map_of_ground_truth_gives_zero_after_regression():
    rng = np.random.default_rng(0)
    gtr, gte = _faces(60, L=5, seed=3), _faces(25, L=5, seed=4)
    K = 8
    A2 = rng.normal(size=(10, 2 * K))
    A3 = rng.normal(size=(15, 3 * K))
    p2 = lambda g: (g[..., :2].reshape(len(g), -1) @ A2).reshape(len(g), K, 2)  # noqa: E731
    p3 = lambda g: (g.reshape(len(g), -1) @ A3).reshape(len(g), K, 3)  # noqa: E731
    m = evaluate_keypoints(p2(gtr), gtr[..., :2], p2(gte), gte[..., :2], input_frame="raw",
                           pred_train_3d=p3(gtr), gt_train_3d=gtr, pred_test_3d=p3(gte), gt_test_3d=gte)
    assert m["nme_2d"] == pytest.approx(0, abs=1e-8) and m["nme_3d"] == pytest.approx(0, abs=1e-8)
    assert m["nme_2d_norm"] == "box-diagonal"
    # torch inputs work the same
    m2 = evaluate_keypoints(torch.tensor(p2(gtr)), torch.tensor(gtr[..., :2]), torch.tensor(p2(gte)),
                            torch.tensor(gte[..., :2]), input_frame="raw")
    assert m2["nme_2d"] == pytest.approx(0, abs=1e-8)


def test_hand_computed_example():
    # regression split: symmetric perturbations of a base shape, predictions = landmarks -> W = I
    base = np.array([[1.0, 1.0], [11.0, 2.0]])
    d = np.array([[[1, 0], [0, 2]], [[0, 1], [3, 0]], [[2, 1], [1, -1]]], float)
    gtr = np.concatenate([base + d, base - d])  # mean is exactly `base`
    gte = np.array([[[0.0, 0.0], [10.0, 0.0]]])  # inter-ocular distance 10
    pte = np.array([[[1.0, 0.0], [10.0, 2.0]]])  # errors 1 and 2
    m = evaluate_keypoints(gtr, gtr, pte, gte, eye_indices=(0, 1), input_frame="raw")
    assert m["nme_2d"] == pytest.approx((1 / 10 + 2 / 10) / 2)
    assert m["per_landmark_2d"] == pytest.approx([0.1, 0.2])
    # mean baseline predicts (1, 1) and (11, 2): errors sqrt(2), sqrt(5)
    assert m["nme_2d_mean_baseline"] == pytest.approx((np.sqrt(2) + np.sqrt(5)) / 2 / 10)
    # box normalisations: the test box is 10 x 0 -> diagonal 10; sqrt(w h) = 0 -> image left out
    m = evaluate_keypoints(gtr, gtr, pte, gte, input_frame="raw")
    assert m["nme_2d"] == pytest.approx(0.15) and m["nme_2d_norm"] == "box-diagonal"
    assert m["nme_2d_box"] is None  # not computable: None (JSON has no NaN)
    import json

    json.dumps(m, allow_nan=False)


def test_hand_computed_3d_and_reflection():
    gtr = _faces(30, L=4, seed=6)
    gte = np.array([[[0, 0, 1], [4, 0, -1], [0, 1, 0], [4, 1, 0]]], float)  # box 4 x 1 -> sqrt(wh) = 2
    # predictions: the test prediction is the depth mirror of the truth
    pte = gte.copy()
    pte[:, :, 2] *= -1
    m = evaluate_keypoints(gtr[..., :2], gtr[..., :2], pte[..., :2], gte[..., :2], input_frame="raw",
                           pred_train_3d=gtr, gt_train_3d=gtr, pred_test_3d=pte, gt_test_3d=gte)
    # plain: errors 2, 2, 0, 0 over a norm of 2 -> mean 0.5; up to reflection: 0
    assert m["nme_3d"] == pytest.approx(0.5, abs=1e-9)
    assert m["nme_3d_reflect"] == pytest.approx(0.0, abs=1e-9)
    # a per-image depth offset of the ground truth changes nothing (depth is compared zero-mean)
    off = gte.copy()
    off[:, :, 2] += 100
    m2 = evaluate_keypoints(gtr[..., :2], gtr[..., :2], pte[..., :2], off[..., :2], input_frame="raw",
                            pred_train_3d=gtr, gt_train_3d=gtr, pred_test_3d=pte, gt_test_3d=off)
    assert m2["nme_3d"] == pytest.approx(0.5, abs=1e-9)


def test_reflection_tolerant_fit_handles_mirrored_training_images():
    gtr, gte = _faces(80, L=6, seed=7), _faces(30, L=6, seed=8)
    ptr = gtr.copy()
    ptr[::2, :, 2] = -(ptr[::2, :, 2] - ptr[::2, :, 2].mean(1, keepdims=True))  # half the images mirrored
    pte = gte.copy()
    pte[1::3, :, 2] *= -1
    m = evaluate_keypoints(gtr[..., :2], gtr[..., :2], gte[..., :2], gte[..., :2], input_frame="raw",
                           pred_train_3d=ptr, gt_train_3d=gtr, pred_test_3d=pte, gt_test_3d=gte)
    assert m["nme_3d_reflect"] < 1e-6 < m["nme_3d"]


def test_yaw_bins_and_nan_landmarks():
    gtr, gte = _faces(40, seed=9), _faces(6, seed=10)
    gtr[3, 2] = np.nan
    gte[0, 5] = np.nan
    yaw = np.array([5, -20, 45, -59, 70, -95.0])
    ptr = np.nan_to_num(gtr[..., :2])
    pte = np.nan_to_num(gte[..., :2])
    pte[4] += 1.0  # only the 60-90 bin has an error
    m = evaluate_keypoints(ptr, gtr[..., :2], pte, gte[..., :2], yaw_test_deg=yaw, input_frame="raw")
    b = m["yaw_bins"]
    assert b["count"] == [2, 2, 2]
    assert b["nme_2d"][0] == pytest.approx(0, abs=1e-6) and b["nme_2d"][1] == pytest.approx(0, abs=1e-6)
    assert b["nme_2d"][2] > 0
    assert m["nme_2d_yaw_mean"] == pytest.approx(b["nme_2d"][2] / 3, rel=1e-6)
    # unknown yaw (NaN, as datasets without pose report it): no bins, no error
    m = evaluate_keypoints(ptr, gtr[..., :2], pte, gte[..., :2], yaw_test_deg=np.full(6, np.nan), input_frame="raw")
    assert "yaw_bins" not in m


def test_fit_bias_free_with_missing_targets():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    W = rng.normal(size=(4, 3))
    Y = X @ W
    Y[::4, 1] = np.nan
    np.testing.assert_allclose(fit_bias_free(X, Y), W, atol=1e-10)


def test_input_validation():
    g = _faces(5)[..., :2]
    with pytest.raises(ValueError, match="pred_test_2d"):
        evaluate_keypoints(g, g, g[:, :, :1], g)
    with pytest.raises(ValueError, match="images"):
        evaluate_keypoints(g, g[:3], g, g)
    bad = g.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_keypoints(bad, g, g, g)
    with pytest.raises(ValueError, match="3D"):
        evaluate_keypoints(g, g, g, g, pred_train_3d=_faces(5))
    with pytest.raises(ValueError, match="eye_indices"):
        evaluate_keypoints(g, g, g, g, eye_indices=(0, 99))


def test_synthetic_round_trip():
    """Ground-truth landmarks of the synthetic data, used as 'discovered' keypoints, score 0; the
    baselines do not."""
    def grab(split, n):
        ds = build_dataset("synthetic:face", split, 32, length=n)
        items = [ds[i] for i in range(n)]
        return (torch.stack([x["landmarks_2d"] for x in items]).numpy(),
                torch.stack([x["landmarks_3d"] for x in items]).numpy(), np.array([float(x["yaw_deg"]) for x in items]))

    a2, a3, _ = grab("regress", 90)  # more images than the 3K = 72 inputs
    b2, b3, yaw = grab("test", 20)
    f = lambda p: p / 15.5 - 1  # noqa: E731
    m = evaluate_keypoints(f(a2), a2, f(b2), b2, eye_indices=(0, 1), pred_train_3d=f(a3), gt_train_3d=a3,
                           pred_test_3d=f(b3), gt_test_3d=b3, yaw_test_deg=yaw)
    assert m["nme_2d"] < 1e-6 and m["nme_3d"] < 1e-6
    assert m["nme_2d_mean_baseline"] > 0.2 and m["nme_3d_mean_baseline"] > 0.1


def test_evaluate_model_on_a_dataset_spec():
    """evaluate_model runs a model over regress and the chosen split of a dataset spec; a model
    whose keypoints ignore the image is the mean baseline exactly (constant keypoints in the
    [0, 1] regression frame = a constant regressor = the least-squares mean)."""
    from kp3d.eval.evaluate import evaluate_model
    from kp3d.model import KeypointModel, ModelConfig

    class Constant(KeypointModel):
        def predict(self, images):
            return {"keypoints_2d": torch.zeros(len(images), 4, 2)}

    model = Constant(ModelConfig(num_keypoints=4, image_size=16, mode="autolink", mask_grid=4,
                                 detector_widths=(4, 4), decoder_widths=(4, 4)))
    m, preds = evaluate_model(model, "synthetic:car", split="val", regress_length=12,
                              test_length=6, batch_size=5)
    assert m["data"] == "synthetic:car" and m["split"] == "val" and m["num_test"] == 6
    assert m["nme_2d_norm"] == "box-diagonal" and "nme_3d" in m and "yaw_bins" in m
    assert m["nme_2d"] == pytest.approx(m["nme_2d_mean_baseline"], rel=1e-6)
    assert preds["test"]["keypoints_2d"].shape == (6, 4, 2)
    with pytest.raises(ValueError, match="split"):
        evaluate_model(model, "synthetic:car", split="train")


def test_structure_yaw_correlation():
    """A structure turned by the true yaw correlates fully (up to the sign gauge, and to any
    fixed rotation of its frame); a structure that never turns gives None."""
    from kp3d.eval import structure_yaw_correlation
    from kp3d.model.structure3d import axis_angle_to_matrix

    rng = np.random.default_rng(0)
    shape = rng.normal(size=(7, 3))
    yaw = rng.uniform(-30, 30, 50)
    frame = axis_angle_to_matrix(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)).numpy()
    R = axis_angle_to_matrix(torch.tensor(np.stack([0 * yaw, np.radians(-yaw), 0 * yaw], 1))).numpy()
    turned = np.einsum("kd,ned->nke", shape @ frame.T, R) + rng.normal(size=(50, 1, 3))
    assert structure_yaw_correlation(turned, yaw) == pytest.approx(1.0, abs=1e-6)
    assert structure_yaw_correlation(np.repeat(shape[None], 50, 0), yaw) is None
    noise = turned + rng.normal(scale=3.0, size=turned.shape)
    assert structure_yaw_correlation(noise, yaw) < 0.9
    with pytest.raises(ValueError, match="fitted_3d"):
        structure_yaw_correlation(turned[..., :2], yaw)

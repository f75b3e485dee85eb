"""Evaluation of discovered keypoints against annotated landmarks (SPEC section 8).

    from kp3d.eval import evaluate_keypoints, format_metrics
    m = evaluate_keypoints(pred_train_2d, gt_train_2d, pred_test_2d, gt_test_2d, eye_indices=(0, 1))
    print(format_metrics(m))

    # or, with any predictor images (B, 3, S, S) -> keypoints (B, K, 2) [, (B, K, 3)] in [-1, 1]:
    m = evaluate_on_spec(predict, "synthetic:face", image_size=64)
"""

from .metrics import (YAW_BIN_NAMES, box_size, evaluate_keypoints, format_metrics, interocular, nme,
                      structure_yaw_correlation, to_regression_frame)
from .regression import fit_bias_free, fit_reflection_tolerant
from .runner import collect, evaluate_on_spec

__all__ = ["evaluate_keypoints", "evaluate_on_spec", "collect", "format_metrics", "fit_bias_free", "fit_reflection_tolerant", "nme",
           "interocular", "box_size", "structure_yaw_correlation", "to_regression_frame", "YAW_BIN_NAMES"]

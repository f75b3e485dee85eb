"""Evaluation of discovered keypoints against annotated landmarks.

    from kp3d.eval import evaluate_keypoints, format_metrics
    m = evaluate_keypoints(pred_train_2d, gt_train_2d, pred_test_2d, gt_test_2d, eye_indices=(0, 1))
    print(format_metrics(m))

    # a trained model on a dataset spec: kp3d.eval.evaluate.evaluate_model
"""

from .metrics import (YAW_BIN_NAMES, box_size, evaluate_keypoints, format_metrics, interocular, nme,
                      structure_yaw_correlation, to_regression_frame)
from .regression import fit_bias_free, fit_reflection_tolerant

__all__ = ["evaluate_keypoints", "format_metrics", "fit_bias_free", "fit_reflection_tolerant", "nme",
           "interocular", "box_size", "structure_yaw_correlation", "to_regression_frame", "YAW_BIN_NAMES"]

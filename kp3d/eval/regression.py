"""Bias-free linear least-squares regression from discovered keypoints to annotated landmarks."""

from __future__ import annotations

import numpy as np


def fit_bias_free(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Least-squares W minimising ||X W - Y|| (no intercept), solved with ``lstsq`` (no explicit inverse).

    X: (N, D) inputs, Y: (N, T) targets. NaN targets are left out column by column (the columns
    sharing a missing-value pattern are solved together). A column with no data gets W = 0.
    Returns W (D, T).
    """
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise ValueError(f"fit_bias_free: expected X (N, D) and Y (N, T), got {X.shape} and {Y.shape}")
    finite = np.isfinite(Y)
    if finite.all():
        return np.linalg.lstsq(X, Y, rcond=None)[0]
    W = np.zeros((X.shape[1], Y.shape[1]))
    patterns, inverse = np.unique(finite.T, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    for k, rows in enumerate(patterns):
        cols = np.nonzero(inverse == k)[0]
        if rows.any():
            W[:, cols] = np.linalg.lstsq(X[rows], Y[rows][:, cols], rcond=None)[0]
    return W


def fit_reflection_tolerant(X: np.ndarray, Y3: np.ndarray, iters: int = 10):
    """Fit W for 3D targets allowing each training image's depth to be mirrored.

    Y3: (N, L, 3) targets with per-image zero-mean depth. Alternates (a) a bias-free fit to the
    targets with the current signs s_i applied to their z, and (b) for each image the sign that
    the current fit reproduces better; starts from all s_i = +1 (the plain fit), so the training
    residual never increases. Returns (W (D, 3L), signs (N,)).
    """
    X = np.asarray(X, np.float64)
    Y3 = np.asarray(Y3, np.float64)
    N, L, _ = Y3.shape
    s = np.ones(N)
    W = None
    for _ in range(max(1, iters)):
        T = Y3.copy()
        T[:, :, 2] *= s[:, None]
        W = fit_bias_free(X, T.reshape(N, 3 * L))
        P = (X @ W).reshape(N, L, 3)
        mirror = Y3.copy()
        mirror[:, :, 2] *= -1
        e_plus = np.nansum(np.linalg.norm(P - Y3, axis=2) ** 2, axis=1)
        e_minus = np.nansum(np.linalg.norm(P - mirror, axis=2) ** 2, axis=1)
        new = np.where(e_minus < e_plus, -1.0, 1.0)
        if np.array_equal(new, s):
            break
        s = new
    return W, s

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


def _sign_sync(Y3: np.ndarray, input_depth: np.ndarray, iters: int = 50) -> np.ndarray:
    """Spectral guess of per-image depth signs: align the sign-ambiguous products
    v_i = vec(g_i z_i^T) of target depth g_i and input depth z_i (both zero-mean per image) with
    the top principal direction of all v_i (which does not depend on the signs)."""
    g = np.nan_to_num(Y3[:, :, 2] - np.nanmean(Y3[:, :, 2], axis=1, keepdims=True))
    z = input_depth - input_depth.mean(axis=1, keepdims=True)
    V = (g[:, :, None] * z[:, None, :]).reshape(len(g), -1)
    u = V[np.argmax(np.linalg.norm(V, axis=1))].copy()
    for _ in range(iters):  # power iteration on V^T V
        u_new = V.T @ (V @ u)
        n = np.linalg.norm(u_new)
        if n == 0:
            break
        u_new /= n
        if np.allclose(u_new, u, atol=1e-10):
            u = u_new
            break
        u = u_new
    return np.where(V @ u < 0, -1.0, 1.0)


def _alternate(X, Y3, s, iters):
    N, L, _ = Y3.shape
    mirror = Y3.copy()
    mirror[:, :, 2] *= -1
    W, res = None, np.inf
    for _ in range(max(1, iters)):
        T = np.where(s[:, None, None] > 0, Y3, mirror)
        W = fit_bias_free(X, T.reshape(N, 3 * L))
        P = (X @ W).reshape(N, L, 3)
        e_plus = np.nansum(np.sum((P - Y3) ** 2, axis=2), axis=1)
        e_minus = np.nansum(np.sum((P - mirror) ** 2, axis=2), axis=1)
        res = float(np.where(s > 0, e_plus, e_minus).sum())
        new = np.where(e_minus < e_plus, -1.0, 1.0)
        if np.array_equal(new, s):
            break
        s = new
    return W, s, res


def fit_reflection_tolerant(X: np.ndarray, Y3: np.ndarray, input_depth: np.ndarray | None = None, iters: int = 20):
    """Fit W for 3D targets allowing each training image's depth to be mirrored.

    Y3: (N, L, 3) targets with per-image zero-mean depth; X: (N, D) inputs. Minimises
    sum_i ||X_i W - M^{s_i} Y3_i||^2 over W and the signs s_i (M mirrors depth) by alternating a
    bias-free fit and a per-image choice of sign, from two starts: all s_i = +1 (the plain fit,
    so the training residual is never above it) and, when ``input_depth`` (N, K) is given, a
    spectral sign synchronisation of input and target depths. The start with the lower final
    training residual wins. Returns (W (D, 3L), signs (N,)).
    """
    X = np.asarray(X, np.float64)
    Y3 = np.asarray(Y3, np.float64)
    N = len(Y3)
    best = _alternate(X, Y3, np.ones(N), iters)
    if input_depth is not None:
        alt = _alternate(X, Y3, _sign_sync(Y3, np.asarray(input_depth, np.float64)), iters)
        if alt[2] < best[2]:
            best = alt
    return best[0], best[1]

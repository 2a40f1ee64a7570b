"""A small L2-regularised logistic regression (Newton's method) in numpy: used for the axis head
and the combined rule, so fitting needs nothing beyond numpy and is deterministic."""

from __future__ import annotations

import numpy as np


def fit_logreg(X: np.ndarray, y: np.ndarray, *, l2: float = 1.0, balanced: bool = True,
               iters: int = 50) -> tuple[np.ndarray, float]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = X.shape
    if balanced:
        pos = max(1.0, y.sum())
        neg = max(1.0, n - y.sum())
        sw = np.where(y > 0.5, n / (2 * pos), n / (2 * neg))
    else:
        sw = np.ones(n)
    Xb = np.hstack([X, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 1e-6  # the bias is not shrunk
    for _ in range(iters):
        z = Xb @ w
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        g = Xb.T @ (sw * (p - y)) + reg * w
        H = (Xb * (sw * p * (1 - p))[:, None]).T @ Xb + np.diag(reg)
        step = np.linalg.solve(H, g)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w[:-1], float(w[-1])


def auroc(scores, labels) -> float:
    """Area under the ROC curve (ties count half); nan when one class is missing."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def roc_points(scores, labels) -> list[tuple[float, float, float]]:
    """(fpr, tpr, threshold) from the strictest threshold down."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    npos, nneg = max(1, int(y.sum())), max(1, int((~y).sum()))
    pts = [(0.0, 0.0, float("inf"))]
    for t in sorted(set(s.tolist()), reverse=True):
        flag = s >= t
        pts.append((float((flag & ~y).sum() / nneg), float((flag & y).sum() / npos), float(t)))
    return pts


def threshold_at_fpr(scores, labels, max_fpr: float = 0.05) -> tuple[float, float, float]:
    """The lowest threshold whose false-positive rate stays <= max_fpr: (threshold, tpr, fpr)."""
    best = (float("inf"), 0.0, 0.0)
    for fpr, tpr, t in roc_points(scores, labels):
        if fpr <= max_fpr:
            best = (t, tpr, fpr)
    return best

"""Top-N lists and their metrics: pure NumPy, below the models and the evaluation.

The one place for what a ranked list is scored by: the relevance threshold of a rating scale
(:func:`default_relevance_threshold`), the top ``k`` columns of a score matrix with ties broken
by the lower column (:func:`top_k`), and precision, recall, NDCG and MAP from the hits of ranked
lists (:func:`ranking_from_hits`). The protocols that rank items for test users live in
:mod:`dlfm.evaluation.ranking`; a model that calibrates its own ranking on its validation part
(:mod:`dlfm.models.neural`) uses these functions too. Imports nothing of dlfm.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def default_relevance_threshold(scale: tuple[float, float]) -> float:
    """lo + ¾ (hi − lo) of a (lo, hi) rating scale: 4 on 1-5, 3.875 on 0.5-5 (so 4 and up),
    7.75 on 1-10 (8 and up), 0.75 on a binarized 0-1 scale (likes)."""
    lo, hi = float(scale[0]), float(scale[1])
    return lo + 0.75 * (hi - lo)


RANKING_METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map")


def ranking_from_hits(hits: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int],
                      metrics: Sequence[str] = RANKING_METRICS) -> dict[str, float]:
    """Precision, recall, NDCG and MAP at each k, averaged over the users with a relevant item.

    The one implementation behind every ranking metric of dlfm. Row u of ``hits`` says, rank by
    rank, whether user u's r-th recommended item is relevant (``False`` past the end of a list
    shorter than the longest k); ``n_relevant[u]`` = |Rel_u|. For a user with h_r = hits[u, r−1],
    H_k = Σ_{r ≤ k} h_r and m = min(k, |Rel_u|):

        P@k = H_k / k,    R@k = H_k / |Rel_u|,
        NDCG@k = Σ_{r ≤ k} h_r / log2(r+1)  /  Σ_{r ≤ m} 1 / log2(r+1),
        AP@k = Σ_{r ≤ k} h_r · (H_r / r)  /  m.

    Users with |Rel_u| = 0 are left out of every mean (their recall is undefined); all NaN
    when no user is left. ``metrics`` chooses among ``precision``, ``recall``, ``ndcg``, ``map``.
    Returns ``{"ndcg@10": ..., ...}``.
    """
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 2:
        raise ValueError("hits must be a (users × ranks) matrix")
    n_rel = np.asarray(n_relevant, dtype=np.int64).reshape(-1)
    if len(n_rel) != len(hits):
        raise ValueError(f"hits has {len(hits)} rows but n_relevant {len(n_rel)} values")
    unknown = [m for m in metrics if m not in RANKING_METRICS]
    if unknown:
        raise ValueError(f"unknown ranking metric {unknown[0]!r}; known: {', '.join(RANKING_METRICS)}")
    keep = n_rel > 0
    hits, n_rel = hits[keep], n_rel[keep]
    out: dict[str, float] = {}
    for k in ks:
        if k < 1:
            raise ValueError("k must be at least 1")
        if not len(n_rel):
            out.update({f"{m}@{k}": float("nan") for m in metrics})
            continue
        h = np.zeros((len(hits), k), dtype=np.float64)
        width = min(k, hits.shape[1])
        h[:, :width] = hits[:, :width]
        n_hit = h.sum(axis=1)
        m_k = np.minimum(k, n_rel)
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        ideal = np.cumsum(discounts)[m_k - 1]
        per_user = {
            "precision": n_hit / k,
            "recall": n_hit / n_rel,
            "ndcg": (h * discounts).sum(axis=1) / ideal,
            "map": (h * np.cumsum(h, axis=1) / np.arange(1, k + 1)).sum(axis=1) / m_k,
        }
        out.update({f"{m}@{k}": float(np.mean(per_user[m])) for m in metrics})
    return out


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the ``k`` highest scores of each row, best first, ties by the lower column.

    NaN and −∞ mark columns that are not candidates: they come last and are flagged invalid.
    Returns (columns, valid), both of shape (n_rows, min(k, n_columns)).
    """
    scores = np.asarray(scores, dtype=np.float64)
    n, m = scores.shape
    k = min(int(k), m)
    neg = np.where(np.isnan(scores), np.inf, -scores)
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=bool)
    if k < m:
        kth = np.partition(neg, k - 1, axis=1)[:, k - 1:k]
        better = neg < kth
        equal = neg == kth
        need = k - better.sum(axis=1, keepdims=True)
        take = better | (equal & (np.cumsum(equal, axis=1) <= need))
        cols = np.nonzero(take)[1].reshape(n, k)  # increasing column order within each row
    else:
        cols = np.tile(np.arange(m), (n, 1))
    order = np.argsort(np.take_along_axis(neg, cols, axis=1), axis=1, kind="stable")
    cols = np.take_along_axis(cols, order, axis=1)
    valid = np.isfinite(np.take_along_axis(neg, cols, axis=1))
    return cols.astype(np.int64), valid

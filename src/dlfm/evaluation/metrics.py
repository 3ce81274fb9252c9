"""Metrics: pure functions over arrays.

Rating error: :func:`rmse`, :func:`mae`. Ranking: :func:`ranking_from_hits`, the one
implementation (vectorised over users), with per-user views :func:`precision_at_k`,
:func:`recall_at_k`, :func:`ndcg_at_k`, :func:`average_precision_at_k` and the dictionary view
:func:`ranking_metrics`; an item is *relevant* when its held-out rating is at or above a
threshold (:func:`default_relevance_threshold`: 4 on a 1-5 scale). The protocol that ranks
items for test users is :mod:`dlfm.evaluation.ranking`. Probabilistic: :func:`roc_auc`, :func:`log_loss`,
:func:`interval_coverage`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_RELEVANCE_THRESHOLD = 4.0


def default_relevance_threshold(scale: tuple[float, float]) -> float:
    """lo + ¾ (hi − lo) of a (lo, hi) rating scale: 4 on 1-5, 3.875 on 0.5-5 (so 4 and up),
    7.75 on 1-10 (8 and up), 0.75 on a binarized 0-1 scale (likes)."""
    lo, hi = float(scale[0]), float(scale[1])
    return lo + 0.75 * (hi - lo)


def _pair(y_true: Sequence[float], y_pred: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length ({len(t)} vs {len(p)})")
    return t, p


def rmse(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """√(mean (y − ŷ)²); NaN for empty input."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2))) if len(t) else float("nan")


def mae(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """mean |y − ŷ|; NaN for empty input."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p))) if len(t) else float("nan")


def _hits_row(ranked: Sequence[int], relevant: Sequence[int], k: int) -> tuple[np.ndarray, int]:
    if k < 1:
        raise ValueError("k must be at least 1")
    rel = np.unique(np.asarray(relevant))
    return np.isin(np.asarray(ranked)[:k], rel)[None, :], len(rel)


def _one_list(metric: str, ranked: Sequence[int], relevant: Sequence[int], k: int) -> float:
    """``metric``@k of one ranked list by :func:`ranking_from_hits` (a one-row hits matrix)."""
    hits, n_rel = _hits_row(ranked, relevant, k)
    return ranking_from_hits(hits, np.array([n_rel]), [k], (metric,))[f"{metric}@{k}"]


def precision_at_k(ranked: Sequence[int], relevant: Sequence[int], k: int) -> float:
    """P@k = |top-k ∩ relevant| / k (a list shorter than k counts its missing places as misses);
    NaN when nothing is relevant."""
    return _one_list("precision", ranked, relevant, k)


def recall_at_k(ranked: Sequence[int], relevant: Sequence[int], k: int) -> float:
    """R@k = |top-k ∩ relevant| / |relevant|; NaN when nothing is relevant."""
    return _one_list("recall", ranked, relevant, k)


def ndcg_at_k(ranked: Sequence[int], relevant: Sequence[int], k: int) -> float:
    """Binary-gain NDCG@k = Σ_{hits at rank r ≤ k} 1/log2(r+1) / Σ_{r ≤ min(k, |relevant|)} 1/log2(r+1);
    NaN when nothing is relevant."""
    return _one_list("ndcg", ranked, relevant, k)


def average_precision_at_k(ranked: Sequence[int], relevant: Sequence[int], k: int) -> float:
    """AP@k = Σ_{r ≤ k, hit at r} P@r / min(k, |relevant|); NaN when nothing is relevant."""
    return _one_list("map", ranked, relevant, k)


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


def ranking_metrics(rankings: dict[int, Sequence[int]], relevant: dict[int, Sequence[int]], k: int) -> dict[str, float]:
    """Means over users with at least one relevant item (and a ranking) of precision, recall,
    NDCG and MAP @k: :func:`ranking_from_hits` of the users' ranked lists."""
    users = [u for u, rel in relevant.items() if len(rel) and u in rankings]
    hits = np.zeros((len(users), k), dtype=bool)
    n_rel = np.zeros(len(users), dtype=np.int64)
    for row, u in enumerate(users):
        h, n_rel[row] = _hits_row(rankings[u], relevant[u], k)
        hits[row, : h.shape[1]] = h[0]
    return ranking_from_hits(hits, n_rel, [k])


def roc_auc(labels: Sequence[float], scores: Sequence[float]) -> float:
    """Area under the ROC curve (ties count one half), by the rank-sum formula."""
    y, s = _pair(labels, scores)
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: Sequence[float], probabilities: Sequence[float], eps: float = 1e-12) -> float:
    """Mean −[y log p + (1−y) log(1−p)]."""
    y, p = _pair(labels, probabilities)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))) if len(y) else float("nan")


def interval_coverage(y_true: Sequence[float], lower: Sequence[float], upper: Sequence[float]) -> float:
    """Share of values inside their [lower, upper] interval."""
    t, lo = _pair(y_true, lower)
    _, hi = _pair(y_true, upper)
    return float(np.mean((t >= lo) & (t <= hi))) if len(t) else float("nan")

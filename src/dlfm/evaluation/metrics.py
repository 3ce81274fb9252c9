"""Metrics: pure functions over arrays.

Rating error: :func:`rmse`, :func:`mae`. Ranking, per user and averaged by
:func:`ranking_metrics`: :func:`precision_at_k`, :func:`recall_at_k`, :func:`ndcg_at_k`,
:func:`average_precision_at_k`, where an item is *relevant* when its held-out rating is at or
above a threshold (default 4 on a 1-5 scale). Probabilistic: :func:`roc_auc`, :func:`log_loss`,
:func:`interval_coverage`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_RELEVANCE_THRESHOLD = 4.0


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


def precision_at_k(ranked: Sequence[int], relevant: Sequence[int], k: int) -> float:
    """|top-k ∩ relevant| / k."""
    if k < 1:
        raise ValueError("k must be at least 1")
    hits = np.isin(np.asarray(ranked)[:k], np.asarray(relevant))
    return float(hits.sum()) / k


def recall_at_k(ranked: Sequence[int], relevant: Sequence[int], k: int) -> float:
    """|top-k ∩ relevant| / |relevant|; NaN when nothing is relevant."""
    rel = np.asarray(relevant)
    if len(rel) == 0:
        return float("nan")
    return float(np.isin(np.asarray(ranked)[:k], rel).sum()) / len(rel)


def ndcg_at_k(ranked: Sequence[int], relevant: Sequence[int], k: int) -> float:
    """Binary-gain NDCG: Σ_{hits at rank r ≤ k} 1/log2(r+1), divided by the ideal value."""
    rel = np.asarray(relevant)
    if len(rel) == 0:
        return float("nan")
    hits = np.isin(np.asarray(ranked)[:k], rel)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = discounts[: min(k, len(rel))].sum()
    return float((hits * discounts[: len(hits)]).sum() / ideal)


def average_precision_at_k(ranked: Sequence[int], relevant: Sequence[int], k: int) -> float:
    """AP@k = Σ_{r ≤ k, hit at r} precision@r / min(k, |relevant|)."""
    rel = np.asarray(relevant)
    if len(rel) == 0:
        return float("nan")
    hits = np.isin(np.asarray(ranked)[:k], rel)
    if not hits.any():
        return 0.0
    precisions = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precisions * hits).sum() / min(k, len(rel)))


def ranking_metrics(rankings: dict[int, Sequence[int]], relevant: dict[int, Sequence[int]], k: int) -> dict[str, float]:
    """Means over users with at least one relevant item of precision, recall, NDCG and MAP @k."""
    users = [u for u, rel in relevant.items() if len(rel) and u in rankings]
    if not users:
        return {f"precision@{k}": float("nan"), f"recall@{k}": float("nan"), f"ndcg@{k}": float("nan"),
                f"map@{k}": float("nan")}
    return {
        f"precision@{k}": float(np.mean([precision_at_k(rankings[u], relevant[u], k) for u in users])),
        f"recall@{k}": float(np.mean([recall_at_k(rankings[u], relevant[u], k) for u in users])),
        f"ndcg@{k}": float(np.mean([ndcg_at_k(rankings[u], relevant[u], k) for u in users])),
        f"map@{k}": float(np.mean([average_precision_at_k(rankings[u], relevant[u], k) for u in users])),
    }


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

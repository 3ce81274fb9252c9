"""Top-N lists and their metrics: pure NumPy, below the models and the evaluation.

The one place for what a ranked list is scored by: the relevance threshold of a rating scale
(:func:`default_relevance_threshold`), the top ``k`` columns of a score matrix with ties broken
by the lower column (:func:`top_k`), and precision, recall, NDCG and MAP from the hits of ranked
lists (:func:`ranking_from_hits`), and the scoring of ranked rows (:func:`rank_rows`, by a
:class:`RankingSpec`). The protocols that rank items for test users live in
:mod:`dlfm.evaluation.ranking`; a model that calibrates its own ranking on its validation part
(:mod:`dlfm.models.neural`) uses these functions too. Imports nothing of dlfm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp


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


#: scores of a chunk of users (row indices) against the candidates, shape (len(rows), n_candidates)
RowScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RankingSpec:
    """Which ranking metrics to compute: ``metrics`` at every k of ``ks``, relevant = rating ≥
    ``threshold`` (``None``: the scale's default)."""

    ks: tuple[int, ...] = (10,)
    metrics: tuple[str, ...] = RANKING_METRICS
    threshold: float | None = None
    #: exactly the ``metric@k`` names asked for (all of ``metrics`` × ``ks`` when empty)
    names: tuple[str, ...] = field(default=())

    def threshold_for(self, scale: tuple[float, float]) -> float:
        return default_relevance_threshold(scale) if self.threshold is None else float(self.threshold)

    def select(self, values: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in values.items() if not self.names or k in self.names}


def pattern(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """The 0/1 incidence matrix of (user, item) pairs (values never matter: a 0 rating counts)."""
    return sp.csr_matrix((np.ones(len(users), dtype=np.int8), (users, items)), shape=shape)


def rank_rows(score_rows: RowScorer, rows: np.ndarray, candidates: np.ndarray, seen: sp.csr_matrix,
              relevant: sp.csr_matrix, spec: RankingSpec, *, chunk_pairs: int = 2 ** 21) -> dict[str, float]:
    """The ranking metrics of ``rows`` (users): each row's candidates minus its ``seen`` entries,
    scored by ``score_rows``, against its ``relevant`` entries (both sparse, rows × items).

    Adds ``n_rank_users``: how many rows had a relevant candidate (the others are left out)."""
    rows = np.asarray(rows, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    seen_c = seen[:, candidates].tocsr()
    rel_c = relevant[:, candidates].tocsr()
    rel_c = rel_c - rel_c.multiply(seen_c)  # a relevant item the user rated in training is no candidate
    rel_c.eliminate_zeros()
    n_rel_all = np.asarray((rel_c[rows] != 0).sum(axis=1)).ravel()
    rows = rows[n_rel_all > 0]
    n_rel = n_rel_all[n_rel_all > 0]
    k_max = max(spec.ks)
    hits = np.zeros((len(rows), min(k_max, len(candidates))), dtype=bool)
    step = max(1, chunk_pairs // max(1, len(candidates)))
    for start in range(0, len(rows), step):
        part = rows[start:start + step]
        scores = np.array(score_rows(part, candidates), dtype=np.float64).reshape(len(part), len(candidates))
        scores[seen_c[part].toarray() != 0] = -np.inf
        cols, valid = top_k(scores, k_max)
        rel_dense = rel_c[part].toarray() != 0
        hits[start:start + len(part)] = np.take_along_axis(rel_dense, cols, axis=1) & valid
    out = spec.select(ranking_from_hits(hits, n_rel, spec.ks, spec.metrics))
    out["n_rank_users"] = int(len(rows))
    return out

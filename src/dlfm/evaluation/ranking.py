"""Top-N evaluation: rank every candidate item for every test user, score the top of the list.

Protocol (the one of the literature, e.g. Cremonesi et al. 2010 "all unrated items"):

- candidates of user u: every item with at least one training rating that u did not rate in
  training (items no model has seen are never recommended, as in :meth:`Recommender.recommend`);
- relevant items of u: u's test items rated at or above the relevance threshold τ
  (:func:`~dlfm.evaluation.metrics.default_relevance_threshold`: τ = 4 on a 1-5 scale,
  lo + ¾ (hi − lo) on any other), restricted to the candidates;
- each test user with at least one relevant item is ranked by the model's score, highest
  first, ties broken by the lower item index (deterministic); precision, recall, NDCG and MAP
  at each k are averaged over those users (:func:`~dlfm.evaluation.metrics.ranking_from_hits`).

Scores come in chunks of users × all candidates through one vectorised call (for a dlfm model
:meth:`~dlfm.models.base.Recommender.score_indices`), never a Python loop over items.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from dlfm.data.ratings import Ratings
from dlfm.errors import ConfigError
from dlfm.topn import (RANKING_METRICS, RankingSpec, RowScorer, pattern, default_relevance_threshold,  # noqa: F401
                       rank_rows, ranking_from_hits, top_k)

RATING_METRICS: tuple[str, ...] = ("rmse", "mae")
DEFAULT_METRICS = "rmse,mae,precision@10,recall@10,ndcg@10,map@10"

#: scores of (user index, item index) pairs, one float per pair, higher = recommended first
PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]



def comma_tokens(text: str, flag: str, what: str) -> list[str]:
    """The stripped, non-empty comma-separated tokens of an option's ``text`` (``"5, 10,"`` →
    ``["5", "10"]``); a :class:`ConfigError` ``"FLAG names no WHAT"`` when there are none."""
    tokens = [t.strip() for t in str(text).split(",") if t.strip()]
    if not tokens:
        raise ConfigError(f"{flag} names no {what}")
    return tokens


def whole_number(token: str, not_whole: str, too_small: str) -> int:
    """``token`` as an integer of at least 1, else a :class:`ConfigError` with the message
    ``not_whole`` (not an integer) or ``too_small`` (below 1)."""
    try:
        n = int(token)
    except ValueError:
        raise ConfigError(not_whole) from None
    if n < 1:
        raise ConfigError(too_small)
    return n


def parse_metrics(spec: str | None, threshold: float | None = None,
                  flag: str = "--metrics") -> RankingSpec | None:
    """``"rmse,mae,ndcg@10,recall@20"`` → the ranking part (``None`` when only rating metrics).

    RMSE and MAE are always reported (they cost nothing); ``precision@K``, ``recall@K``,
    ``ndcg@K`` and ``map@K`` (K ≥ 1) ask for the top-N protocol. Raises :class:`ConfigError`
    naming ``flag`` for anything else."""
    if threshold is not None and not np.isfinite(threshold):
        raise ConfigError(f"--relevance-threshold must be a finite number, not {threshold}")
    tokens = [t.lower() for t in comma_tokens(DEFAULT_METRICS if spec is None else spec, flag, "metric")]
    names: list[str] = []
    for token in tokens:
        if token in RATING_METRICS:
            continue
        metric, at, k_text = token.partition("@")
        if metric not in RANKING_METRICS or not at:
            raise ConfigError(f"{flag}: unknown metric {token!r}; known: rmse, mae, "
                              + ", ".join(f"{m}@K" for m in RANKING_METRICS))
        k = whole_number(k_text, f"{flag}: {token!r} needs a whole number after @, e.g. {metric}@10",
                         f"{flag}: {token!r}: K must be at least 1")
        if f"{metric}@{k}" not in names:
            names.append(f"{metric}@{k}")
    if not names:
        return None
    ks = tuple(sorted({int(n.split("@")[1]) for n in names}))
    metrics = tuple(m for m in RANKING_METRICS if any(n.startswith(m + "@") for n in names))
    return RankingSpec(ks=ks, metrics=metrics, threshold=threshold, names=tuple(names))


def pair_rows(score: PairScorer) -> RowScorer:
    """A :data:`RowScorer` from a :data:`PairScorer`: all (row, candidate) pairs in one call."""

    def rows_scores(rows: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        users = np.repeat(rows, len(candidates))
        items = np.tile(candidates, len(rows))
        return np.asarray(score(users, items), dtype=np.float64).reshape(len(rows), len(candidates))

    return rows_scores


def evaluate_ranking(score: PairScorer | None, train: Ratings, test: Ratings, spec: RankingSpec, *,
                     candidates: np.ndarray | None = None, chunk_pairs: int = 2 ** 21,
                     score_rows: RowScorer | None = None) -> dict[str, float]:
    """The top-N protocol of this module for a fitted model's ``score`` over (user, item)
    indices of ``train``/``test`` (one vocabulary), or ``score_rows`` (users × candidates at
    once, e.g. a model's :meth:`~dlfm.models.base.Recommender.score_matrix`).

    ``candidates`` defaults to the items with a training rating. Returns the metrics ``spec``
    asks for, and ``n_rank_users``."""
    if candidates is None:
        candidates = np.flatnonzero(train.item_counts > 0)
    shape = (train.n_users, train.n_items)
    threshold = spec.threshold_for(train.scale)
    good = test.ratings >= threshold
    relevant = pattern(test.users[good], test.items[good], shape)
    seen = pattern(train.users, train.items, shape)
    rows = np.unique(test.users[good])
    if score_rows is None:
        if score is None:
            raise ValueError("evaluate_ranking needs score or score_rows")
        score_rows = pair_rows(score)
    return rank_rows(score_rows, rows, candidates, seen, relevant, spec, chunk_pairs=chunk_pairs)

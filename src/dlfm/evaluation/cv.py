"""Cross-validation: fit a model on each fold's training part, score it on the test part.

One record per fold — ``fold, rmse, mae, fit_seconds, predict_seconds, n_test, n_unknown`` plus
whatever the model adds (:meth:`evaluate_extra`, e.g. NLL and interval coverage) — and the
mean and standard deviation of every numeric field over the folds.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import numpy as np

from dlfm.data.ratings import Ratings
from dlfm.data.splits import Fold
from dlfm.evaluation.metrics import mae, rmse
from dlfm.models import create
from dlfm.evaluation.ranking import RankingSpec, evaluate_ranking
from dlfm.models.base import Recommender, versions


def evaluate(model: Recommender, test: Ratings) -> dict[str, float]:
    """Test metrics of a fitted model: RMSE, MAE (or the likelihood's own), and extras."""
    started = time.perf_counter()
    predictions = model.predict_indices(test.users, test.items)
    seconds = time.perf_counter() - started
    record: dict[str, float] = {"rmse": rmse(test.ratings, predictions), "mae": mae(test.ratings, predictions),
                                "predict_seconds": seconds}
    extra = getattr(model, "evaluate_extra", None)
    if extra is not None:
        record.update(extra(test, predictions))
    return record


def rank_and_score(model: Any, train: Ratings, test: Ratings, ranking: RankingSpec) -> dict[str, float]:
    """The top-N metrics of a fitted model (:func:`~dlfm.evaluation.ranking.evaluate_ranking`
    over its :meth:`score_matrix`), plus ``relevance_threshold`` and ``rank_seconds``."""
    started = time.perf_counter()
    out = dict(evaluate_ranking(None, train, test, ranking, score_rows=model.score_matrix))
    out["relevance_threshold"] = ranking.threshold_for(train.scale)
    out["rank_seconds"] = time.perf_counter() - started
    return out


def fit_and_score(model: Any, train: Ratings, test: Ratings, n_unknown: int,
                  ranking: RankingSpec | None = None) -> dict[str, Any]:
    """Fit ``model`` on ``train`` and score it on ``test``: :func:`evaluate`'s metrics, with
    ``ranking`` the top-N metrics of :func:`rank_and_score`, then ``fit_seconds``, ``n_test``,
    ``n_unknown`` and, for models trained in epochs, ``epochs``."""
    started = time.perf_counter()
    model.fit(train)
    fit_seconds = time.perf_counter() - started
    record = dict(evaluate(model, test))
    if ranking is not None:
        record.update(rank_and_score(model, train, test, ranking))
    record.update({"fit_seconds": fit_seconds, "n_test": len(test), "n_unknown": n_unknown})
    if getattr(model, "history_", None):
        record["epochs"] = len(model.history_)
    return record


def summarize(records: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and (population) standard deviation of each numeric field over the folds."""
    keys = [k for k in records[0] if k != "fold" and isinstance(records[0][k], (int, float))]
    mean = {k: float(np.mean([r[k] for r in records if k in r])) for k in keys}
    std = {k: float(np.std([r[k] for r in records if k in r])) for k in keys}
    return mean, std


def cross_validate(
    model_name: str,
    params: dict[str, Any],
    folds: Iterable[Fold],
    *,
    dataset: str = "",
    on_fold: Callable[[dict[str, Any]], None] | None = None,
    transform: Callable[[Ratings], Ratings] | None = None,
    ranking: RankingSpec | None = None,
) -> dict[str, Any]:
    """Run ``model_name`` with ``params`` over ``folds``; returns the ``cv`` JSON document
    (with ``ranking``, also the top-N metrics of every fold)."""
    records = []
    for fold in folds:
        train, test = fold.train, fold.test
        if transform is not None:
            train, test = transform(train), transform(test)
        record = {"fold": fold.name, **fit_and_score(create(model_name, **params), train, test, fold.n_unknown,
                                                             ranking)}
        records.append(record)
        if on_fold is not None:
            on_fold(record)
    mean, std = summarize(records)
    return {"dataset": dataset, "model": model_name, "params": params, "folds": records, "mean": mean,
            "std": std, "versions": versions()}

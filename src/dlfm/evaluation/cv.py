"""Cross-validation: fit a model on each fold's training part, score it on the test part.

One record per fold — ``fold, rmse, mae, fit_seconds, predict_seconds, n_test, n_unknown`` plus
whatever its likelihood adds (:func:`likelihood_metrics`, e.g. NLL and interval coverage) — and the
mean and standard deviation of every numeric field over the folds.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable

import numpy as np
from scipy.stats import norm, poisson

from dlfm.data.ratings import Ratings
from dlfm.data.splits import Fold
from dlfm.evaluation.metrics import interval_coverage, log_loss, mae, rmse, roc_auc
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
    record.update(likelihood_metrics(model, test, predictions))
    return record


def likelihood_metrics(model: Recommender, test: Ratings, predictions: np.ndarray,
                       n_samples: int = 200) -> dict[str, float]:
    """The test metrics of a model's likelihood (``dlf``, ``vdlf``; empty for the others):
    Gaussian NLL of the predictive distribution, N(mean, std²) per rating, and 50%/90%
    interval coverage (q25–q75, q05–q95 of ``n_samples`` keyed draws); Poisson NLL of the
    predicted rate (the prediction, clipped to the training counts' range), −log Poisson(y; λ̂);
    Bernoulli AUC and log-loss."""
    likelihood = getattr(model, "likelihood", None)
    if likelihood is None or not hasattr(model, "distribution_indices"):
        return {}
    if likelihood == "bernoulli":
        return {"auc": roc_auc(test.ratings, predictions), "log_loss": log_loss(test.ratings, predictions)}
    if likelihood == "poisson":
        rate = np.maximum(predictions, 1e-9)
        return {"nll": float(-np.mean(poisson.logpmf(test.ratings, rate)))}
    dist = model.distribution_indices(test.users, test.items, n_samples=n_samples)
    std = np.maximum(dist["std"], 1e-3)
    return {"nll": float(-np.mean(norm.logpdf(test.ratings, loc=dist["mean"], scale=std))),
            "coverage50": interval_coverage(test.ratings, dist["q25"], dist["q75"]),
            "coverage90": interval_coverage(test.ratings, dist["q05"], dist["q95"])}


def rank_and_score(model: Any, train: Ratings, test: Ratings, ranking: RankingSpec) -> dict[str, float]:
    """The top-N metrics of a fitted model (:func:`~dlfm.evaluation.ranking.evaluate_ranking`
    over its :meth:`score_matrix`), plus ``relevance_threshold`` and ``rank_seconds``."""
    started = time.perf_counter()
    out = dict(evaluate_ranking(None, train, test, ranking, score_rows=model.score_matrix))
    out["relevance_threshold"] = ranking.threshold_for(train.scale)
    out["rank_seconds"] = time.perf_counter() - started
    return out


def fit_and_score(model: Any, train: Ratings, test: Ratings, n_unknown: int,
                  ranking: RankingSpec | None = None, rating_transform: str | None = None) -> dict[str, Any]:
    """Fit ``model`` on ``train`` (with ``rating_transform``, e.g. ``"log1p"``, fitted on the
    transformed ratings) and score it on ``test``, in the original scale: :func:`evaluate`'s
    metrics, with ``ranking`` the top-N metrics of :func:`rank_and_score`, then ``fit_seconds``,
    ``n_test``, ``n_unknown`` and, for models trained in epochs, ``epochs``."""
    started = time.perf_counter()
    if rating_transform is None:
        model.fit(train)
    else:
        model.fit(train, transform=rating_transform)
    fit_seconds = time.perf_counter() - started
    record = dict(evaluate(model, test))
    if ranking is not None:
        record.update(rank_and_score(model, train, test, ranking))
    record.update({"fit_seconds": fit_seconds, "n_test": len(test), "n_unknown": n_unknown})
    if getattr(model, "history_", None):
        record["epochs"] = len(model.history_)
    return record


def summarize(records: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """Mean and (population) standard deviation over the folds of every numeric field, and
    for the fields some fold lacks, the number of folds they were computed on.

    One rule, used by ``cv`` and ``benchmark`` alike: a fold whose value is not finite (e.g.
    the AUC of a fold with one class) is left out of that field's mean and std (NaN when no
    fold has a finite value), and the third dictionary says how many folds remained.
    """
    numeric = [{k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                and k != "fold"} for r in records]
    keys: list[str] = []
    for r in numeric:
        keys += [k for k in r if k not in keys]
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    counted: dict[str, int] = {}
    for key in keys:
        values = [r[key] for r in numeric if key in r and math.isfinite(r[key])]
        mean[key] = float(np.mean(values)) if values else math.nan
        std[key] = float(np.std(values)) if values else math.nan
        if len(values) < len(records):
            counted[key] = len(values)
    return mean, std, counted


def cross_validate(
    model_name: str,
    params: dict[str, Any],
    folds: Iterable[Fold],
    *,
    dataset: str = "",
    seed: int | None = None,
    tune_trials: int = 0,
    tune_timeout: float | None = None,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    transform: Callable[[Ratings], Ratings] | None = None,
    ranking: RankingSpec | None = None,
    rating_transform: str | None = None,
) -> dict[str, Any]:
    """Run ``model_name`` with ``params`` over ``folds``; returns the ``cv`` JSON document.

    The document records what reproduces it: the full effective parameters (defaults
    included), the seed, the folds' names and the versions. With ``tune_trials > 0`` the
    search of :func:`dlfm.evaluation.tuning.tune` runs *inside* each fold (nested: fold k's
    search sees fold k's training part only) over the parameters not given in ``params``,
    the model is refitted on the whole training part with the best ones, and each fold's
    record carries its chosen parameters (``tuned``) and search summary.
    With ``ranking``, every fold also gets the top-N metrics. ``transform`` maps each fold's
    ratings before anything (e.g. binarizing); ``rating_transform`` (``"log1p"``) is the models'
    fitted transform (:meth:`~dlfm.models.base.Recommender.fit`), scored in the original scale.
    """
    records = []
    effective: dict[str, Any] | None = None
    for fold in folds:
        train, test = fold.train, fold.test
        if transform is not None:
            train, test = transform(train), transform(test)
        fold_params = dict(params)
        search = None
        if tune_trials > 0:
            from dlfm.evaluation.tuning import tune

            search = tune(model_name, train, fixed=params, trials=tune_trials, timeout=tune_timeout,
                          seed=0 if seed is None else seed, on_trial=on_trial)
            fold_params = dict(search["best_params"])
        model = create(model_name, **fold_params)
        record = {"fold": fold.name, **fit_and_score(model, train, test, fold.n_unknown, ranking, rating_transform)}
        if search is not None:
            record["tuned"] = {k: v for k, v in fold_params.items() if k not in params}
            record["tuning"] = {k: search[k] for k in ("metric", "best_value", "best_trial", "n_trials", "n_pruned",
                                                         "n_fit", "n_validation", "seconds")}
        else:
            effective = model.get_params()
        records.append(record)
        if on_fold is not None:
            on_fold(record)
    mean, std, counted = summarize(records)
    out = {"dataset": dataset, "model": model_name,
           "params": effective if effective is not None else dict(params),
           "given_params": dict(params), "seed": seed, "fold_names": [r["fold"] for r in records],
           "folds": records, "mean": mean, "std": std, "versions": versions()}
    if counted:
        out["folds_counted"] = counted  # fields left out of the mean on some fold (not finite)
    if tune_trials > 0:
        out["tuning"] = {"trials": tune_trials, "timeout": tune_timeout, "protocol": "nested: each fold's search "
                         "uses a validation part of that fold's training ratings only"}
    return out

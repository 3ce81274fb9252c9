"""Hyper-parameter search on a validation part carved from the data it is given (``dlfm tune``).

Protocol. The ratings handed in (for ``dlfm cv --tune``: one fold's training part, never its
test part) are split once, seeded, into a fitting part and a validation part
(``validation_ratio``, 10% by default). Each trial fits the model on the fitting part with the
trial's parameters — a neural model early-stops on the same validation part — and is scored by
the validation RMSE (for a Poisson or Bernoulli likelihood, the validation NLL). The search is
Optuna's TPE sampler, seeded, over the model's declared ``search_space``
(:mod:`dlfm.models.space`, next to each model); trials of neural models report their
per-epoch validation RMSE, and a median pruner stops the ones that trail the median of earlier
trials at the same epoch. The best parameters are returned; the caller refits on all of the
data it tuned on.

Nothing here ever sees a rating outside ``data``: nested inside cross-validation, fold k's
search reads uk.base only.
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any, Callable

import numpy as np

from dlfm.data.ratings import Ratings
from dlfm.data.splits import validation_split
from dlfm.errors import ConfigError
from dlfm.evaluation.metrics import rmse
from dlfm.models import create, model_class
from dlfm.models.space import Choice, Distribution, LogUniform, Uniform


def _suggest(trial: Any, name: str, dist: Distribution) -> Any:
    if isinstance(dist, LogUniform):
        return trial.suggest_float(name, dist.low, dist.high, log=True)
    if isinstance(dist, Uniform):
        return trial.suggest_float(name, dist.low, dist.high)
    if isinstance(dist, Choice):
        return trial.suggest_categorical(name, list(dist.values))
    raise TypeError(f"unknown distribution {dist!r} for {name}")


def _score(model: Any, validation: Ratings) -> tuple[str, float]:
    """The tuning objective on the validation part: RMSE, or the NLL of a non-Gaussian model."""
    if getattr(model, "likelihood", "gaussian") == "gaussian":
        return "val_rmse", rmse(validation.ratings, model.predict_indices(validation.users, validation.items))
    return "val_nll", model._validation_metrics(validation)["val_nll"]


def tune(model_name: str, data: Ratings, *, fixed: dict[str, Any] | None = None, trials: int = 20,
         timeout: float | None = None, seed: int = 0, validation_ratio: float = 0.1,
         on_trial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Search ``model_name``'s ``search_space`` on a validation part of ``data``.

    Args:
        fixed: parameters held fixed (they are removed from the space).
        trials, timeout: stop after this many trials or seconds, whichever comes first.
        seed: seeds the split and the sampler (and every trial's model, unless fixed).
        on_trial: called with each finished trial's record.

    Returns:
        ``best_params`` (the full parameters of the best trial, ``fixed`` included),
        ``best_value``, ``metric``, ``trials`` (one record each), sizes and seconds.
    """
    try:
        import optuna
    except ImportError:  # pragma: no cover - a dependency
        raise ConfigError("tuning needs Optuna: pip install optuna") from None
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, not {trials}")
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
        raise ConfigError(f"--timeout must be a positive number of seconds, not {timeout}")
    cls = model_class(model_name)
    fixed = cls.canonical_params(dict(fixed or {}))  # a deprecated name must hold its new one out of the space
    space = {k: v for k, v in cls.search_space.items() if k not in fixed}
    if not space:
        raise ConfigError(f"model {model_name!r} has nothing to tune")
    if len(data) < 20:
        raise ConfigError(f"tuning needs at least 20 ratings, not {len(data)}")
    names = set(cls.param_names())
    if "seed" in names:
        fixed.setdefault("seed", seed)
    fit_part, validation = validation_split(data, validation_ratio, seed=seed)
    records: list[dict[str, Any]] = []
    metric_name = ["val_rmse"]

    def objective(trial: Any) -> float:
        params = {**fixed, **{k: _suggest(trial, k, d) for k, d in space.items()}}
        model = create(model_name, **params)
        started = time.perf_counter()
        record: dict[str, Any] = {"number": trial.number, "params": {k: params[k] for k in space}}
        try:
            if "on_epoch" in inspect.signature(model.fit).parameters:
                def report(epoch_record: dict[str, float]) -> None:
                    value = epoch_record.get("val_rmse", epoch_record.get("val_nll"))
                    if value is None or not math.isfinite(value):
                        return
                    trial.report(value, epoch_record["epoch"])
                    if trial.should_prune():
                        raise optuna.TrialPruned()

                model.fit(fit_part, validation=validation, on_epoch=report)
            else:
                model.fit(fit_part, validation=validation)
        except optuna.TrialPruned:
            record.update({"state": "pruned", "seconds": time.perf_counter() - started})
            records.append(record)
            if on_trial is not None:
                on_trial(record)
            raise
        name, value = _score(model, validation)
        metric_name[0] = name
        record.update({"state": "complete", "value": value, "seconds": time.perf_counter() - started})
        if getattr(model, "history_", None):
            record["epochs"] = len(model.history_)
        records.append(record)
        if on_trial is not None:
            on_trial(record)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, min(10, trials // 2))),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=5),
    )
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials, timeout=timeout, catch=())
    completed = [r for r in records if r["state"] == "complete"]
    if not completed:
        raise ConfigError("no tuning trial completed (raise --trials or --timeout)")
    best = min(completed, key=lambda r: r["value"])
    return {
        "model": model_name, "metric": metric_name[0], "best_value": best["value"],
        "best_trial": best["number"], "best_params": {**fixed, **best["params"]},
        "search_space": {k: repr(v) for k, v in space.items()}, "trials": records,
        "n_trials": len(records), "n_pruned": sum(r["state"] == "pruned" for r in records),
        "n_fit": len(fit_part), "n_validation": len(validation), "validation_ratio": validation_ratio,
        "seed": seed, "seconds": time.perf_counter() - started, "n_ratings": int(np.int64(len(data))),
    }

"""Every model of dlfm behind one interface (:class:`~dlfm.models.base.Recommender`).

Owns: the model classes and their registry (:data:`MODELS`, :func:`register`,
:func:`model_class`, :func:`create`), the base class's contract (fitting, prediction, the
fallback for unknown ids, top-N, save/load, renamed hyper-parameters), the hyper-parameter
declarations and their ``--param`` parsing (:mod:`dlfm.models.params`) and the tuning spaces
(:mod:`dlfm.models.space`, free of Optuna).

Must not import: :mod:`dlfm.evaluation` (which imports the models: scoring a model is its
job, not a model's), :mod:`dlfm.cli`, :mod:`dlfm.serving`, :mod:`dlfm.plots`. May import
:mod:`dlfm.data`, :mod:`dlfm.nn`, :mod:`dlfm.training`, :mod:`dlfm.errors` and (lazily, to
save and load) :mod:`dlfm.persistence`. Importing this package imports NumPy and SciPy but not
PyTorch: the neural models (``dlf``, ``vdlf``) register themselves on first lookup by name.
(Today ``models/neural.py`` still imports ``roc_auc``, ``log_loss`` and ``interval_coverage``
from :mod:`dlfm.evaluation.metrics`, to be moved below the models.)
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

from dlfm.errors import ConfigError
from dlfm.models.base import Recommender
from dlfm.models.baselines import BaselineModel, GlobalMean, PopularItems
from dlfm.models.mf import PMF, MatrixFactorization
from dlfm.models.params import parse_pairs

MODELS: dict[str, type[Recommender]] = {cls.name: cls for cls in (GlobalMean, BaselineModel, PopularItems,
                                                                      MatrixFactorization, PMF)}


def register(cls: type[Recommender]) -> type[Recommender]:
    MODELS[cls.name] = cls
    return cls


def parse_params(name: str, pairs: Iterable[str]) -> dict[str, Any]:
    """``["n_factors=50", "reg=0.1"]`` → typed, checked keyword arguments for model ``name``,
    by the model's declared hyper-parameters (:mod:`dlfm.models.params`, read by
    :func:`~dlfm.models.params.parse_pairs`); every error names the parameter and points at
    ``dlfm params NAME``. A deprecated name (``renamed_params``) is read as its new one, with
    a :class:`FutureWarning` (the CLI prints it as one line)."""
    cls = model_class(name)
    specs = cls.param_specs()
    renamed = cls.renamed()

    def key_of(key: str) -> str:
        if key in renamed:
            return next(iter(cls.canonical_params({key: None})))  # warns, naming the new name
        return key

    return parse_pairs(pairs, owner=f"model {name!r}", known=list(specs), key_of=key_of,
                       value_of=lambda key, text: specs[key].parse(text, name), see=f" (see `dlfm params {name}`)")


def model_class(name: str) -> type[Recommender]:
    _load_neural()
    try:
        return MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name).lower(), list(MODELS), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}? Known" if close else "; known"
        raise ConfigError(f"unknown model {name!r}{hint}: {', '.join(MODELS)}") from None


def create(name: str, **params: Any) -> Recommender:
    cls = model_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None


def _load_neural() -> None:
    """Import the neural models so they register themselves (they import torch)."""
    import importlib

    for module in ("dlfm.models.dlf", "dlfm.models.vdlf"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


__all__ = ["MODELS", "Recommender", "GlobalMean", "BaselineModel", "PopularItems", "MatrixFactorization", "PMF",
           "create", "model_class", "parse_params", "register"]

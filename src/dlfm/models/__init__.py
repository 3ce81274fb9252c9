"""Every model of dlfm behind one interface (:class:`~dlfm.models.base.Recommender`)."""

from __future__ import annotations

import difflib
from typing import Any, Iterable

from dlfm.errors import ConfigError
from dlfm.models.base import Recommender
from dlfm.models.baselines import BaselineModel, GlobalMean, PopularItems
from dlfm.models.mf import PMF, MatrixFactorization

MODELS: dict[str, type[Recommender]] = {cls.name: cls for cls in (GlobalMean, BaselineModel, PopularItems,
                                                                      MatrixFactorization, PMF)}


def register(cls: type[Recommender]) -> type[Recommender]:
    MODELS[cls.name] = cls
    return cls


def split_param(pair: str) -> tuple[str, str]:
    """``"n-factors=50"`` → ``("n_factors", "50")``; a clear error without ``=``."""
    if "=" not in pair:
        raise ConfigError(f"--param expects key=value, not {pair!r}")
    key, value = pair.split("=", 1)
    return key.strip().replace("-", "_"), value


def parse_params(name: str, pairs: Iterable[str]) -> dict[str, Any]:
    """``["n_factors=50", "reg=0.1"]`` → typed, checked keyword arguments for model ``name``,
    by the model's declared hyper-parameters (:mod:`dlfm.models.params`); every error names
    the parameter and points at ``dlfm params NAME``."""
    cls = model_class(name)
    specs = cls.param_specs()
    params: dict[str, Any] = {}
    for pair in pairs:
        key, value = split_param(pair)
        if key not in specs:
            close = difflib.get_close_matches(key, list(specs), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = f"it has {', '.join(specs)}" if specs else "it has no hyper-parameters"
            raise ConfigError(f"model {name!r} has no parameter {key!r}; {hint}{known} (see `dlfm params {name}`)")
        params[key] = specs[key].parse(value, name)
    return params


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

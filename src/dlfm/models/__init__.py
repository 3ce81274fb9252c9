"""Every model of dlfm behind one interface (:class:`~dlfm.models.base.Recommender`)."""

from __future__ import annotations

import ast
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


def _parse_value(text: str, default: Any, key: str) -> Any:
    if isinstance(default, bool):
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--param {key}: expected true or false, not {text!r}")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"--param {key}: expected an integer, not {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"--param {key}: expected a number, not {text!r}") from None
    if isinstance(default, (tuple, list)):
        try:
            value = ast.literal_eval(text) if text.strip().startswith(("(", "[")) else [int(x) for x in text.split(",")]
            return tuple(value)
        except (ValueError, SyntaxError):
            raise ConfigError(f"--param {key}: expected comma-separated integers, not {text!r}") from None
    if default is None:
        for cast in (int, float):
            try:
                return cast(text)
            except ValueError:
                pass
    return text


def split_param(pair: str) -> tuple[str, str]:
    """``"n-factors=50"`` → ``("n_factors", "50")``; a clear error without ``=``."""
    if "=" not in pair:
        raise ConfigError(f"--param expects key=value, not {pair!r}")
    key, value = pair.split("=", 1)
    return key.strip().replace("-", "_"), value


def parse_params(name: str, pairs: Iterable[str]) -> dict[str, Any]:
    """``["n_factors=50", "reg=0.1"]`` → typed keyword arguments for model ``name``."""
    cls = model_class(name)
    defaults = cls.param_defaults()
    params: dict[str, Any] = {}
    for pair in pairs:
        key, value = split_param(pair)
        if key not in defaults:
            raise ConfigError(f"model {name!r} has no parameter {key!r}; it has {', '.join(sorted(defaults))}")
        params[key] = _parse_value(value, defaults[key], key)
    return params


def model_class(name: str) -> type[Recommender]:
    _load_neural()
    try:
        return MODELS[name]
    except KeyError:
        import difflib

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

"""Search spaces for hyper-parameter tuning, declared next to each model (``search_space``).

A space maps parameter names to distributions; :mod:`dlfm.evaluation.tuning` turns them into
Optuna suggestions. Kept free of Optuna so that a model module imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union


@dataclass(frozen=True)
class LogUniform:
    """A float drawn log-uniformly from [low, high] (learning rates, regularization)."""

    low: float
    high: float


@dataclass(frozen=True)
class Uniform:
    """A float drawn uniformly from [low, high] (dropout rates, decays)."""

    low: float
    high: float


@dataclass(frozen=True)
class Choice:
    """One of a few values (layer widths, options)."""

    values: tuple[Any, ...]


Distribution = Union[LogUniform, Uniform, Choice]
SearchSpace = Mapping[str, Distribution]

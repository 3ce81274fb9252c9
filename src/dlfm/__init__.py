"""dlfm: deep latent factor models for collaborative filtering.

>>> import dlfm
>>> model = dlfm.create("dlf").fit(dlfm.datasets.load("ml-100k"))
>>> model = dlfm.load("dlf.dlfm")
>>> dlfm.cross_validate("baseline", "ml-100k")["mean"]["rmse"]

``load``, ``create`` and ``cross_validate`` (:mod:`dlfm.api`) and the sub-packages are
imported on first use: ``import dlfm`` alone loads neither NumPy nor PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = ("load", "create", "cross_validate")
_SUBPACKAGES = ("data", "datasets", "evaluation", "models", "nn", "training", "errors", "persistence", "plots")

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("dlfm.api"), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"dlfm.{name}")
    raise AttributeError(f"module 'dlfm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, *_SUBPACKAGES])

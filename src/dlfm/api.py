"""The top of the package: ``dlfm.load``, ``dlfm.create`` and ``dlfm.cross_validate``.

>>> import dlfm
>>> model = dlfm.create("dlf", hidden=100)                 # any model of `dlfm.models`
>>> model = dlfm.load("dlf.dlfm")                          # any saved model file
>>> result = dlfm.cross_validate("baseline", "ml-100k")    # the `dlfm cv` JSON document

These are imported lazily by :mod:`dlfm` (``import dlfm`` loads neither NumPy nor PyTorch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

from dlfm.data.ratings import Ratings
from dlfm.data.splits import Fold
from dlfm.errors import ConfigError
from dlfm.models import Recommender
from dlfm.models import create as _create


def load(path: str | os.PathLike[str], *, device: str | None = None) -> Recommender:
    """The model saved in ``path`` (any dlfm model), as :meth:`Recommender.load` reads it.

    Args:
        path: a file written by ``model.save`` or ``dlfm train``.
        device: ``cpu``, ``cuda`` or ``auto`` for a neural model (default: as saved, or the CPU
            when the GPU it was saved from is absent).

    Raises:
        ModelFileError: the file is not a dlfm model or cannot be read safely.
    """
    return Recommender.load(path, device=device)


def create(name: str, **params: Any) -> Recommender:
    """A new, unfitted model by name (``mean``, ``baseline``, ``pmf``, ``mf``, ``dlf``,
    ``vdlf``) with the given hyper-parameters; ``.fit(ratings)`` trains it.

    Raises:
        ConfigError: an unknown name (the closest one is suggested) or parameter.
    """
    return _create(name, **params)


def cross_validate(
    model: str,
    data: str | os.PathLike[str] | Ratings | Iterable[Fold],
    *,
    test: str | os.PathLike[str] | Ratings | None = None,
    folds: str | None = None,
    k: int = 5,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fit ``model`` on each fold's training part and score it on the test part, as ``dlfm cv``.

    Args:
        model: a model name (see :func:`create`).
        data: a named data set (``"ml-100k"``), a rating file, a :class:`Ratings`, or folds
            already made (e.g. ``dlfm.datasets.official_folds("ml-100k")``).
        test: with it, ``data`` is the training part of one fixed split and ``test`` its test
            part (files or containers; the test ids are mapped onto the training ones, unknown
            ones get the fallback).
        folds: ``"official"``, a fold name (``"u1"``) or ``"kfold"``; default: official where
            the data set has official folds, else K-fold.
        k, seed: the number of random folds and their seed (the models' seed too, where they
            take one and ``params`` does not set it).
        params: the model's hyper-parameters.
        data_dir: where named data sets live (default ``$DLFM_DATA_DIR``, else ``~/.cache/dlfm``).
        on_fold: called with each fold's record as soon as it is scored.

    Returns:
        The ``cv`` document: ``{"dataset", "model", "params", "folds": [per-fold records],
        "mean", "std", "versions"}``.
    """
    from dlfm import datasets
    from dlfm.data.splits import given_split, kfold
    from dlfm.evaluation.cv import cross_validate as run
    from dlfm.models import model_class

    params = dict(params or {})
    if "seed" in model_class(model).param_names():
        params.setdefault("seed", seed)
    name = str(data) if isinstance(data, (str, os.PathLike)) else getattr(data, "name", "folds")

    def ratings_of(source: Any) -> Ratings:
        return source if isinstance(source, Ratings) else datasets.load_any(str(source), data_dir=data_dir)

    if test is not None:
        if folds is not None:
            raise ConfigError("test= gives one fixed split: leave out folds=")
        test_name = test.name if isinstance(test, Ratings) else Path(test).name
        chosen: Iterable[Fold] = [given_split(ratings_of(data), ratings_of(test), name=test_name)]
    elif isinstance(data, (str, os.PathLike, Ratings)):
        spec = datasets.DATASETS.get(data) if isinstance(data, str) else None
        scheme = folds or ("official" if spec is not None and spec.official_folds else "kfold")
        if scheme == "kfold":
            chosen = kfold(ratings_of(data), k, seed=seed)
        elif spec is None:
            raise ConfigError(f"official folds exist only for named data sets, not {name!r}; use folds='kfold'")
        else:
            chosen = datasets.official_folds(str(data), scheme, data_dir=data_dir)
    else:
        chosen = data
    return run(model, params, chosen, dataset=name, seed=seed, on_fold=on_fold)

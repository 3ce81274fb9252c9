"""Named data sets (MovieLens), their official folds, and synthetic data with known truth.

Owns: the registry of named sets (:mod:`~dlfm.datasets.registry`), downloading, verifying and
installing them (:mod:`~dlfm.datasets.store`), loading any source by name or path
(:func:`load_any`), and generated data (:mod:`~dlfm.datasets.synthetic`). Reading and
splitting rating files is :mod:`dlfm.data`'s.

May import :mod:`dlfm.data`, :mod:`dlfm.errors`, :mod:`dlfm.persistence`; must not import
:mod:`dlfm.models`, :mod:`dlfm.evaluation`, :mod:`dlfm.cli` or :mod:`dlfm.serving`, nor
PyTorch at import (``dlfm info`` and ``dlfm datasets`` start without it; writing a file goes
through :mod:`dlfm.persistence`, imported when needed).

>>> from dlfm import datasets
>>> ratings = datasets.load("ml-100k")             # DIR/ml-100k/u.data, downloading if missing
>>> for fold in datasets.folds("ml-100k", "official"):   # u1..u5
...     fold.train, fold.test
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from dlfm.data.io import load_ratings
from dlfm.data.ratings import Ratings
from dlfm.data.splits import Fold, kfold
from dlfm.datasets.registry import DATASETS, DatasetSpec
from dlfm.datasets.synthetic import SyntheticTruth, synthetic, write_ratings
from dlfm.datasets.store import data_dir, dataset_path, install, is_installed, require, spec
from dlfm.errors import ConfigError, DatasetError

__all__ = ["DATASETS", "DatasetSpec", "data_dir", "dataset_path", "install", "is_installed", "load",
           "folds", "official_folds", "load_any", "require", "spec", "synthetic", "SyntheticTruth",
           "write_ratings", "kfold"]


def load(name: str, *, data_dir: str | os.PathLike[str] | None = None, download: bool = True,
         quiet: bool = False) -> Ratings:
    """The full ratings of a named data set (installing it first when missing)."""
    s = spec(name)
    folder = require(name, data_dir, download_missing=download, quiet=quiet)
    return load_ratings(folder / s.ratings_file, sep=s.sep, header=s.header, scale=s.scale, name=s.name)


def load_any(source: str, *, data_dir: str | os.PathLike[str] | None = None, download: bool = True,
             quiet: bool = False, **file_options: object) -> Ratings:
    """A named data set when ``source`` is a known name, else a rating file at that path."""
    if source in DATASETS:
        return load(source, data_dir=data_dir, download=download, quiet=quiet)
    path = Path(source)
    if not path.exists():
        import difflib

        close = difflib.get_close_matches(source.lower(), list(DATASETS), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DatasetError(f"{source!r} is neither a known data set ({', '.join(DATASETS)}) nor an existing file{hint}")
    return load_ratings(path, **file_options)  # type: ignore[arg-type]


def official_folds(name: str, which: str = "official", *, data_dir: str | os.PathLike[str] | None = None,
                   full: Ratings | None = None) -> Iterator[Fold]:
    """The predefined splits shipped with a data set: ``official`` (u1-u5), or one name
    (``u3``, ``ua``, ``ub``). Read from the data set's own files; all share the vocabulary of
    the full ratings."""
    s = spec(name)
    if not s.official_folds:
        raise DatasetError(f"{name} has no official folds; use --folds kfold")
    names = [f for f in s.official_folds if f.startswith("u") and f[1:].isdigit()] if which == "official" else [which]
    for fold_name in names:
        if fold_name not in s.official_folds:
            raise ConfigError(f"{name} has no fold {fold_name!r}; it has {', '.join(s.official_folds)}")
    full = full if full is not None else load(name, data_dir=data_dir)
    folder = require(name, data_dir)
    for fold_name in names:
        parts = [load_ratings(folder / f"{fold_name}.{part}", sep=s.sep, header=False, scale=s.scale)
                 .in_vocabularies(full.user_vocab, full.item_vocab, name=f"{name}/{fold_name}.{part}")
                 for part in ("base", "test")]
        yield Fold(fold_name, parts[0], parts[1])


def folds(source: str | Ratings, scheme: str = "official", *, k: int = 5, seed: int | None = 0,
          data_dir: str | os.PathLike[str] | None = None) -> Iterator[Fold]:
    """Folds of a named data set or a container: ``official`` (or a fold name such as ``u1``,
    ``ua``) or ``kfold`` (seeded, Surprise-style)."""
    if scheme == "kfold":
        ratings = load(source, data_dir=data_dir) if isinstance(source, str) else source
        return kfold(ratings, k, seed=seed)
    if isinstance(source, Ratings):
        raise ConfigError("official folds exist only for named data sets; use --folds kfold for a file")
    return official_folds(source, scheme, data_dir=data_dir)

"""Train/test splits. Each returns :class:`Fold` objects whose containers share one vocabulary.

- :func:`kfold`: seeded random K-fold over ratings (as Surprise's ``KFold``).
- :func:`holdout`: one random split by ratio.
- :func:`entity_folds` and :func:`fold_in_split`: cold start — whole users (items) held out,
  then a few of their ratings given to fold in and the others scored.
- :func:`leave_k_out`: per user, k random ratings held out (users with fewer than k + 1
  ratings keep all of theirs in training).
- :func:`given_split`: a fixed split read from two files (e.g. a paper's train and test files).
- Official predefined folds (ML-100k's u1-u5, ua, ub) come from :mod:`dlfm.datasets`.

Test users or items without a training rating are *unknown* to a model fitted on the
training part; :attr:`Fold.n_unknown` counts those test ratings, and every model predicts
them by its documented fallback (the training mean plus whatever bias is known).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from dlfm.data.ratings import Ratings, Vocabulary
from dlfm.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    """One (train, test) pair over a shared vocabulary."""

    name: str
    train: Ratings
    test: Ratings

    @property
    def unknown_mask(self) -> np.ndarray:
        """Test ratings whose user or item has no rating in ``train``."""
        return (self.train.user_counts[self.test.users] == 0) | (self.train.item_counts[self.test.items] == 0)

    @property
    def n_unknown(self) -> int:
        return int(self.unknown_mask.sum())


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def kfold(ratings: Ratings, k: int = 5, *, seed: int | None = 0) -> Iterator[Fold]:
    """K disjoint test parts covering every rating once; train is the rest."""
    if not 2 <= k <= len(ratings):
        raise ConfigError(f"k must be between 2 and the number of ratings ({len(ratings)}), not {k}")
    order = _rng(seed).permutation(len(ratings))
    bounds = np.linspace(0, len(ratings), k + 1).astype(int)
    for f in range(k):
        test_idx = np.sort(order[bounds[f] : bounds[f + 1]])
        mask = np.ones(len(ratings), dtype=bool)
        mask[test_idx] = False
        yield Fold(f"fold{f + 1}", ratings.subset(mask, name=f"{ratings.name}[train {f + 1}/{k}]"),
                   ratings.subset(test_idx, name=f"{ratings.name}[test {f + 1}/{k}]"))


def holdout_size(n_ratings: int, test_ratio: float) -> int:
    """How many of ``n_ratings`` ratings :func:`holdout` puts in the test part (at least one)."""
    return max(1, int(round(test_ratio * n_ratings)))


def holdout(ratings: Ratings, test_ratio: float = 0.2, *, seed: int | None = 0) -> Fold:
    """One random split with ``test_ratio`` of the ratings in the test part."""
    if not 0.0 < test_ratio < 1.0:
        raise ConfigError(f"test_ratio must be in (0, 1), not {test_ratio}")
    n_test = holdout_size(len(ratings), test_ratio)
    order = _rng(seed).permutation(len(ratings))
    test = np.zeros(len(ratings), dtype=bool)
    test[order[:n_test]] = True
    return Fold("holdout", ratings.subset(~test), ratings.subset(test))


def leave_k_out(ratings: Ratings, k: int = 1, *, seed: int | None = 0) -> Fold:
    """Per user, ``k`` random ratings in the test part; users with ``<= k`` ratings keep all."""
    if k < 1:
        raise ConfigError(f"k must be at least 1, not {k}")
    rng = _rng(seed)
    keys = rng.random(len(ratings))
    order = np.lexsort((keys, ratings.users))  # by user, random within user
    users_sorted = ratings.users[order]
    start = np.searchsorted(users_sorted, users_sorted, side="left")
    rank = np.arange(len(order)) - start
    counts = ratings.user_counts[users_sorted]
    test = np.zeros(len(ratings), dtype=bool)
    test[order[(rank < k) & (counts > k)]] = True
    return Fold(f"leave-{k}-out", ratings.subset(~test), ratings.subset(test))


def validation_split(train: Ratings, ratio: float = 0.05, *, seed: int | None = 0) -> tuple[Ratings, Ratings]:
    """Carve a validation part out of a training container (never from a test fold)."""
    fold = holdout(train, ratio, seed=seed)
    return fold.train, fold.test


def entity_folds(ratings: Ratings, k: int = 5, *, by: str = "user", seed: int | None = 0) -> Iterator[Fold]:
    """Cold-start folds: the users (``by="user"``) or items (``by="item"``) that have a rating,
    shuffled (seeded) and cut into ``k`` disjoint sets; fold f's test part holds *every* rating
    of its set, its training part all the others. Each user (item) is held out exactly once."""
    if by not in ("user", "item"):
        raise ConfigError(f"by must be 'user' or 'item', not {by!r}")
    counts = ratings.user_counts if by == "user" else ratings.item_counts
    ids = ratings.users if by == "user" else ratings.items
    present = np.flatnonzero(counts > 0)
    if not 2 <= k <= len(present):
        raise ConfigError(f"k must be between 2 and the number of {by}s with a rating ({len(present)}), not {k}")
    order = _rng(seed).permutation(present)
    bounds = np.linspace(0, len(order), k + 1).astype(int)
    for f in range(k):
        held = np.zeros(len(counts), dtype=bool)
        held[order[bounds[f]:bounds[f + 1]]] = True
        mask = held[ids]
        yield Fold(f"{by}s{f + 1}", ratings.subset(~mask, name=f"{ratings.name}[train, new {by}s {f + 1}/{k}]"),
                   ratings.subset(mask, name=f"{ratings.name}[new {by}s {f + 1}/{k}]"))


def fold_in_split(held: Ratings, given: int, *, by: str = "user",
                  seed: int | None = 0) -> tuple[Ratings, Ratings]:
    """Split the ratings of held-out users (items) into (given, others): per user (item),
    ``given`` ratings drawn at random (seeded) to fold in, the rest to score. A user (item)
    with ``given`` ratings or fewer has nothing left to score and is dropped from both parts.

    One seed gives nested draws: the 5 given ratings are among the 10 given with the same seed."""
    if by not in ("user", "item"):
        raise ConfigError(f"by must be 'user' or 'item', not {by!r}")
    if given < 1:
        raise ConfigError(f"given must be at least 1, not {given}")
    ids = held.users if by == "user" else held.items
    counts = (held.user_counts if by == "user" else held.item_counts)[ids]
    keys = _rng(seed).random(len(held))
    order = np.lexsort((keys, ids))  # by entity, random within it
    sorted_ids = ids[order]
    rank = np.empty(len(held), dtype=np.int64)
    rank[order] = np.arange(len(order)) - np.searchsorted(sorted_ids, sorted_ids, side="left")
    kept = counts > given
    return (held.subset(kept & (rank < given), name=f"{held.name}[given {given}]"),
            held.subset(kept & (rank >= given), name=f"{held.name}[others, given {given}]"))


def _union(a: Vocabulary, b: Vocabulary) -> Vocabulary:
    """The sorted union of two vocabularies (as strings when one holds strings)."""
    if a.kind != b.kind:
        ids = np.concatenate([a.ids.astype(str), b.ids.astype(str)]).astype(object)
    else:
        ids = np.concatenate([a.ids, b.ids])
    return Vocabulary(np.unique(ids))


def given_split(train: Ratings, test: Ratings, *, name: str = "given") -> Fold:
    """A fixed (train, test) split from two separately read containers, both re-indexed onto
    the union of their vocabularies (sorted, as a named data set's full vocabulary): test ids
    that ``train`` lacks are *unknown* to a model fitted on it (:attr:`Fold.n_unknown`) and get
    the model's fallback."""
    users = _union(train.user_vocab, test.user_vocab)
    items = _union(train.item_vocab, test.item_vocab)
    return Fold(name, train.in_vocabularies(users, items), test.in_vocabularies(users, items))

"""Folds are disjoint and covering; official folds match the data set's files."""

from __future__ import annotations

import numpy as np
import pytest

from dlfm import datasets
from dlfm.data.splits import holdout, kfold, leave_k_out, validation_split


def keys(r):
    return set((r.users * r.n_items + r.items).tolist())


def test_kfold_disjoint_covering_and_seeded(lowrank):
    folds = list(kfold(lowrank, 5, seed=3))
    tests = [keys(f.test) for f in folds]
    assert sum(len(t) for t in tests) == len(lowrank)
    assert set().union(*tests) == keys(lowrank)
    for f in folds:
        assert keys(f.train).isdisjoint(keys(f.test))
        assert f.train.user_vocab is lowrank.user_vocab
    again = list(kfold(lowrank, 5, seed=3))
    assert all(keys(a.test) == keys(b.test) for a, b in zip(folds, again))
    other = list(kfold(lowrank, 5, seed=4))
    assert keys(other[0].test) != keys(folds[0].test)


def test_holdout_ratio(lowrank):
    fold = holdout(lowrank, 0.25, seed=0)
    assert len(fold.test) == round(0.25 * len(lowrank))
    assert keys(fold.train) | keys(fold.test) == keys(lowrank)


def test_leave_k_out(lowrank):
    fold = leave_k_out(lowrank, 2, seed=0)
    per_user = np.bincount(fold.test.users, minlength=lowrank.n_users)
    eligible = lowrank.user_counts > 2
    assert np.all(per_user[eligible] == 2) and np.all(per_user[~eligible] == 0)


def test_unknown_counted():
    """Hand-computed: a test rating counts as unknown when its user or its item has no
    training rating."""
    from dlfm.data.ratings import Ratings
    from dlfm.data.splits import Fold

    r = Ratings.from_raw([1, 1, 2, 2, 3, 4], [1, 2, 1, 2, 1, 3], [1, 2, 3, 4, 5, 1])
    train, test = r.subset(np.array([0, 1, 2])), r.subset(np.array([3, 4, 5]))
    fold = Fold("hand", train, test)
    # test: (2, 2) both known; (3, 1) user 3 unknown; (4, 3) user and item unknown
    assert fold.n_unknown == 2
    assert fold.unknown_mask.tolist() == [False, True, True]


def test_validation_split_comes_from_train(lowrank):
    fit, val = validation_split(lowrank, 0.1, seed=0)
    assert keys(fit) | keys(val) == keys(lowrank) and keys(fit).isdisjoint(keys(val))


def test_official_folds_match_u_data(ml100k_root):
    full = datasets.load("ml-100k", data_dir=ml100k_root)
    all_keys = keys(full)
    test_union = set()
    for fold in datasets.folds("ml-100k", "official", data_dir=ml100k_root):
        assert len(fold.train) == 80000 and len(fold.test) == 20000
        assert keys(fold.train).isdisjoint(keys(fold.test))
        assert keys(fold.train) | keys(fold.test) == all_keys
        assert fold.train.user_vocab == full.user_vocab
        test_union |= keys(fold.test)
    assert test_union == all_keys  # u1-u5 test parts partition u.data
    ua = next(datasets.folds("ml-100k", "ua", data_dir=ml100k_root))
    assert len(ua.test) == 9430  # ten ratings per user


def test_official_folds_need_a_named_set(lowrank):
    from dlfm.errors import ConfigError

    with pytest.raises(ConfigError):
        datasets.folds(lowrank, "official")

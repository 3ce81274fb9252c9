"""Matrix factorization (``mf``, ``pmf``): the batched solver, the sampler, the validation trace."""

from __future__ import annotations

import numpy as np
import pytest

from dlfm.data.ratings import Ratings
from dlfm.data.splits import holdout
from dlfm.evaluation.metrics import rmse
from dlfm.models import create
from dlfm.models.base import Recommender
from dlfm.models.mf import _Side


def _random_side(seed: int = 0, n_rows: int = 40, n_other: int = 30, dim: int = 4):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 12, n_rows)
    counts[3] = 0  # an empty row
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate([np.sort(rng.choice(n_other, c, replace=False)) for c in counts]).astype(np.int64)
    feats = rng.normal(size=(n_other, dim))
    targets = rng.normal(size=len(indices))
    penalty = rng.uniform(0.1, 2.0, (n_rows, dim))
    return rng, _Side(indptr, indices, n_other), indptr, indices, feats, targets, penalty


def test_batched_solve_matches_row_by_row():
    _, side, indptr, indices, feats, targets, penalty = _random_side()
    prior = np.array([0.5, -1.0, 0.0, 2.0])
    mean, draw = side.solve(targets, feats, penalty, prior_mean=prior)
    assert draw is mean
    for r in range(len(indptr) - 1):
        z, t = feats[indices[indptr[r]:indptr[r + 1]]], targets[indptr[r]:indptr[r + 1]]
        if len(t) == 0:
            assert np.all(mean[r] == 0)
            continue
        a = z.T @ z + np.diag(penalty[r])
        assert np.allclose(mean[r], np.linalg.solve(a, z.T @ t + penalty[r] * prior))


def test_draws_have_the_posterior_mean_and_covariance():
    rng, side, indptr, indices, feats, targets, penalty = _random_side(1)
    row = int(np.argmax(np.diff(indptr)))
    z = feats[indices[indptr[row]:indptr[row + 1]]]
    cov = 0.7 ** 2 * np.linalg.inv(z.T @ z + np.diag(penalty[row]))
    draws = np.array([side.solve(targets, feats, penalty, rng=rng, noise=0.7)[1][row] for _ in range(3000)])
    mean = side.solve(targets, feats, penalty)[0][row]
    assert np.allclose(draws.mean(axis=0), mean, atol=4 * np.sqrt(cov.diagonal().max() / 3000))
    assert np.allclose(np.cov(draws.T), cov, atol=0.15 * np.abs(cov).max())


@pytest.mark.parametrize("name", ["mf", "pmf"])
def test_validation_trace_equals_stopping_there(lowrank, name):
    fold = holdout(lowrank, 0.2, seed=0)
    fit, val = fold.train, fold.test
    params = {"n_factors": 3, "n_epochs": 3}
    traced = create(name, **params, gibbs_sweeps=6).fit(fit, validation=val)
    assert [h["epoch"] for h in traced.history_] == list(range(1, 10))
    for sweeps in (0, 4):
        model = create(name, **params, gibbs_sweeps=sweeps).fit(fit)
        score = rmse(val.ratings, model.predict_indices(val.users, val.items))
        assert traced.history_[params["n_epochs"] + sweeps - 1]["val_rmse"] == pytest.approx(score, abs=1e-9)


def test_averaging_beats_the_warm_start(lowrank):
    fold = holdout(lowrank, 0.2, seed=0)
    fit, val = fold.train, fold.test
    model = create("mf", gibbs_sweeps=40).fit(fit, validation=val)
    assert model.history_[-1]["val_rmse"] < model.history_[model.n_epochs - 1]["val_rmse"]
    assert model.user_factors_.shape == (lowrank.n_users, 40 * model.n_factors)


def test_pmf_has_no_biases(lowrank):
    model = create("pmf").fit(lowrank)
    assert np.all(model.user_bias_ == 0) and np.all(model.item_bias_ == 0)


@pytest.mark.parametrize("gibbs_sweeps", [0, 5])
def test_fold_in_of_a_training_user_reproduces_its_predictions(lowrank, gibbs_sweeps):
    model = create("mf", gibbs_sweeps=gibbs_sweeps, n_epochs=20).fit(lowrank)
    user = 7
    rated = lowrank.users == user
    ratings = dict(zip(lowrank.item_vocab.raw(lowrank.items[rated]), lowrank.ratings[rated]))
    items = lowrank.item_vocab.raw(np.arange(lowrank.n_items))
    again = model.predict_new_user(ratings, items)
    known = model.predict_indices(np.full(lowrank.n_items, user), np.arange(lowrank.n_items))
    # after Gibbs sweeps the fold-in is exactly what fitting did; ALS is only near its fixed point
    assert np.allclose(again, known, atol=1e-8 if gibbs_sweeps else 1e-3)


def test_save_load_keeps_fold_in(tmp_path, lowrank):
    model = create("mf", gibbs_sweeps=5).fit(lowrank)
    model.save(tmp_path / "m.dlfm")
    again = Recommender.load(tmp_path / "m.dlfm")
    items = lowrank.raw_items()[:20]
    ratings = {items[0]: 5.0, items[1]: 1.0}
    assert np.array_equal(again.predict_new_user(ratings, items), model.predict_new_user(ratings, items))
    assert again.noise_ == model.noise_


def test_deterministic_given_seed(lowrank):
    a = create("mf", gibbs_sweeps=5).fit(lowrank).predict_indices(lowrank.users[:50], lowrank.items[:50])
    b = create("mf", gibbs_sweeps=5).fit(lowrank).predict_indices(lowrank.users[:50], lowrank.items[:50])
    c = create("mf", gibbs_sweeps=5, seed=1).fit(lowrank).predict_indices(lowrank.users[:50], lowrank.items[:50])
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_rows_without_ratings_get_zero_factors():
    r = Ratings.from_raw([1, 1, 2, 2, 3], [1, 2, 1, 3, 2], [5.0, 3.0, 4.0, 2.0, 1.0])
    sub = r.subset(np.array([True, True, True, True, False]))  # user 3 keeps no rating
    model = create("mf", n_factors=2, gibbs_sweeps=3).fit(sub)
    assert np.all(model.user_factors_[2] == 0) and model.user_bias_[2] == 0
    assert model.predict(3, 2) == pytest.approx(np.clip(sub.global_mean + model.item_bias_[1], 1, 5))

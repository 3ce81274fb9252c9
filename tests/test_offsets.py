"""Per-row offsets of η (``dlfm.models.offsets``): known answers, fold-in, and what they buy
on heavy-tailed counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import poisson

from dlfm.data.ratings import Ratings
from dlfm.data.splits import holdout
from dlfm.datasets import synthetic
from dlfm.errors import ConfigError
from dlfm.models import create
from dlfm.models.base import Recommender
from dlfm.models.offsets import RowOffsets, poisson_offsets, resolve_offsets
from tests.conformance import NEURAL_FAST


def lognormal_counts(n_users: int = 120, n_items: int = 80, n: int = 5000, spread: float = 1.2,
                     seed: int = 0) -> tuple[Ratings, np.ndarray, np.ndarray]:
    """Counts y ~ Poisson(50 · exp(a_u + b_i)), a, b ~ N(0, spread²): a play-count set's shape."""
    rng = np.random.default_rng(seed)
    keys = rng.choice(n_users * n_items, size=n, replace=False)
    users, items = keys // n_items, keys % n_items
    a, b = rng.normal(0, spread, n_users), rng.normal(0, spread, n_items)
    counts = rng.poisson(50.0 * np.exp(a[users] + b[items])).astype(np.float64)
    return Ratings.from_raw(users, items, counts, name="counts"), a, b


def test_poisson_offsets_recover_planted_log_rates() -> None:
    data, a, b = lognormal_counts(n=9000)
    m = math.log(data.ratings.mean())
    fitted_a, fitted_b = poisson_offsets(data, m)
    raw_a = a[np.asarray(data.user_vocab.raw(np.arange(data.n_users))).astype(int)]
    raw_b = b[np.asarray(data.item_vocab.raw(np.arange(data.n_items))).astype(int)]
    # identified up to a constant shared between the sides: compare centred values
    assert np.corrcoef(fitted_a, raw_a)[0, 1] > 0.99 and np.corrcoef(fitted_b, raw_b)[0, 1] > 0.99


def test_a_poisson_offset_solves_its_score_equation() -> None:
    """Without shrinkage, at convergence each user's expected total equals its observed total."""
    data, _, _ = lognormal_counts()
    m = math.log(data.ratings.mean())
    a, b = poisson_offsets(data, m, prior=0.0, n_iter=200)
    expected = np.bincount(data.users, weights=np.exp(m + a[data.users] + b[data.items]), minlength=data.n_users)
    observed = np.bincount(data.users, weights=data.ratings, minlength=data.n_users)
    np.testing.assert_allclose(expected, observed, rtol=1e-6)


def test_fold_in_of_a_training_row_matches_its_fitted_offset() -> None:
    """A user folded in from its own training counts gets (close to) the offset it was fitted
    with: the same update, one more step from the item offsets the fit ended on."""
    data, _, _ = lognormal_counts()
    m = math.log(data.ratings.mean())
    offsets = RowOffsets.fit(data, "poisson", m)
    row = np.flatnonzero(data.users == 3)
    again = offsets.fold_in(data.items[row], data.ratings[row], "user")
    assert again == pytest.approx(offsets.user[3], abs=1e-3)
    gaussian = RowOffsets(np.zeros(2), np.array([0.5, -0.5]), "gaussian", 3.0)
    # b_u = Σ (r − μ − b_i) / (λ_u + n) = ((5 − 3 − 0.5) + (4 − 3 + 0.5)) / (15 + 2)
    assert gaussian.fold_in(np.array([0, 1]), np.array([5.0, 4.0]), "user") == pytest.approx(3.0 / 17)


def test_unknown_rows_get_no_offset() -> None:
    offsets = RowOffsets(np.array([1.0, 2.0]), np.array([10.0]), "poisson", 0.0)
    np.testing.assert_array_equal(offsets.pair(np.array([0, -1, 1]), np.array([-1, 0, 0])), [1.0, 10.0, 12.0])


def test_resolve_offsets() -> None:
    assert resolve_offsets("auto", "poisson") == "per_row"
    assert resolve_offsets("auto", "gaussian") == "global"
    # a model declares what auto means for it: dlf has per-row offsets for a Gaussian, vdlf not
    dlf, vdlf = create("dlf"), create("vdlf")
    assert resolve_offsets(dlf.offsets, "gaussian", dlf.auto_offsets) == "per_row"
    assert resolve_offsets(vdlf.offsets, "gaussian", vdlf.auto_offsets) == "global"
    assert resolve_offsets("global", "gaussian", dlf.auto_offsets) == "global"
    with pytest.raises(ConfigError, match="bernoulli"):
        resolve_offsets("per_row", "bernoulli")
    with pytest.raises(ConfigError, match="bernoulli"):
        create("dlf", likelihood="bernoulli", offsets="per_row", verbose=False).fit(
            Ratings.from_raw([0, 1], [0, 1], [0.0, 1.0]))


def test_per_row_offsets_fit_heavy_tailed_counts() -> None:
    """dlf with Poisson offsets predicts rates across the counts' orders of magnitude and beats
    both the offsets alone and the model without them on held-out NLL."""
    data, _, _ = lognormal_counts(n=3000)
    fold = holdout(data, 0.1, seed=0)
    y = fold.test.ratings
    nll = {}
    for offsets in ("per_row", "global"):
        model = create("dlf", **{**NEURAL_FAST, "max_epochs": 12}, likelihood="poisson", offsets=offsets)
        rate = model.fit(fold.train).predict_indices(fold.test.users, fold.test.items)
        nll[offsets] = float(-np.mean(poisson.logpmf(y, np.maximum(rate, 1e-9))))
    m = math.log(fold.train.ratings.mean())
    alone = np.exp(m + RowOffsets.fit(fold.train, "poisson", m).pair(fold.test.users, fold.test.items))
    nll["offsets alone"] = float(-np.mean(poisson.logpmf(y, alone)))
    assert nll["per_row"] < nll["global"] and nll["per_row"] < nll["offsets alone"], nll


def test_a_poisson_model_saves_and_folds_in_with_its_offsets(tmp_path) -> None:
    data, _, _ = lognormal_counts(n=3000)
    model = create("dlf", **NEURAL_FAST, likelihood="poisson").fit(data)
    path = tmp_path / "counts.dlfm"
    model.save(path)
    from dlfm.models.base import Recommender

    loaded = Recommender.load(path)
    np.testing.assert_array_equal(model.predict_indices(data.users[:50], data.items[:50]),
                                  loaded.predict_indices(data.users[:50], data.items[:50]))
    items = list(data.item_vocab.raw(np.arange(5)))
    heavy = model.predict_new_user({items[0]: 5000, items[1]: 4000}, items[2:])
    light = model.predict_new_user({items[0]: 1, items[1]: 0}, items[2:])
    assert np.all(heavy > 10 * light)  # the new user's level comes through its offset


def test_a_model_file_keeps_the_offsets_it_was_trained_with(tmp_path) -> None:
    data = synthetic(120, 60, 2500, rank=2, seed=4)
    model = create("dlf", **{**NEURAL_FAST, "max_epochs": 2})
    model.fit(data)
    assert model.offsets_ == "per_row" and model.scorer_.offsets is not None
    path = tmp_path / "now.dlfm"
    model.save(path)
    loaded = Recommender.load(path)
    assert loaded.offsets_ == "per_row"
    assert np.array_equal(loaded.predict_indices(data.users[:50], data.items[:50]),
                          model.predict_indices(data.users[:50], data.items[:50]))
    # a file of the previous round: fitted with the global offset while ``auto`` meant that for a
    # Gaussian, and no resolved offsets in its meta — it must load with the global offset
    old = create("dlf", **{**NEURAL_FAST, "max_epochs": 2}, offsets="global").fit(data)
    old.offsets = "auto"
    extra = old._extra_meta
    old._extra_meta = lambda: {k: v for k, v in extra().items() if k != "offsets"}  # type: ignore[method-assign]
    old.save(tmp_path / "old.dlfm")
    reread = Recommender.load(tmp_path / "old.dlfm")
    assert reread.offsets_ == "global" and reread.scorer_.offsets is None
    assert np.array_equal(reread.predict_indices(data.users[:50], data.items[:50]),
                          old.predict_indices(data.users[:50], data.items[:50]))

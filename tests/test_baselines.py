"""Baselines against closed-form answers on tiny data, and the shared model contract."""

from __future__ import annotations

import numpy as np
import pytest

from dlfm.data.ratings import Ratings
from dlfm.data.splits import holdout
from dlfm.errors import ConfigError, UnknownIdError
from dlfm.evaluation.metrics import rmse
from dlfm.models import MODELS, create, parse_params
from dlfm.models.base import Recommender

CLASSIC = ["mean", "baseline", "mf", "pmf"]


def test_global_mean(tiny):
    model = create("mean").fit(tiny)
    assert model.predict("a", "z") == pytest.approx(27 / 8)


def test_baseline_one_sweep_matches_closed_form():
    r = Ratings.from_raw([1, 1, 2], [1, 2, 1], [5.0, 3.0, 4.0])
    model = create("baseline", reg_user=1.0, reg_item=2.0, n_epochs=1).fit(r)
    mu = 4.0
    b_i = np.array([(5 - mu + 4 - mu) / (2 + 2), (3 - mu) / (2 + 1)])
    b_u = np.array([((5 - mu - b_i[0]) + (3 - mu - b_i[1])) / (1 + 2), (4 - mu - b_i[0]) / (1 + 1)])
    assert np.allclose(model.item_bias_, b_i) and np.allclose(model.user_bias_, b_u)
    assert model.predict(2, 2) == pytest.approx(mu + b_u[1] + b_i[1])


def test_mf_recovers_exact_low_rank():
    rng = np.random.default_rng(0)
    p, q = rng.normal(size=(30, 2)), rng.normal(size=(20, 2))
    users, items = np.meshgrid(np.arange(30), np.arange(20), indexing="ij")
    r = Ratings.from_raw(users.ravel(), items.ravel(), (p @ q.T).ravel() + 3)
    model = create("mf", n_factors=2, reg=1e-6, n_epochs=30).fit(r)
    assert rmse(r.ratings, model.predict_indices(r.users, r.items)) < 1e-3


@pytest.mark.parametrize("name,limit", [("mean", 1.1), ("baseline", 0.75), ("mf", 0.6), ("pmf", 0.7)])
def test_expected_rmse_on_generated_low_rank(lowrank, name, limit):
    fold = holdout(lowrank, 0.2, seed=0)
    model = create(name).fit(fold.train)
    score = rmse(fold.test.ratings, model.predict_indices(fold.test.users, fold.test.items))
    assert score < limit
    if name != "mean":
        mean_score = rmse(fold.test.ratings, np.full(len(fold.test), fold.train.global_mean))
        assert score < mean_score


@pytest.mark.parametrize("name", CLASSIC)
def test_unknown_ids_fall_back_and_are_clipped(tiny, name):
    model = create(name).fit(tiny)
    value = model.predict("nobody", "x")
    lo, hi = tiny.scale
    assert lo <= value <= hi
    with pytest.raises(UnknownIdError):
        model.predict("nobody", "x", unknown="error")


@pytest.mark.parametrize("name", CLASSIC)
def test_predictions_clipped_to_scale(lowrank, name):
    model = create(name).fit(lowrank)
    p = model.predict_indices(lowrank.users, lowrank.items)
    assert p.min() >= lowrank.scale[0] and p.max() <= lowrank.scale[1]


@pytest.mark.parametrize("name", CLASSIC)
def test_save_load_keeps_predictions(tmp_path, lowrank, name):
    model = create(name).fit(lowrank)
    path = tmp_path / "m.dlfm"
    model.save(path)
    again = Recommender.load(path)
    assert type(again) is type(model) and again.get_params() == model.get_params()
    assert np.array_equal(again.predict_indices(lowrank.users[:100], lowrank.items[:100]),
                          model.predict_indices(lowrank.users[:100], lowrank.items[:100]))
    assert again.recommend(lowrank.raw_users()[0], 5) == model.recommend(lowrank.raw_users()[0], 5)


@pytest.mark.parametrize("name", ["baseline", "mf"])
def test_recommend_excludes_seen(lowrank, name):
    model = create(name).fit(lowrank)
    user = lowrank.raw_users()[0]
    seen = set(np.asarray(lowrank.raw_items())[np.asarray(lowrank.raw_users()) == user].tolist())
    top = model.recommend(user, 10)
    assert len(top) == 10 and not seen & {i for i, _ in top}
    scores = [s for _, s in top]
    assert scores == sorted(scores, reverse=True)
    with_seen = model.recommend(user, 200, exclude_seen=False)
    assert seen & {i for i, _ in with_seen}


@pytest.mark.parametrize("name", ["baseline", "mf"])
def test_new_user_fold_in(lowrank, name):
    model = create(name).fit(lowrank)
    items = lowrank.raw_items()[:3]
    high = model.predict_new_user({i: lowrank.scale[1] for i in items}, items)
    low = model.predict_new_user({i: lowrank.scale[0] for i in items}, items)
    assert np.all(high > low)
    top = model.recommend_new_user({items[0]: 5.0}, 5)
    assert items[0] not in [i for i, _ in top]


def test_each_hyperparameter_matters(lowrank):
    fold = holdout(lowrank, 0.2, seed=0)
    base = create("mf").fit(fold.train).predict_indices(fold.test.users, fold.test.items)
    for key, value in [("n_factors", 3), ("reg", 0.5), ("n_epochs", 2), ("seed", 7), ("bias_reg", 5.0)]:
        other = create("mf", **{key: value}).fit(fold.train).predict_indices(fold.test.users, fold.test.items)
        assert not np.allclose(base, other), key


def test_params_parsing_and_validation():
    assert parse_params("mf", ["n_factors=50", "reg=0.1", "biased=false"]) == {"n_factors": 50, "reg": 0.1, "biased": False}
    with pytest.raises(ConfigError, match="no parameter"):
        parse_params("mf", ["nope=1"])
    with pytest.raises(ConfigError, match="integer"):
        parse_params("mf", ["n_factors=many"])
    with pytest.raises(ConfigError):
        create("mf", n_factors=0).fit(Ratings.from_raw([1], [1], [1.0]))
    with pytest.raises(ConfigError, match="unknown model"):
        create("nope")
    assert {"mean", "baseline", "mf", "pmf"} <= set(MODELS)

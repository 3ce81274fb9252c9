"""Rating transforms (``fit(transform="log1p")``, ``--transform``) and the heavy-count warning."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from dlfm.cli.main import main
from dlfm.data.ratings import Ratings, Vocabulary
from dlfm.datasets import synthetic, write_ratings
from dlfm.errors import ConfigError
from dlfm.models import Recommender, create
from dlfm.models.transforms import HeavyCountsWarning, heavy_tailed_counts
from tests.conformance import NEURAL_FAST


def lognormal_counts(n_users: int = 100, n_items: int = 50, n: int = 4000, spread: float = 0.8,
                     seed: int = 0) -> Ratings:
    """Counts r = round(exp(2 + b_u + b_i + ε)), b ~ N(0, spread²), ε ~ N(0, 0.3²): log-normal,
    multiplicative effects, heavy-tailed (q99 ≈ 18 × the median at spread 0.8)."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(n_users * n_items, n, replace=False)
    users, items = pairs // n_items, pairs % n_items
    b_u, b_i = rng.normal(0, spread, n_users), rng.normal(0, spread, n_items)
    values = np.round(np.exp(2 + b_u[users] + b_i[items] + rng.normal(0, 0.3, n)))
    return Ratings(users, items, values, Vocabulary(np.arange(n_users)), Vocabulary(np.arange(n_items)),
                   (0.0, float(values.max())), name="lognormal-counts")


def split(ratings: Ratings, seed: int = 1) -> tuple[Ratings, Ratings]:
    test = np.random.default_rng(seed).random(len(ratings)) < 0.2

    def part(mask: np.ndarray) -> Ratings:
        return Ratings(ratings.users[mask], ratings.items[mask], ratings.ratings[mask], ratings.user_vocab,
                       ratings.item_vocab, ratings.scale, name=ratings.name)

    return part(~test), part(test)


def fit_quietly(model: Recommender, train: Ratings, **kwargs: object) -> Recommender:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeavyCountsWarning)
        return model.fit(train, **kwargs)


@pytest.fixture(scope="module")
def counts() -> Ratings:
    return lognormal_counts()


def test_predictions_are_in_the_original_scale(counts: Ratings) -> None:
    train, test = split(counts)
    model = create("baseline").fit(train, transform="log1p")
    assert model.transform_ == "log1p" and model.rating_scale_ == train.scale
    assert model.scale_ == pytest.approx(tuple(np.log1p(train.scale)))
    predicted = model.predict_indices(test.users, test.items)
    # the inverse of the model's own (transformed) prediction, clipped to the original scale
    inner = np.clip(model._predict_indices(test.users, test.items), *model.scale_)
    np.testing.assert_allclose(predicted, np.clip(np.expm1(inner), *train.scale))
    assert predicted.max() > 5 * np.log1p(train.scale[1])  # not on the log scale
    assert model.predict(0, 0) == pytest.approx(float(model.predict_indices(np.array([0]), np.array([0]))[0]))
    # score_indices: the same numbers before clipping, so the ranking reads them unchanged
    np.testing.assert_allclose(np.clip(model.score_indices(test.users, test.items), *train.scale), predicted)
    np.testing.assert_allclose(model.score_matrix(np.array([0, 1]), np.array([2, 3])).ravel(),
                               model.score_indices(np.array([0, 0, 1, 1]), np.array([2, 3, 2, 3])))


def test_log1p_lowers_the_log_scale_error_of_baseline_on_lognormal_counts(counts: Ratings) -> None:
    """A known answer: on log(1 + r) the data are additive with noise σ = 0.3 (plus rounding),
    so the transformed baseline's RMSE of log(1 + r) nears 0.3, while the raw one's cannot."""
    train, test = split(counts)

    def log_rmse(model: Recommender) -> float:
        predicted = model.predict_indices(test.users, test.items)
        return float(np.sqrt(np.mean((np.log1p(predicted) - np.log1p(test.ratings)) ** 2)))

    raw = log_rmse(fit_quietly(create("baseline"), train))
    logged = log_rmse(create("baseline").fit(train, transform="log1p"))
    assert logged < 0.45 < raw
    assert logged < 0.8 * raw


def test_inverse_in_recommend_new_users_and_mf_scores(counts: Ratings) -> None:
    train, _ = split(counts)
    model = create("baseline").fit(train, transform="log1p")
    top = model.recommend(0, 3)
    items = model.item_vocab_.lookup([item for item, _ in top])
    np.testing.assert_allclose([s for _, s in top], model.predict_indices(np.zeros(3, dtype=np.int64), items))
    batch = model.recommend_batch([0], 3)
    np.testing.assert_allclose(batch["score"], [s for _, s in top])
    # fold-in: the given ratings are transformed, the predictions inverted
    given = {0: 40.0, 1: 3.0, 2: 0.0}
    new = model.predict_new_user(given, [5, 6])
    idx = model.item_vocab_.lookup(list(given))
    b_u = np.sum(np.log1p(list(given.values())) - model.global_mean_ - model.item_bias_[idx]) / (model.reg_user + 3)
    np.testing.assert_allclose(new, np.expm1(model.global_mean_ + b_u + model.item_bias_[[5, 6]]))
    assert [s for _, s in model.recommend_new_user(given, 2)] == sorted(model.predict_new_user(
        given, model.item_vocab_.raw(np.setdiff1d(np.flatnonzero(train.item_counts > 0), idx))), reverse=True)[:2]
    with pytest.raises(ConfigError, match=r"outside the model's rating scale \[0, "):
        model.predict_new_user({0: -1.0}, [5])
    mf = fit_quietly(create("mf", n_factors=2, n_epochs=2, seed=0), train, transform="log1p")
    np.testing.assert_allclose(mf.score_matrix(np.array([0]), np.array([1, 2])).ravel(),
                               mf.score_indices(np.array([0, 0]), np.array([1, 2])))
    assert mf.predict_new_item({0: 10.0}, [1]).max() > np.log1p(train.scale[1])


def test_distributions_are_inverted(counts: Ratings) -> None:
    train, test = split(counts)
    model = create("dlf", hidden=8, latent=4, decoder_hidden=8, max_epochs=2, seed=0, verbose=False)
    model.fit(train, transform="log1p")
    assert model.transform_ == "log1p"
    users, items = test.users[:20], test.items[:20]
    dist = model.distribution_indices(users, items, n_samples=64)
    np.testing.assert_allclose(dist["mean"], model.predict_indices(users, items))
    lo, hi = train.scale
    assert dist["samples"].min() >= lo and dist["samples"].max() <= hi
    assert dist["samples"].max() > np.log1p(hi)  # draws in counts, not in log counts
    np.testing.assert_allclose(dist["std"], dist["samples"].std(axis=1))
    assert np.all(dist["q05"] <= dist["q50"]) and np.all(dist["q50"] <= dist["q95"])
    raw = model.predict_distribution(model.user_vocab_.raw(users), model.item_vocab_.raw(items), n_samples=64)
    np.testing.assert_allclose(raw["q50"], dist["q50"])
    assert model.predict_new_user({0: 30.0, 1: 2.0}, [3]).max() >= 0


def test_negative_ratings_and_other_likelihoods_are_rejected() -> None:
    ratings = synthetic(30, 20, 300, seed=0)  # Gaussian around 3.5, shifted below 0:
    ratings = ratings.with_ratings(ratings.ratings - 4.0, scale=(ratings.scale[0] - 4, ratings.scale[1] - 4))
    smallest = float(ratings.ratings.min())
    with pytest.raises(ConfigError, match=rf"transform log1p needs ratings >= 0 .*smallest rating .* is {smallest:g}"):
        create("baseline").fit(ratings, transform="log1p")
    with pytest.raises(ConfigError, match="unknown transform 'sqrt'"):
        create("baseline").fit(lognormal_counts(20, 10, 100), transform="sqrt")
    with pytest.raises(ConfigError, match="transform log1p is for a Gaussian model; the poisson likelihood"):
        create("dlf", likelihood="poisson").fit(lognormal_counts(20, 10, 100), transform="log1p")


def test_save_load_keeps_the_transform(counts: Ratings, tmp_path) -> None:
    train, test = split(counts)
    model = create("baseline").fit(train, transform="log1p")
    model.save(tmp_path / "m.dlfm")
    loaded = Recommender.load(tmp_path / "m.dlfm")
    assert loaded.transform_ == "log1p" and loaded.rating_scale_ == model.rating_scale_
    np.testing.assert_array_equal(loaded.predict_indices(test.users, test.items),
                                  model.predict_indices(test.users, test.items))
    assert loaded.card_["transform"] == "log1p"


def test_a_file_without_the_transform_loads_as_none(tmp_path) -> None:
    from dlfm.persistence import load_payload, save_payload

    ratings = synthetic(30, 20, 300, seed=0)
    create("baseline").fit(ratings).save(tmp_path / "m.dlfm")
    meta, tensors = load_payload(tmp_path / "m.dlfm")
    assert meta.pop("transform") is None
    meta.pop("rating_scale")
    save_payload(tmp_path / "old.dlfm", meta, tensors)
    old = Recommender.load(tmp_path / "old.dlfm")
    assert old.transform_ is None and old.rating_scale_ == tuple(ratings.scale)
    assert old.predict(0, 0) == pytest.approx(create("baseline").fit(ratings).predict(0, 0))


def test_the_rule_on_counts_stars_and_likes() -> None:
    assert heavy_tailed_counts(lognormal_counts(spread=1.2).ratings) is not None
    assert heavy_tailed_counts(lognormal_counts(spread=0.3).ratings) is None  # counts, but no heavy tail
    rng = np.random.default_rng(0)
    assert heavy_tailed_counts(rng.integers(1, 6, 10_000).astype(float)) is None  # 1-5 stars
    assert heavy_tailed_counts(rng.integers(1, 11, 10_000) / 2.0) is None  # 0.5-5 half stars
    assert heavy_tailed_counts((rng.random(10_000) < 0.1).astype(float)) is None  # 0/1 likes
    assert heavy_tailed_counts(np.exp(rng.normal(0, 3, 10_000))) is None  # heavy, but not counts


def test_the_warning_fires_on_heavy_counts_only() -> None:
    heavy = lognormal_counts(spread=1.2)
    with pytest.warns(HeavyCountsWarning, match="lognormal-counts looks like heavy-tailed counts.*--transform log1p"):
        create("baseline").fit(heavy)
    stars = synthetic(80, 40, 1500, seed=0)
    stars = stars.with_ratings(np.clip(np.round(stars.ratings), 1, 5), scale=(1.0, 5.0))  # ML-100k-like 1-5 stars
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create("baseline").fit(stars)
        create("baseline").fit(heavy, transform="log1p")  # transformed: no warning
        create("popular").fit(heavy)  # ranks by counts
    with pytest.warns(HeavyCountsWarning, match="--likelihood poisson"):
        create("dlf", **{**NEURAL_FAST, "max_epochs": 1}).fit(heavy)  # a Gaussian dlf: warned, like baseline


def test_cli_train_and_cv_with_transform(tmp_path, capsys) -> None:
    path = tmp_path / "counts.csv"
    write_ratings(lognormal_counts(spread=1.2), path)
    model_path, report = tmp_path / "m.dlfm", tmp_path / "train.json"
    assert main(["train", str(path), "--model", "baseline", "--transform", "log1p", "-o", str(model_path),
                 "--json", str(report)]) == 0
    assert json.loads(report.read_text())["transform"] == "log1p"
    assert Recommender.load(model_path).transform_ == "log1p"
    assert "warning" not in capsys.readouterr().err

    assert main(["train", str(path), "--model", "baseline", "-o", str(tmp_path / "raw.dlfm")]) == 0
    err = capsys.readouterr().err
    assert err.count("dlfm: warning: ") == 1 and "--transform log1p" in err and "Traceback" not in err

    cv_json = tmp_path / "cv.json"
    assert main(["cv", str(path), "--model", "baseline", "--k", "2", "--transform", "log1p", "--json", str(cv_json)]) == 0
    result = json.loads(cv_json.read_text())
    assert result["transform"] == "log1p"
    # scored in the original scale: the RMSE is in counts (the log-scale error is below 1)
    assert result["mean"]["rmse"] > 5
    assert main(["cv", str(path), "--model", "baseline", "--k", "2", "--transform", "log1p", "--tune", "2"]) == 2
    assert "--transform does not combine with --tune" in capsys.readouterr().err

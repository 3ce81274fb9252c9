"""The variational model: shares dlf's machinery, learns, and gives honest distributions."""

from __future__ import annotations

import numpy as np
import pytest

from dlfm.data.splits import holdout
from dlfm.datasets import synthetic
from dlfm.evaluation.cv import evaluate
from dlfm.evaluation.metrics import rmse
from dlfm.models import create
from dlfm.models.base import Recommender
from dlfm.models.neural import NeuralFactorModel

FAST = dict(hidden=32, latent=8, decoder_hidden=16, max_epochs=12, batch_size=256, verbose=False, ema_decay=0.0,
            lr=3e-3)


@pytest.fixture(scope="module")
def fold():
    return holdout(synthetic(150, 100, 5000, rank=3, noise=0.5, seed=3), 0.2, seed=0)


@pytest.fixture(scope="module")
def fitted(fold):
    return create("vdlf", **FAST).fit(fold.train)


def test_shares_the_dlf_machinery():
    from dlfm.models.dlf import DeepLatentFactorModel
    from dlfm.models.vdlf import VariationalDeepLatentFactorModel

    assert issubclass(VariationalDeepLatentFactorModel, NeuralFactorModel)
    assert issubclass(DeepLatentFactorModel, NeuralFactorModel)
    assert set(DeepLatentFactorModel.param_names()) < set(VariationalDeepLatentFactorModel.param_names())


def test_learns_and_does_not_collapse(fitted, fold):
    pred = fitted.predict_indices(fold.test.users, fold.test.items)
    mean_rmse = rmse(fold.test.ratings, np.full(len(fold.test), fold.train.global_mean))
    assert rmse(fold.test.ratings, pred) < mean_rmse - 0.03
    assert np.std(pred) > 0.1  # not the global mean everywhere


def test_distribution_and_extra_metrics(fitted, fold):
    users, items = fold.test.raw_users()[:30], fold.test.raw_items()[:30]
    dist = fitted.predict_distribution(users, items, n_samples=500)
    assert dist["samples"].shape == (30, 500)
    assert np.all(dist["q05"] <= dist["q25"]) and np.all(dist["q75"] <= dist["q95"]) and np.all(dist["std"] > 0)
    record = evaluate(fitted, fold.test)
    assert {"nll", "coverage50", "coverage90"} <= set(record)
    # calibrated on held-out ratings: the intervals cover about what they say (measured 0.887
    # and 0.487 on these 1,000 test ratings; ±0.05 is well over three binomial std errors)
    assert abs(record["coverage90"] - 0.90) < 0.05 and abs(record["coverage50"] - 0.50) < 0.06


def test_save_load_identical(tmp_path, fitted, fold):
    fitted.save(tmp_path / "v.dlfm")
    again = Recommender.load(tmp_path / "v.dlfm")
    a = again.predict_indices(fold.test.users[:50], fold.test.items[:50])
    b = fitted.predict_indices(fold.test.users[:50], fold.test.items[:50])
    assert np.array_equal(a, b)


@pytest.mark.parametrize("noise", ["per_rating", "fixed"])
def test_noise_modes_and_options(fold, noise):
    model = create("vdlf", **{**FAST, "max_epochs": 2}, noise_mode=noise, kl_warmup=1, free_bits=0.01, elbo_samples=2)
    model.fit(fold.train)
    assert np.all(np.isfinite(model.predict_indices(fold.test.users[:10], fold.test.items[:10])))


def test_new_user(fitted, fold):
    items = fold.train.raw_items()[:4]
    out = fitted.predict_new_user({i: 5.0 for i in items}, fold.train.raw_items()[4:10])
    assert out.shape == (6,) and np.all(np.isfinite(out))


def test_cli_predict_samples_prints_mean_std_and_interval(tmp_path, fitted, fold, capsys):
    import json

    from dlfm.cli.main import main

    path = tmp_path / "v.dlfm"
    fitted.save(path)
    user, item = fold.train.raw_users()[0], fold.train.raw_items()[0]
    code = main(["predict", str(path), "--user", str(user), "--item", str(item), "--samples", "500",
                 "--json", str(tmp_path / "p.json")])
    out = json.loads((tmp_path / "p.json").read_text())[0]
    assert code == 0 and out["q05"] <= out["prediction"] <= out["q95"] and out["std"] > 0
    assert "q95" in capsys.readouterr().out


def test_distribution_mean_is_the_point_prediction(fitted, fold):
    """Asking for samples does not move the prediction: the distribution's mean is what
    ``predict`` returns (the draws' spread gives std and the quantiles)."""
    users, items = fold.test.raw_users()[:40], fold.test.raw_items()[:40]
    dist = fitted.predict_distribution(users, items, n_samples=300)
    assert np.array_equal(dist["mean"], fitted.predict(users, items))
    assert np.mean((dist["q05"] <= dist["mean"]) & (dist["mean"] <= dist["q95"])) > 0.95

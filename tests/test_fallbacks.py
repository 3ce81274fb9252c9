"""Fallbacks of the neural models: a user or item without a training rating is predicted from
the biases (μ + b_u + b_i, the unknown side's bias 0), like every other dlfm model."""

from __future__ import annotations

import numpy as np
import pytest

from dlfm.datasets import synthetic
from dlfm.models import create
from dlfm.models.baselines import als_biases


@pytest.fixture(scope="module")
def fitted():
    from tests.test_dlf import FAST

    data = synthetic(60, 40, 1200, rank=2, noise=0.3, seed=5)
    return data, create("dlf", **{**FAST, "max_epochs": 2, "mc_samples": 2}).fit(data)


def test_unknown_item_is_the_users_baseline(fitted):
    data, model = fitted
    b_u, b_i = als_biases(data, 15.0, 10.0, 10)
    users = data.raw_users()[:6]
    got = model.predict(users, ["ghost"] * 6)
    want = np.clip(data.global_mean + b_u[data.user_vocab.lookup(users)], *data.scale)
    np.testing.assert_allclose(got, want, atol=1e-9)
    item = data.raw_items()[0]
    got = model.predict("nobody", item)
    assert got == pytest.approx(float(np.clip(data.global_mean + b_i[data.item_vocab.index(item)], *data.scale)))


def test_known_pairs_keep_the_networks_prediction(fitted):
    data, model = fitted
    u, i = data.users[:50], data.items[:50]
    np.testing.assert_allclose(model.predict_indices(u, i), np.clip(model._mean_indices(model.scorer_, u, i), *data.scale))

"""A prediction is a function of (model, user, item): the same numbers for a pair asked alone,
inside any batch, in any order, next to unknown ids and duplicates — for every model and every
``predict*`` call."""

from __future__ import annotations

import numpy as np
import pytest

from dlfm.datasets import synthetic
from dlfm.models import MODELS, create, model_class

NEURAL = dict(hidden=12, latent=4, decoder_hidden=6, max_epochs=2, verbose=False, device="cpu", mc_samples=3)
SMALL = {"mf": dict(n_factors=4, n_samples=5), "pmf": dict(n_factors=4, n_samples=5),
         "dlf": NEURAL, "vdlf": {**NEURAL, "predict_samples": 4}}


@pytest.fixture(scope="module")
def data():
    return synthetic(60, 40, 900, rank=2, noise=0.3, seed=3)


def fitted(name, data):
    model_class(name)  # registers the neural models
    return create(name, **SMALL.get(name, {})).fit(data)


COVERED = ["mean", "baseline", "mf", "pmf", "dlf", "vdlf"]


@pytest.fixture(scope="module", params=COVERED)
def model(request, data):
    return fitted(request.param, data)


def test_every_model_is_covered():
    model_class("dlf")
    assert set(MODELS) == set(COVERED), "a registered model is missing from this suite"


def pairs(data):
    users = list(data.raw_users()[:6]) + ["nobody"]
    items = list(data.raw_items()[10:16]) + [data.raw_items()[0]]
    return users, items


def test_predict_does_not_depend_on_the_request(model, data):
    users, items = pairs(data)
    together = model.predict(users, items)
    alone = np.array([model.predict([u], [i])[0] for u, i in zip(users, items)])
    backwards = model.predict(users[::-1], items[::-1])[::-1]
    crowded = model.predict(users + users[:3] + list(data.raw_users()[20:40]),
                            items + items[:3] + list(data.raw_items()[:20]))[: len(users)]
    for other in (alone, backwards, crowded):
        assert np.array_equal(together, other)


def test_distribution_does_not_depend_on_the_request(model, data):
    if not hasattr(model, "predict_distribution"):
        pytest.skip(f"{model.name} has no predictive distribution")
    users, items = pairs(data)
    together = model.predict_distribution(users, items, n_samples=40)
    for k, (u, i) in enumerate(zip(users, items)):
        alone = model.predict_distribution([u], [i], n_samples=40)
        for key in ("samples", "mean", "std", "q05", "q95"):
            assert np.array_equal(alone[key][0], together[key][k]), key
    backwards = model.predict_distribution(users[::-1], items[::-1], n_samples=40)
    assert np.array_equal(backwards["samples"][::-1], together["samples"])
    # the point prediction is the distribution's mean: asking for samples does not move it
    assert np.array_equal(together["mean"], model.predict(users, items))


def test_new_user_does_not_depend_on_the_request(model, data):
    if not model.supports_new_users:
        pytest.skip(f"{model.name} does not fold in new users")
    ratings = dict(zip(data.raw_items()[:4], [5.0, 3.0, 4.0, 1.0]))
    targets = list(data.raw_items()[10:20])
    together = model.predict_new_user(ratings, targets)
    alone = np.concatenate([model.predict_new_user(ratings, [t]) for t in targets])
    assert np.array_equal(together, alone)
    assert np.array_equal(model.predict_new_user(ratings, targets[::-1])[::-1], together)

"""The predictive σ is calibrated on ratings the encoders did not read.

The planted case: every user has only six ratings, each its user's level plus unit noise. An
encoder that reads a validation rating r_ij (in row i and column j) moves its prediction
towards r_ij, so a σ estimated with the validation ratings in the encoders' input comes out
too small. The fitted σ must instead equal the validation RMSE with the encoders reading the
fitting part only.
"""

from __future__ import annotations

import numpy as np
import pytest

from dlfm.data.ratings import Ratings
from dlfm.data.splits import validation_split
from dlfm.models import create
from dlfm.training.batching import Incidence

SMALL = dict(hidden=16, latent=4, decoder_hidden=8, max_epochs=20, validation_ratio=0.25, verbose=False,
             device="cpu", mc_samples=0, seed=0)


@pytest.fixture(scope="module")
def short_rows() -> Ratings:
    rng = np.random.default_rng(0)
    n_users, n_items, per_user = 300, 60, 6
    level, item_bias = rng.normal(0, 1.0, n_users), rng.normal(0, 0.5, n_items)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    ratings = 3 + level[users] + item_bias[items] + rng.normal(0, 1.0, len(users))
    return Ratings.from_raw(users, items, ratings, scale=(-10.0, 20.0))


def sigma_reading(model, data: Ratings, validation: Ratings) -> float:
    """The model's σ estimate on ``validation`` with its encoders (and its per-row offsets, if
    any) reading ``data``."""
    scorer = model.make_scorer(model.network_, model.likelihood_, Incidence(data, model.center_), model.device_,
                               model.fit_offsets(data, model.likelihood_))
    return model.estimate_noise(scorer, validation)


@pytest.mark.parametrize("name", ["dlf", "vdlf"])
def test_sigma_is_calibrated_on_held_out_ratings(short_rows, name):
    model = create(name, **SMALL).fit(short_rows)
    fit_part, validation = validation_split(short_rows, SMALL["validation_ratio"], seed=SMALL["seed"])
    fitted = model.noise_std_
    held_out = sigma_reading(model, fit_part, validation)
    leaky = sigma_reading(model, short_rows, validation)
    assert fitted == pytest.approx(held_out, rel=1e-9)
    if name == "dlf":  # the planted case separates the two estimates
        assert leaky < held_out - 0.02

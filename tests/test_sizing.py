"""Regularisation scaled to the data (dlfm.training.sizing): known answers, and the trainer,
the scorer and the model file using the scaled values."""

from __future__ import annotations

import numpy as np
import pytest

from dlfm.datasets import synthetic
from dlfm.models import create
from dlfm.models.base import Recommender
from dlfm.training import sizing
from dlfm.training.sizing import REFERENCE_RATINGS, Regularisation, scaled_dropout, scaled_weight_decay
from dlfm.training.trainer import Trainer
from tests.conformance import NEURAL_FAST


def test_weight_decay_is_as_given_up_to_the_reference_and_falls_like_one_over_n_beyond():
    assert scaled_weight_decay(0.5, 80_000) == 0.5
    assert scaled_weight_decay(0.5, REFERENCE_RATINGS) == 0.5
    assert scaled_weight_decay(0.5, 1_000_000) == pytest.approx(0.05)
    assert scaled_weight_decay(0.5, 4_000_000) == pytest.approx(0.0125)
    assert scaled_weight_decay(0.0, 4_000_000) == 0.0
    assert scaled_weight_decay(0.3, 2_000, reference=1_000) == pytest.approx(0.15)


def test_dropout_odds_shrink_by_the_ratio_to_the_power(monkeypatch):
    assert scaled_dropout(0.5, 80_000) == 0.5
    # p = 0.5: odds 1 → ρ^power; p_n = odds / (1 + odds)
    for power in (1.0, 0.5):
        monkeypatch.setattr(sizing, "DROPOUT_POWER", power)
        rho = REFERENCE_RATINGS / 1_000_000
        assert scaled_dropout(0.5, 1_000_000) == pytest.approx(rho ** power / (1 + rho ** power))
        p = scaled_dropout(0.2, 4_000_000)
        assert p / (1 - p) == pytest.approx(0.25 * (REFERENCE_RATINGS / 4_000_000) ** power)
    assert scaled_dropout(0.0, 10**7) == 0.0 and scaled_dropout(1.0, 10**7) == 1.0


def test_trainer_uses_the_scaled_values_everywhere(monkeypatch):
    data = synthetic(80, 60, 1500, seed=0)
    model = create("dlf", **{**NEURAL_FAST, "max_epochs": 1}, weight_decay=0.4, dropout=0.5, input_dropout=0.5)
    trainer = Trainer(model, data)  # 1,500 ratings: under the reference, nothing changes
    assert trainer.regularisation == Regularisation(0.4, 0.5, 0.5)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.4
    monkeypatch.setattr(sizing, "REFERENCE_RATINGS", 1_000)
    trainer = Trainer(model, data)
    expected = Regularisation.for_size(0.4, 0.5, 0.5, 1500)
    assert trainer.regularisation == expected
    assert expected.weight_decay == pytest.approx(0.4 * 1000 / 1500) and expected.dropout < 0.5
    assert trainer.optimizer.param_groups[0]["weight_decay"] == pytest.approx(expected.weight_decay)
    assert trainer.sampler.input_keep == pytest.approx(1 - expected.input_dropout)
    assert trainer.network.user_encoder.dropout.p == pytest.approx(expected.dropout)
    assert trainer.fitting_scorer().input_dropout == pytest.approx(expected.input_dropout)


def test_a_fitted_model_predicts_and_saves_with_its_scaled_values(monkeypatch, tmp_path):
    monkeypatch.setattr(sizing, "REFERENCE_RATINGS", 1_000)
    data = synthetic(80, 60, 1500, seed=0)
    model = create("dlf", **{**NEURAL_FAST, "max_epochs": 1, "mc_samples": 4}).fit(data)
    expected = model.regularisation(1500)
    assert model.regularisation_ == expected and model.scorer_.input_dropout == pytest.approx(expected.input_dropout)
    model.save(tmp_path / "m.dlfm")
    monkeypatch.setattr(sizing, "REFERENCE_RATINGS", 100_000)  # the file, not today's rule, decides
    loaded = Recommender.load(tmp_path / "m.dlfm")
    assert loaded.regularisation_ == expected
    assert np.array_equal(loaded.predict_indices(data.users[:30], data.items[:30]),
                          model.predict_indices(data.users[:30], data.items[:30]))

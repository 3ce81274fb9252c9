"""Regularisation scaled to the data (dlfm.training.sizing): known answers, and the trainer,
the scorer and the model file using the scaled values."""

from __future__ import annotations

import numpy as np
import pytest

from dlfm.datasets import synthetic
from dlfm.models import create
from dlfm.models.base import Recommender
from dlfm.training import sizing
from dlfm.training.batching import block_groups
from dlfm.training.sizing import REFERENCE_RATINGS, Regularisation, lr_ratio, scaled_dropout, size_ratio
from dlfm.training.trainer import Trainer
from tests.conformance import NEURAL_FAST


def test_the_ratio_is_the_reference_steps_per_epoch_over_the_data_s():
    # block grid: round(√(n / 2048)) groups a side, at most 16; an epoch is groups² steps
    assert block_groups(100_000, 2048, 16) == 7 and block_groups(76_000, 2048, 16) == 6
    assert block_groups(1_000_000, 2048, 16) == 16 == block_groups(16_000_000, 2048, 16)
    assert size_ratio(76_000, 2048, 16) == 1.0  # ML-100k's folds: nothing changes
    assert size_ratio(REFERENCE_RATINGS, 2048, 16) == 1.0
    assert size_ratio(225_000, 2048, 16) == pytest.approx(49 / 100)  # 10 groups
    assert size_ratio(1_000_000, 2048, 16) == pytest.approx(49 / 256)
    assert size_ratio(16_000_000, 2048, 16) == pytest.approx(49 / 256)  # the blocks grow, not the steps
    assert size_ratio(1_000_000, 2048, 16, reference=1_000_000) == 1.0


def test_weight_decay_times_the_ratio_and_dropout_odds_times_its_power(monkeypatch):
    reg = Regularisation.scaled(0.5, 0.5, 0.2, 0.25)
    assert reg.weight_decay == pytest.approx(0.125)
    assert reg.dropout == pytest.approx(0.5 / 1.5)  # odds 1 × √0.25 = 0.5
    assert reg.input_dropout / (1 - reg.input_dropout) == pytest.approx(0.25 * 0.5)
    assert Regularisation.scaled(0.5, 0.5, 0.5, 1.0) == Regularisation(0.5, 0.5, 0.5)
    monkeypatch.setattr(sizing, "DROPOUT_POWER", 1.0)
    assert scaled_dropout(0.5, 0.25) == pytest.approx(0.2)
    assert scaled_dropout(0.0, 0.01) == 0.0 and scaled_dropout(1.0, 0.01) == 1.0


def test_trainer_uses_the_scaled_values_everywhere(monkeypatch):
    data = synthetic(80, 60, 1500, seed=0)
    model = create("dlf", **{**NEURAL_FAST, "max_epochs": 1}, weight_decay=0.4, dropout=0.5, input_dropout=0.5)
    trainer = Trainer(model, data)  # 1,500 ratings: under the reference, nothing changes
    assert trainer.regularisation == Regularisation(0.4, 0.5, 0.5)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.4
    monkeypatch.setattr(sizing, "REFERENCE_RATINGS", 1_000)
    trainer = Trainer(model, data)
    expected = model.regularisation(len(trainer.fit_part))
    assert trainer.regularisation == expected
    # 1,425 fitting ratings at batch_size 64: 5 groups (25 steps) against 4 at 1,000 (16 steps)
    assert expected.weight_decay == pytest.approx(0.4 * 16 / 25) and expected.dropout < 0.5
    assert trainer.optimizer.param_groups[0]["weight_decay"] == pytest.approx(expected.weight_decay)
    assert trainer.sampler.input_keep == pytest.approx(1 - expected.input_dropout)
    assert trainer.network.user_encoder.dropout.p == pytest.approx(expected.dropout)
    assert trainer.fitting_scorer().input_dropout == pytest.approx(expected.input_dropout)


def test_a_fitted_model_predicts_and_saves_with_its_scaled_values(monkeypatch, tmp_path):
    monkeypatch.setattr(sizing, "REFERENCE_RATINGS", 1_000)
    data = synthetic(80, 60, 1500, seed=0)
    model = create("dlf", **{**NEURAL_FAST, "max_epochs": 1, "mc_samples": 4}).fit(data)
    expected = model.regularisation(1425)
    assert expected.weight_decay < model.weight_decay
    assert model.regularisation_ == expected and model.scorer_.input_dropout == pytest.approx(expected.input_dropout)
    model.save(tmp_path / "m.dlfm")
    monkeypatch.setattr(sizing, "REFERENCE_RATINGS", 100_000)  # the file, not today's rule, decides
    loaded = Recommender.load(tmp_path / "m.dlfm")
    assert loaded.regularisation_ == expected
    assert np.array_equal(loaded.predict_indices(data.users[:30], data.items[:30]),
                          model.predict_indices(data.users[:30], data.items[:30]))


def test_at_ratio_one_the_settings_come_back_bit_for_bit_and_size_scaled_false_keeps_them():
    for p in (0.6, 0.07, 0.33, 0.5):
        assert Regularisation.scaled(0.3, p, p, 1.0) == Regularisation(0.3, p, p)
        assert scaled_dropout(p, 1.0) == p
    model = create("dlf", size_scaled=False)
    assert model.regularisation(10**7) == Regularisation(0.5, 0.5, 0.5)
    assert create("dlf").regularisation(10**7).weight_decay < 0.5


def test_the_learning_rate_falls_with_the_blocks_once_the_grid_is_capped():
    # under the cap a step holds about batch_size ratings: lr as given (ML-100k's folds too)
    for n in (76_000, REFERENCE_RATINGS, 225_000, 480_000):
        assert block_groups(n, 2048, 16) < 16 and lr_ratio(n, 2048, 16) == 1.0
    # capped at 16 × 16 = 256 steps: a step holds n / 256 ratings, and lr × √(2048 / (n / 256))
    assert lr_ratio(557_568, 2048, 16) == 1.0  # round(√(n / 2048)) = round(16.5) = 16: not capped yet
    assert lr_ratio(557_569, 2048, 16) == pytest.approx((2048 * 256 / 557_569) ** 0.5)
    assert lr_ratio(4 * 2048 * 256, 2048, 16) == pytest.approx(0.5)
    assert lr_ratio(3_420_000, 2048, 16) == pytest.approx((2048 * 256 / 3_420_000) ** 0.5)
    assert lr_ratio(16 * 2048 * 256, 2048, 16) == pytest.approx(0.25)
    # the same grid gives the same rate whatever max_groups allows (4 × 4 blocks of 76,000 at 4096)
    assert block_groups(76_000, 4096, 100) == 4 and lr_ratio(76_000, 4096, 4) == 1.0 == lr_ratio(76_000, 4096, 5)
    for n in range(76_000, 100_001, 1_000):  # ML-100k's fitting sizes: no rate changes at any uncapped grid
        for batch in (256, 512, 1024, 2048, 4096):
            natural = block_groups(n, batch, 10**9)
            assert lr_ratio(n, batch, natural) == 1.0 == lr_ratio(n, batch, natural + 3)
    model = create("dlf", lr=0.004)
    assert model.learning_rate(76_000) == 0.004 and model.learning_rate(None) == 0.004
    assert model.learning_rate(4 * 2048 * 256) == pytest.approx(0.002)  # 2.1M: 32 groups uncapped
    assert create("dlf", lr=0.004, size_scaled=False).learning_rate(10**7) == 0.004


def test_the_trainer_steps_with_the_scaled_learning_rate():
    data = synthetic(80, 60, 1500, seed=0)
    model = create("dlf", **{**NEURAL_FAST, "max_epochs": 1, "lr": 0.01})
    trainer = Trainer(model, data)  # 1,425 fitting ratings at batch_size 64: 5 groups, uncapped
    assert trainer.lr == 0.01 and trainer.optimizer.param_groups[0]["lr"] == 0.01
    capped = create("dlf", **{**NEURAL_FAST, "max_epochs": 1, "max_groups": 2, "lr": 0.01})
    trainer = Trainer(capped, data)  # 2 × 2 blocks of about 356 ratings against batch_size 64
    expected = 0.01 * (64 * 4 / len(trainer.fit_part)) ** 0.5
    assert trainer.lr == pytest.approx(expected) and trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected)


def test_a_files_regularisation_is_checked():
    assert Regularisation.from_json({"weight_decay": 0.1, "dropout": 0.3, "input_dropout": 0.2}) == \
        Regularisation(0.1, 0.3, 0.2)
    for bad in ({"weight_decay": 0.1, "dropout": 0.3}, {"weight_decay": -1, "dropout": 0.3, "input_dropout": 0.2},
                {"weight_decay": 0.1, "dropout": 1.0, "input_dropout": 0.2}, "x",
                {"weight_decay": float("nan"), "dropout": 0.3, "input_dropout": 0.2}):
        with pytest.raises(ValueError, match="regularisation"):
            Regularisation.from_json(bad)

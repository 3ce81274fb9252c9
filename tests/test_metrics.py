"""Metrics against hand-computed values and empty input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlfm.evaluation import metrics as m


def test_rmse_mae_by_hand():
    assert m.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert m.mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)


def test_empty_is_nan_and_mismatch_raises():
    assert math.isnan(m.rmse([], [])) and math.isnan(m.mae([], []))
    with pytest.raises(ValueError):
        m.rmse([1], [1, 2])


def test_ranking_metrics_by_hand():
    ranked, relevant = [3, 1, 7, 5], [1, 5, 9]
    assert m.precision_at_k(ranked, relevant, 2) == 0.5
    assert m.recall_at_k(ranked, relevant, 4) == pytest.approx(2 / 3)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m.ndcg_at_k(ranked, relevant, 4) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal)
    assert m.average_precision_at_k(ranked, relevant, 4) == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert math.isnan(m.recall_at_k(ranked, [], 3))


def test_ranking_metrics_average_over_users():
    out = m.ranking_metrics({0: [1, 2], 1: [3, 4]}, {0: [1], 1: [9], 2: []}, 2)
    assert out["precision@2"] == pytest.approx(0.25)


def test_auc_and_log_loss():
    assert m.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert m.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert m.log_loss([1, 0], [0.8, 0.2]) == pytest.approx(-math.log(0.8))


def test_coverage():
    assert m.interval_coverage([1, 2, 3, 4], [0, 2.5, 2, 5], [2, 3, 4, 6]) == 0.5

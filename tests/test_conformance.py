"""Every registered model through the conformance suite of :mod:`tests.conformance`.

A new model gets every check by listing itself here: a class naming it, a small configuration,
a known-answer case and its measured ``expected_rmse``. ``test_every_registered_model_is_listed``
fails until it does.

The expected RMSEs and the known answers' RMSEs were measured with the configurations below,
on one PyTorch thread; on :func:`~tests.conformance.conformance_fold` the global mean scores
0.8049.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from dlfm.models import MODELS, model_class
from tests.conformance import (NEURAL_FAST, ModelConformance, checkerboard, planted_biases, planted_low_rank)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def conformance_classes() -> list[type[ModelConformance]]:
    """The conformance classes of this module, one per model."""
    return [cls for cls in globals().values()
            if isinstance(cls, type) and issubclass(cls, ModelConformance) and hasattr(cls, "name")]


class TestMean(ModelConformance):
    name = "mean"
    expected_rmse, rmse_tol = 0.8049, 0.001

    def check_known_answer(self) -> None:
        """The training mean, exactly, for every pair known or not."""
        data = planted_biases()
        model = self.make().fit(data.train)
        out = model.predict_indices(np.r_[data.test.users, -1], np.r_[data.test.items, -1])
        np.testing.assert_allclose(out, data.train.ratings.mean(), rtol=0, atol=1e-12)


class TestBaseline(ModelConformance):
    """r = μ + b_u + b_i exactly: unpenalized ALS recovers the held-out pairs (measured 3e-16)."""

    name = "baseline"
    expected_rmse, rmse_tol = 0.7018, 0.002
    planted = staticmethod(planted_biases)
    planted_params = dict(reg_user=0.0, reg_item=0.0, n_epochs=50)
    planted_rmse = 1e-6


class TestPopular(TestBaseline):
    """``popular`` predicts ratings as ``baseline`` does (it ranks by popularity instead), so
    its known answer and expected RMSE are the baseline's."""

    name = "popular"


class TestMF(ModelConformance):
    """r = μ + b_u + b_i + p·q of rank 2, no noise: ALS and the Gibbs sweeps recover it
    (measured 0.018; the global mean 0.57)."""

    name = "mf"
    params = dict(n_factors=2, gibbs_sweeps=5)
    expected_rmse, rmse_tol = 0.3939, 0.002
    planted = staticmethod(partial(planted_low_rank, biased=True))
    planted_params = dict(reg=0.01)
    planted_rmse = 0.05


class TestPMF(ModelConformance):
    """r = μ + p·q of rank 2, no noise and no biases: the MAP estimate recovers it (measured
    0.030; the global mean 0.44)."""

    name = "pmf"
    params = dict(n_factors=2, gibbs_sweeps=5)
    expected_rmse, rmse_tol = 0.6635, 0.002
    planted = staticmethod(partial(planted_low_rank, biased=False))
    planted_params = dict(reg=0.01, gibbs_sweeps=0, n_epochs=30)
    planted_rmse = 0.06


class NeuralConformance(ModelConformance):
    """dlf and vdlf: a checkerboard they must learn far better than the global mean (which errs
    by 1.99), and the fallback their documentation gives (an empty row's code), which has no
    closed form."""

    planted = staticmethod(checkerboard)

    def expected_fallback(self, model, users, items):
        return None


class TestDLF(NeuralConformance):
    name = "dlf"
    params = NEURAL_FAST
    expected_rmse, rmse_tol = 0.7391, 0.02
    planted_rmse = 0.8  # measured 0.59


class TestVDLF(NeuralConformance):
    name = "vdlf"
    params = dict(NEURAL_FAST, predict_samples=4)
    expected_rmse, rmse_tol = 0.7068, 0.02
    planted_rmse = 0.3  # measured 0.05


def test_every_registered_model_is_listed() -> None:
    model_class("mean")  # imports the modules that register the neural models
    listed = [cls.name for cls in conformance_classes()]
    assert sorted(listed) == sorted(MODELS), "add a conformance class for each registered model"


@pytest.mark.parametrize("cls", conformance_classes(), ids=lambda cls: cls.__name__)
def test_known_failures_name_real_checks(cls: type[ModelConformance]) -> None:
    """A stale entry of ``known_failures`` would mark nothing: each names a check and, for a
    parametrised one, one of its parameters."""
    for test_id in cls.known_failures:
        name, _, param = test_id.partition("[")
        assert name.startswith("test_") and callable(getattr(cls, name, None)), test_id
        if param:
            assert param.rstrip("]") in cls().predict_methods(), test_id

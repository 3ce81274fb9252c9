"""vdlf's objective: the KL terms paid once per user and item (KL_u / n_i + KL_v / m_j), the KL
weight β, free bits, the linear KL warm-up, and the three noise modes (fixed, global,
per_rating) on data whose noise is planted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from dlfm.data.ratings import Ratings
from dlfm.datasets import synthetic
from dlfm.models import create
from dlfm.training.trainer import StepContext, seeded
from dlfm.models.vdlf import VariationalDeepLatentFactorModel, gaussian_kl
from tests.conformance import NEURAL_FAST, conformance_fold, in_vocabularies

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def skewed() -> Ratings:
    """10 users with about 30 ratings each, 60 items with about 5: n_i and m_j differ by 6×."""
    return synthetic(10, 60, 300, rank=2, noise=0.3, popularity_skew=0.0, seed=4)


@pytest.fixture(scope="module")
def one_epoch(skewed: Ratings) -> VariationalDeepLatentFactorModel:
    """A vdlf after one epoch on all of ``skewed`` (no validation part)."""
    return create("vdlf", **{**NEURAL_FAST, "max_epochs": 1, "validation_ratio": 0.0}).fit(skewed)


def first_batch(model: VariationalDeepLatentFactorModel) -> Any:
    """The first training batch of ``model``'s configuration."""
    return next(iter(model.make_sampler(model.scorer_.incidence)))


def codes(n: int, latent: int, mean: float) -> torch.Tensor:
    """``n`` posterior codes [mean, log variance] with every mean ``mean`` and every variance 1:
    a KL to N(0, I) of mean² / 2 per dimension."""
    return torch.cat([torch.full((n, latent), mean), torch.zeros(n, latent)], dim=1)


def loss_with(model: VariationalDeepLatentFactorModel, batch: Any, user_mean: float, item_mean: float,
              **params: Any) -> float:
    """The training loss of ``batch`` with the posteriors of :func:`codes`, under ``params``
    (then restored), with the same posterior draws every call."""
    before = model.get_params()
    model.set_params(**params)
    n, latent = len(batch.targets), model.latent
    try:
        with torch.no_grad(), seeded(0):
            context = StepContext(model.network_, model.likelihood_, model.scorer_.incidence, progress=1.0)
            return float(model.training_loss(batch, codes(n, latent, user_mean), codes(n, latent, item_mean), context))
    finally:
        model.set_params(**before)


def test_gaussian_kl_is_the_closed_form() -> None:
    gen = torch.Generator().manual_seed(0)
    mean, log_var = torch.randn(50, 3, generator=gen), torch.randn(50, 3, generator=gen)
    expected = kl_divergence(Normal(mean, torch.exp(0.5 * log_var)), Normal(0.0, 1.0))
    torch.testing.assert_close(gaussian_kl(mean, log_var), expected, rtol=1e-5, atol=1e-6)
    assert float(gaussian_kl(torch.zeros(4), torch.zeros(4)).abs().max()) == 0.0  # q = p


def test_kl_is_paid_once_per_user_and_once_per_item(one_epoch: VariationalDeepLatentFactorModel,
                                                    skewed: Ratings) -> None:
    """loss(β) − loss(0) = β · mean over the batch of KL_u / n_i + KL_v / m_j, with KL_u = ½ per
    dimension (user means 1) and KL_v = 9/2 (item means 3)."""
    batch = first_batch(one_epoch)
    n_i = skewed.user_counts[batch.users.numpy()]
    m_j = skewed.item_counts[batch.items.numpy()]
    kl_u, kl_v = one_epoch.latent * 0.5, one_epoch.latent * 4.5
    expected = float(np.mean(kl_u / n_i + kl_v / m_j))
    base = loss_with(one_epoch, batch, 1.0, 3.0, kl_weight=0.0)
    paid = loss_with(one_epoch, batch, 1.0, 3.0, kl_weight=1.0) - base
    assert paid == pytest.approx(expected, rel=1e-4)
    doubled = loss_with(one_epoch, batch, 1.0, 3.0, kl_weight=2.0) - base
    assert doubled == pytest.approx(2 * expected, rel=1e-4)
    # the check tells the right scaling from the wrong ones
    for wrong in (kl_u + kl_v, np.mean(kl_u / m_j + kl_v / n_i), np.mean((kl_u + kl_v) / (n_i + m_j))):
        assert float(wrong) != pytest.approx(expected, rel=0.1)


def test_free_bits_floor_each_dimensions_kl(one_epoch: VariationalDeepLatentFactorModel, skewed: Ratings) -> None:
    """A floor of 3 nats lifts each user dimension's KL of ½ to 3 and leaves the items' 9/2."""
    batch = first_batch(one_epoch)
    n_i = skewed.user_counts[batch.users.numpy()]
    m_j = skewed.item_counts[batch.items.numpy()]
    base = loss_with(one_epoch, batch, 1.0, 3.0, kl_weight=0.0, free_bits=3.0)
    paid = loss_with(one_epoch, batch, 1.0, 3.0, kl_weight=1.0, free_bits=3.0) - base
    assert paid == pytest.approx(float(np.mean(one_epoch.latent * (3.0 / n_i + 4.5 / m_j))), rel=1e-4)


def warmup_betas(kl_weight: float, kl_warmup: int, max_epochs: int) -> tuple[list[float], int]:
    """β of every training step of a fit on the conformance data, and the steps per epoch."""
    model = create("vdlf", **{**NEURAL_FAST, "max_epochs": max_epochs, "validation_ratio": 0.0},
                   kl_weight=kl_weight, kl_warmup=kl_warmup)
    betas: list[float] = []
    loss = model.training_loss

    def recording(batch: Any, user_codes: torch.Tensor, item_codes: torch.Tensor, context: StepContext) -> torch.Tensor:
        betas.append(model.kl_scale(context.progress))  # the β this step uses
        return loss(batch, user_codes, item_codes, context)

    model.training_loss = recording  # type: ignore[method-assign]
    model.fit(conformance_fold().train)
    per_epoch = len(betas) // max_epochs
    assert len(betas) == per_epoch * max_epochs  # every epoch takes the same steps here
    return betas, per_epoch


@pytest.fixture(scope="module")
def warmup() -> tuple[list[float], int]:
    return warmup_betas(kl_weight=0.5, kl_warmup=2, max_epochs=3)


def test_kl_warmup_ramps_linearly_up_to_kl_weight(warmup: tuple[list[float], int]) -> None:
    betas, _ = warmup
    ramp = [b for b in betas if b < 0.5]
    assert ramp and betas[len(ramp):] == [0.5] * (len(betas) - len(ramp))  # then β stays at kl_weight
    np.testing.assert_allclose(ramp, betas[0] * np.arange(1, len(ramp) + 1), rtol=1e-9)  # linear from 0
    assert betas[0] < 0.1


def test_kl_warmup_lasts_kl_warmup_epochs(warmup: tuple[list[float], int]) -> None:
    betas, per_epoch = warmup
    expected = 0.5 * np.minimum(1.0, np.arange(1, len(betas) + 1) / (2 * per_epoch))
    np.testing.assert_allclose(betas, expected, rtol=1e-9)


# ---------------------------------------------------------------------------------- noise modes
@pytest.fixture(scope="module")
def heteroscedastic() -> tuple[Ratings, np.ndarray]:
    """40 users × 30 items, half observed: odd items sit at 4.5 with noise σ = 1.5, even items
    at 1.5 with σ = 0.1 (so an item's code, which knows its level, can know its noise).
    Returns the ratings and which items are the noisy ones."""
    rng = np.random.default_rng(0)
    noisy = np.arange(30) % 2 == 1
    u, i = np.divmod(np.arange(40 * 30), 30)
    keep = rng.random(len(u)) < 0.5
    u, i = u[keep], i[keep]
    values = np.where(noisy[i], 4.5, 1.5) + np.where(noisy[i], 1.5, 0.1) * rng.normal(size=len(u))
    return in_vocabularies(u, i, values, 40, 30, scale=(-10.0, 20.0), name="heteroscedastic"), noisy


NOISE_FIT = {**NEURAL_FAST, "max_epochs": 15, "validation_ratio": 0.0, "weight_decay": 0.0, "lr": 3e-2,
             "batch_size": 128, "predict_samples": 4}


@pytest.fixture(scope="module")
def noise_fits(heteroscedastic: tuple[Ratings, np.ndarray]) -> dict[str, Any]:
    """One vdlf per noise mode on the heteroscedastic data, each with its predictive standard
    deviation over every (user, item) pair, averaged separately over quiet and noisy items."""
    data, noisy = heteroscedastic
    users, items = np.divmod(np.arange(40 * 30), 30)
    out = {}
    for mode in ("fixed", "global", "per_rating"):
        model = create("vdlf", **NOISE_FIT, noise=mode).fit(data)
        std = model.distribution_indices(users, items, n_samples=64)["std"]
        out[mode] = (model, std[~noisy[items]].mean(), std[noisy[items]].mean())
    return out


def test_fixed_noise_is_not_learned_but_calibrated_afterwards(noise_fits: dict[str, Any]) -> None:
    model, quiet, noisy = noise_fits["fixed"]
    assert float(model.network_.log_noise.detach()) == 0.0  # never trained
    assert 0.6 < model.noise_std_ < 2.0  # the planted σ pool ≈ 1.06, not fixed_sigma = 0.1
    assert noisy / quiet == pytest.approx(1.0, abs=0.1)  # one σ for every rating


def test_global_noise_learns_one_sigma(noise_fits: dict[str, Any]) -> None:
    model, quiet, noisy = noise_fits["global"]
    learned = float(torch.exp(model.network_.log_noise.detach()))
    assert model.noise_std_ == pytest.approx(learned, rel=1e-6) and abs(learned - 1.0) > 0.1  # moved from σ = 1
    assert noisy / quiet == pytest.approx(1.0, abs=0.1)


def test_per_rating_noise_follows_the_planted_noise(noise_fits: dict[str, Any]) -> None:
    _, quiet, noisy = noise_fits["per_rating"]
    assert noisy > 2.5 * quiet  # planted: 15×; measured ≈ 4.8×
    assert noise_fits["per_rating"][0].network_.decoder.net[-1].out_features == 2  # η and log σ

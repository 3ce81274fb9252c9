"""Likelihoods against scipy.stats, the KL against its closed form, the sampler's moments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from dlfm.evaluation.metrics import interval_coverage
from dlfm.models.vdlf import gaussian_kl
from dlfm.nn.likelihoods import Bernoulli, Gaussian, Poisson, make_likelihood


def test_gaussian_nll_matches_scipy():
    lik = Gaussian(3.0)
    eta, y, log_sigma = torch.tensor([0.5, -1.0]), torch.tensor([4.0, 1.5]), torch.tensor([0.2, -0.3])
    ours = lik.nll(eta, y, log_sigma).numpy()
    ref = -stats.norm.logpdf(y.numpy(), loc=3.0 + eta.numpy(), scale=np.exp(log_sigma.numpy()))
    assert np.allclose(ours, ref, atol=1e-5)


def test_poisson_nll_matches_scipy():
    lik = Poisson(math.log(2.0))
    eta, y = torch.tensor([0.0, 0.7, -0.4]), torch.tensor([0.0, 3.0, 7.0])
    ref = -stats.poisson.logpmf(y.numpy(), mu=2.0 * np.exp(eta.numpy()))
    assert np.allclose(lik.nll(eta, y).numpy(), ref, atol=1e-5)


def test_bernoulli_nll_matches_scipy():
    lik = Bernoulli(0.3)
    eta, y = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1.0, 0.0, 1.0])
    p = 1 / (1 + np.exp(-(0.3 + eta.numpy())))
    ref = -stats.bernoulli.logpmf(y.numpy(), p)
    assert np.allclose(lik.nll(eta, y).numpy(), ref, atol=1e-5)


def test_likelihood_offsets_predict_the_mean_at_zero():
    for name, values in [("gaussian", np.array([1.0, 5.0])), ("poisson", np.array([0.0, 4.0])),
                         ("bernoulli", np.array([0.0, 1.0, 1.0, 1.0]))]:
        lik = make_likelihood(name, values)
        assert float(lik.mean(torch.zeros(1))) == pytest.approx(values.mean(), rel=1e-5)
    with pytest.raises(Exception):
        make_likelihood("bernoulli", np.array([0.0, 2.0]))


def test_kl_matches_closed_form_and_monte_carlo():
    mean, log_var = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.3, -0.7]])
    ours = gaussian_kl(mean, log_var).sum().item()
    var = np.exp(log_var.numpy())
    closed = 0.5 * np.sum(var + mean.numpy() ** 2 - 1 - log_var.numpy())
    assert ours == pytest.approx(closed, rel=1e-6)
    # Monte Carlo: E_q[log q − log p]
    rng = np.random.default_rng(0)
    z = mean.numpy() + np.sqrt(var) * rng.standard_normal((200000, 2))
    mc = np.mean(stats.norm.logpdf(z, mean.numpy(), np.sqrt(var)).sum(1) - stats.norm.logpdf(z).sum(1))
    assert ours == pytest.approx(mc, abs=0.01)
    assert gaussian_kl(torch.zeros(3), torch.zeros(3)).sum().item() == 0.0


def test_reparameterized_sampler_moments():
    from dlfm.models.vdlf import VariationalDeepLatentFactorModel

    model = VariationalDeepLatentFactorModel()
    codes = torch.tensor([[1.0, -2.0, math.log(0.25), math.log(4.0)]]).expand(200000, -1)
    from dlfm.nn.keyed import keyed_normal

    eps = torch.from_numpy(keyed_normal(0, 1, np.arange(200000), 2).astype(np.float32))
    draws = model._latent(codes, True, eps)
    assert draws.mean(0).numpy() == pytest.approx([1.0, -2.0], abs=0.02)
    assert draws.std(0).numpy() == pytest.approx([0.5, 2.0], rel=0.01)
    assert torch.equal(model._latent(codes[:1], False), torch.tensor([[1.0, -2.0]]))


def test_coverage_on_known_distributions():
    rng = np.random.default_rng(0)
    y = rng.normal(2.0, 1.5, 100000)
    lo, hi = stats.norm.ppf([0.05, 0.95], 2.0, 1.5)
    assert interval_coverage(y, np.full_like(y, lo), np.full_like(y, hi)) == pytest.approx(0.90, abs=0.005)
    lo, hi = stats.norm.ppf([0.25, 0.75], 2.0, 1.5)
    assert interval_coverage(y, np.full_like(y, lo), np.full_like(y, hi)) == pytest.approx(0.50, abs=0.005)

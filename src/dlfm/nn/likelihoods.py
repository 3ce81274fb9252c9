"""Observation models p(r | η) for the neural models, with their link functions.

The decoder outputs a real number η per rating (plus, for a Gaussian with learned noise, a
log standard deviation). Each likelihood maps η through its inverse link around an offset
fitted to the training data, so that η = 0 predicts the training mean:

=========  ===========================  =========================  ======================
name       parameter                    NLL per rating             mean
=========  ===========================  =========================  ======================
gaussian   m = μ + η, σ                 ½ log 2πσ² + (r − m)²/2σ²  m
poisson    λ = exp(log μ + η)           λ − y log λ + log y!       λ
bernoulli  p = sigmoid(logit μ + η)     −y log p − (1−y) log(1−p)  p
=========  ===========================  =========================  ======================
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from dlfm.errors import ConfigError

LIKELIHOODS = ("gaussian", "poisson", "bernoulli")



class Likelihood:
    """Base class: ``nll``, ``mean`` and ``sample`` given the decoder output η."""

    name = "base"

    def __init__(self, offset: float):
        self.offset = float(offset)

    @classmethod
    def for_data(cls, values: np.ndarray) -> "Likelihood":
        raise NotImplementedError

    def nll(self, eta: torch.Tensor, y: torch.Tensor, log_sigma: torch.Tensor | None = None) -> torch.Tensor:
        """Per-rating negative log-likelihood (the constant terms included)."""
        raise NotImplementedError

    def mean(self, eta: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, eta: torch.Tensor, uniform: torch.Tensor, log_sigma: torch.Tensor | None = None) -> torch.Tensor:
        """Draws of r given η by the inverse CDF of ``uniform`` (same shape as η, values in
        (0, 1)): the randomness comes from the caller, keyed per pair (:mod:`dlfm.nn.keyed`)."""
        raise NotImplementedError


class Gaussian(Likelihood):
    """r ~ N(μ + η, σ²). With ``log_sigma=None`` the NLL is the squared error / 2 (σ = 1 up to
    constants), which is what a point model trains on."""

    name = "gaussian"

    @classmethod
    def for_data(cls, values: np.ndarray) -> "Gaussian":
        return cls(float(np.mean(values)))

    def nll(self, eta, y, log_sigma=None):
        m = self.offset + eta
        if log_sigma is None:
            return 0.5 * (y - m) ** 2
        return 0.5 * math.log(2 * math.pi) + log_sigma + 0.5 * ((y - m) / torch.exp(log_sigma)) ** 2

    def mean(self, eta):
        return self.offset + eta

    def sample(self, eta, uniform, log_sigma=None):
        m = self.mean(eta)
        sigma = torch.exp(log_sigma) if log_sigma is not None else torch.zeros_like(m)
        return m + sigma * torch.special.ndtri(uniform.to(m.device, torch.float64)).to(m.dtype)


class Poisson(Likelihood):
    """y ~ Poisson(exp(log μ + η)), for counts."""

    name = "poisson"

    @classmethod
    def for_data(cls, values: np.ndarray) -> "Poisson":
        if np.any(values < 0) or np.any(values != np.round(values)):
            raise ConfigError("the Poisson likelihood needs non-negative integer counts")
        return cls(math.log(max(float(np.mean(values)), 1e-3)))

    def nll(self, eta, y, log_sigma=None):
        log_rate = self.offset + eta
        return torch.exp(log_rate) - y * log_rate + torch.lgamma(y + 1)

    def mean(self, eta):
        return torch.exp(self.offset + eta)

    def sample(self, eta, uniform, log_sigma=None):
        from scipy.stats import poisson

        rate = self.mean(eta)
        draws = poisson.ppf(uniform.double().cpu().numpy(), rate.double().cpu().numpy())
        return torch.as_tensor(draws, dtype=rate.dtype, device=rate.device)


class Bernoulli(Likelihood):
    """y ~ Bernoulli(sigmoid(logit μ + η)), for like (1) / dislike (0)."""

    name = "bernoulli"

    @classmethod
    def for_data(cls, values: np.ndarray) -> "Bernoulli":
        if not np.all((values == 0) | (values == 1)):
            raise ConfigError("the Bernoulli likelihood needs 0/1 labels (use --binarize THRESHOLD)")
        p = min(max(float(np.mean(values)), 1e-3), 1 - 1e-3)
        return cls(math.log(p / (1 - p)))

    def nll(self, eta, y, log_sigma=None):
        return F.binary_cross_entropy_with_logits(self.offset + eta, y, reduction="none")

    def mean(self, eta):
        return torch.sigmoid(self.offset + eta)

    def sample(self, eta, uniform, log_sigma=None):
        p = self.mean(eta)
        return (uniform.to(p.device, p.dtype) < p).to(p.dtype)


def make_likelihood(name: str, values: np.ndarray) -> Likelihood:
    classes = {"gaussian": Gaussian, "poisson": Poisson, "bernoulli": Bernoulli}
    if name not in classes:
        raise ConfigError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, not {name!r}")
    return classes[name].for_data(values)


def from_state(name: str, offset: float) -> Likelihood:
    classes = {"gaussian": Gaussian, "poisson": Poisson, "bernoulli": Bernoulli}
    return classes[name](offset)

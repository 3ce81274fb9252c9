"""Synthetic rating data with known truth, shaped like MovieLens.

Users' activity and items' popularity follow power laws (a few users rate a lot, a few items
are rated by many), and each observed value comes from a known model, so the best possible
error is known:

- ``gaussian``: r_ui = μ + b_u + b_i + p_uᵀq_i + ε, ε ~ N(0, σ²) — the noise floor RMSE is σ.
- ``poisson``: y_ui ~ Poisson(exp(c + p_uᵀq_i)) — counts.
- ``bernoulli``: y_ui ~ Bernoulli(sigmoid(c + p_uᵀq_i)) — like / dislike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlfm.data.ratings import Ratings, Vocabulary
from dlfm.errors import ConfigError


@dataclass(frozen=True)
class SyntheticTruth:
    """What generated the data: the noise-free mean of every observed pair, and the noise."""

    mean: np.ndarray
    noise: float
    likelihood: str
    user_factors: np.ndarray
    item_factors: np.ndarray


def _power_law_weights(n: int, skew: float, rng: np.random.Generator) -> np.ndarray:
    ranks = rng.permutation(n) + 1.0
    w = ranks ** (-skew)
    return w / w.sum()


def sample_pairs(n_users: int, n_items: int, n_ratings: int, skew: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs drawn with power-law user and item weights."""
    if n_ratings > 0.5 * n_users * n_items:
        raise ConfigError("n_ratings must be at most half of n_users × n_items")
    pu = _power_law_weights(n_users, skew, rng)
    pi = _power_law_weights(n_items, skew, rng)
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < n_ratings:
        need = int((n_ratings - len(keys)) * 1.3) + 16
        u = rng.choice(n_users, size=need, p=pu)
        i = rng.choice(n_items, size=need, p=pi)
        keys = np.unique(np.concatenate([keys, u.astype(np.int64) * n_items + i]))
    keys = rng.permutation(keys)[:n_ratings]
    return keys // n_items, keys % n_items


def synthetic(
    n_users: int = 1000,
    n_items: int = 500,
    n_ratings: int = 20000,
    *,
    rank: int = 5,
    noise: float = 0.5,
    popularity_skew: float = 0.8,
    likelihood: str = "gaussian",
    seed: int = 0,
    with_truth: bool = False,
) -> Ratings | tuple[Ratings, SyntheticTruth]:
    """Generate ratings from a known low-rank model (see the module docstring).

    Args:
        popularity_skew: exponent s of the power laws (weight of the k-th most active user or
            popular item ∝ k^-s); 0 gives uniform sampling.
        noise: σ of the Gaussian noise (ignored by the other likelihoods).
        with_truth: also return the :class:`SyntheticTruth`.
    """
    if min(n_users, n_items, n_ratings, rank) < 1:
        raise ConfigError("n_users, n_items, n_ratings and rank must be positive")
    rng = np.random.default_rng(seed)
    users, items = sample_pairs(n_users, n_items, n_ratings, popularity_skew, rng)
    p = rng.normal(0, 1 / np.sqrt(rank), (n_users, rank))
    q = rng.normal(0, 1 / np.sqrt(rank), (n_items, rank))
    dot = np.empty(len(users))
    for start in range(0, len(users), 1 << 20):  # in chunks: p[users] whole would be n_ratings × rank
        part = slice(start, start + (1 << 20))
        dot[part] = np.einsum("nk,nk->n", p[users[part]], q[items[part]])
    if likelihood == "gaussian":
        b_u = rng.normal(0, 0.3, n_users)
        b_i = rng.normal(0, 0.4, n_items)
        mean = 3.5 + b_u[users] + b_i[items] + dot
        values = mean + rng.normal(0, noise, len(mean))
        scale = (float(np.floor(values.min())), float(np.ceil(values.max())))
    elif likelihood == "poisson":
        mean = np.exp(0.5 + 1.0 * dot)
        values = rng.poisson(mean).astype(np.float64)
        scale = (0.0, float(values.max()))
    elif likelihood == "bernoulli":
        mean = 1 / (1 + np.exp(-(0.3 + 2.0 * dot)))
        values = (rng.random(len(mean)) < mean).astype(np.float64)
        scale = (0.0, 1.0)
    else:
        raise ConfigError(f"likelihood must be gaussian, poisson or bernoulli, not {likelihood!r}")
    ratings = Ratings(users, items, values, Vocabulary(np.arange(n_users)), Vocabulary(np.arange(n_items)), scale,
                      name=f"synthetic-{likelihood}-{n_ratings}")
    if with_truth:
        return ratings, SyntheticTruth(mean, noise, likelihood, p, q)
    return ratings


def write_ratings(ratings: Ratings, path: str | Path, sep: str = ",") -> None:
    """Write a container as a generic rating file ``user,item,rating`` with a header."""
    from dlfm.persistence import write_text

    lines = [f"user{sep}item{sep}rating"]
    lines += [f"{u}{sep}{i}{sep}{r!r}" for u, i, r in zip(ratings.raw_users(), ratings.raw_items(), ratings.ratings.tolist())]
    write_text(path, "\n".join(lines) + "\n")

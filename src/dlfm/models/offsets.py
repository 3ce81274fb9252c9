"""Per-user and per-item offsets of the decoder output η: the levels a neural model need not learn.

With ``offsets="per_row"`` the neural models predict through

    η_ij = a_i + b_j + f(u_i, v_j),

around the likelihood's global offset m (log of the mean count for Poisson, the mean rating for
a Gaussian), with a_i, b_j fitted once on the ratings the encoders read, before training,
and held fixed. For Poisson counts that span orders of magnitude (play counts from 1 to
10⁵) this is what lets the model fit at all: the user's and the item's log-rates carry the
level, and the network learns the interaction on the log scale (see the README, "Counts").

Poisson (log λ_ij = m + a_i + b_j): alternating exact updates, each a_i the root of its
score equation given b, shrunk by ``prior`` pseudo-counts at the global rate:

    a_i = log( (Σ_j y_ij + prior·e^m) / (Σ_j e^(m + b_j) + prior·e^m) ),   the same for b_j.

Gaussian (r_ij = μ + a_i + b_j + …): the biases of ``baseline`` (ALS with penalties λ_u = 15,
λ_i = 10, 10 sweeps, :func:`~dlfm.models.baselines.als_biases`). A new user's (item's) offset
is the same update given the other side's offsets (:meth:`RowOffsets.fold_in`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dlfm.data.ratings import Ratings
from dlfm.errors import ConfigError

#: ``auto``: what the model declares for its likelihood (:data:`AUTO_OFFSETS` unless it says otherwise)
OFFSETS = ("auto", "global", "per_row")
#: what ``auto`` means per likelihood, unless a model declares its own (``dlf``: ``per_row`` for
#: the Gaussian too)
AUTO_OFFSETS = {"gaussian": "global", "poisson": "per_row", "bernoulli": "global"}
#: pseudo-counts at the global rate that shrink a Poisson offset
POISSON_PRIOR = 1.0
#: ALS penalties of the Gaussian offsets (``baseline``'s defaults)
GAUSSIAN_PENALTIES = (15.0, 10.0)


def resolve_offsets(offsets: str, likelihood: str, auto: dict[str, str] = AUTO_OFFSETS) -> str:
    """``global`` or ``per_row`` for the model's ``offsets`` setting and likelihood; ``auto`` is
    the model's choice per likelihood."""
    if offsets == "auto":
        return auto[likelihood]
    if offsets == "per_row" and likelihood == "bernoulli":
        raise ConfigError("offsets=per_row is for the gaussian and poisson likelihoods, not bernoulli")
    return offsets


def poisson_offsets(ratings: Ratings, m: float, *, prior: float = POISSON_PRIOR,
                    n_iter: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of log λ_ij = m + a_i + b_j by the alternating updates of the module docstring."""
    y, u, i = ratings.ratings, ratings.users, ratings.items
    base = prior * math.exp(m)
    a, b = np.zeros(ratings.n_users), np.zeros(ratings.n_items)
    sum_u = np.bincount(u, weights=y, minlength=ratings.n_users)
    sum_i = np.bincount(i, weights=y, minlength=ratings.n_items)
    for _ in range(n_iter):
        a = np.log((sum_u + base) / (np.bincount(u, weights=np.exp(m + b[i]), minlength=ratings.n_users) + base))
        b = np.log((sum_i + base) / (np.bincount(i, weights=np.exp(m + a[u]), minlength=ratings.n_items) + base))
    return a, b


@dataclass(frozen=True)
class RowOffsets:
    """a_i per user and b_j per item (float64), for the likelihood ``likelihood`` around ``m``."""

    user: np.ndarray
    item: np.ndarray
    likelihood: str
    m: float

    @classmethod
    def fit(cls, ratings: Ratings, likelihood: str, m: float) -> "RowOffsets":
        if likelihood == "poisson":
            a, b = poisson_offsets(ratings, m)
        elif likelihood == "gaussian":
            from dlfm.models.baselines import als_biases

            a, b = als_biases(ratings, *GAUSSIAN_PENALTIES, 10)
        else:
            raise ConfigError(f"per-row offsets are not defined for the {likelihood} likelihood")
        return cls(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), likelihood, float(m))

    def pair(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """a_i + b_j per pair as float32, 0 for an index of ``-1``."""
        users, items = np.asarray(users), np.asarray(items)
        a = np.where(users >= 0, self.user[np.maximum(users, 0)], 0.0)
        b = np.where(items >= 0, self.item[np.maximum(items, 0)], 0.0)
        return (a + b).astype(np.float32)

    def penalty(self, side: str) -> float | None:
        """The ALS penalty of a new user's (``side="user"``) or item's Gaussian offset, in
        pseudo-ratings (its prior N(0, σ²/penalty)); ``None`` for Poisson, whose offsets are
        shrunk by pseudo-counts instead."""
        if self.likelihood != "gaussian":
            return None
        return GAUSSIAN_PENALTIES[0] if side == "user" else GAUSSIAN_PENALTIES[1]

    def fold_in(self, others: np.ndarray, values: np.ndarray, side: str) -> float:
        """The offset of a new user (``side="user"``: ``others`` are item indices) or a new
        item from its ratings ``values``, given the other side's offsets."""
        other = self.item if side == "user" else self.user
        b = other[np.asarray(others)]
        values = np.asarray(values, dtype=np.float64)
        if self.likelihood == "poisson":
            base = POISSON_PRIOR * math.exp(self.m)
            return float(np.log((values.sum() + base) / (np.exp(self.m + b).sum() + base)))
        penalty = self.penalty(side)
        assert penalty is not None
        return float((values - self.m - b).sum() / (penalty + len(values)))

"""Matrix factorization baselines: biased MF (``mf``, SVD-style) and unbiased PMF (``pmf``).

Model (biased):   r̂_ui = μ + b_u + b_i + p_uᵀ q_i
Model (PMF):      r̂_ui = μ + p_uᵀ q_i            (μ centres the ratings)

Objective, with the frequency-weighted penalty of ALS-WR (Zhou et al. 2008):

    Σ_{(u,i)} (r_ui − r̂_ui)² + λ Σ_u n_u (‖p_u‖² + β b_u²) + λ Σ_i n_i (‖q_i‖² + β b_i²)

fitted by alternating least squares: with the items fixed each user's [p_u, b_u] is a ridge
regression with a closed form, and vice versa. ALS needs no learning rate, is deterministic
given the seed of the initial factors, and converges in a few sweeps.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from dlfm.data.ratings import Ratings
from dlfm.errors import ConfigError
from dlfm.models.baselines import take_or_zero
from dlfm.models.base import Recommender


def _solve_side(indptr: np.ndarray, indices: np.ndarray, targets: np.ndarray, other: np.ndarray,
                penalty: np.ndarray, n_rows: int) -> np.ndarray:
    """For each row r: argmin_x Σ_j (t_rj − z_jᵀx)² + n_r xᵀ diag(penalty) x, z_j = other[j]."""
    dim = other.shape[1]
    out = np.zeros((n_rows, dim))
    for row in range(n_rows):
        start, end = indptr[row], indptr[row + 1]
        if start == end:
            continue
        z = other[indices[start:end]]
        gram = z.T @ z + (end - start) * np.diag(penalty)
        out[row] = np.linalg.solve(gram, z.T @ targets[start:end])
    return out


class MatrixFactorization(Recommender):
    """Biased matrix factorization fitted by weighted-λ ALS.

    Args:
        n_factors: latent dimension k.
        reg: λ, the penalty per rating on the factors.
        bias_reg: β, the penalty on the biases relative to λ.
        n_epochs: ALS sweeps (each updates all users, then all items).
        init_std: standard deviation of the random initial item factors.
        biased: learn b_u and b_i (``False`` gives PMF).
        seed: seed of the initial factors.

    Defaults were chosen on a validation split carved from ML-100k's u1 training fold by
    ``benchmarks/tune_mf.py``; the test folds were never used.
    """

    name = "mf"
    supports_new_users = True

    def __init__(self, n_factors: int = 20, reg: float = 0.08, bias_reg: float = 0.2, n_epochs: int = 15,
                 init_std: float = 0.1, biased: bool = True, seed: int = 0) -> None:
        self.n_factors = n_factors
        self.reg = reg
        self.bias_reg = bias_reg
        self.n_epochs = n_epochs
        self.init_std = init_std
        self.biased = biased
        self.seed = seed

    def _validate_params(self) -> None:
        if self.n_factors < 1:
            raise ConfigError("n_factors must be at least 1")
        if self.reg < 0 or self.bias_reg < 0:
            raise ConfigError("reg and bias_reg must be non-negative")
        if self.n_epochs < 1:
            raise ConfigError("n_epochs must be at least 1")

    def _penalty(self) -> np.ndarray:
        pen = np.full(self.n_factors + 1, self.reg)
        pen[-1] = self.reg * self.bias_reg if self.biased else 1e12  # PMF: bias pinned at 0
        return pen

    def _fit(self, train: Ratings, validation: Ratings | None) -> None:
        rng = np.random.default_rng(self.seed)
        k = self.n_factors
        centred = train.ratings - self.global_mean_
        csr = train.csr()
        csc = train.csc()
        by_user = centred[np.lexsort((train.items, train.users))]
        by_item = centred[np.lexsort((train.users, train.items))]
        user_f = np.zeros((train.n_users, k + 1))  # [p_u, b_u]
        item_f = np.zeros((train.n_items, k + 1))  # [q_i, b_i]
        item_f[:, :k] = rng.normal(0.0, self.init_std, (train.n_items, k))
        pen = self._penalty()
        for _ in range(self.n_epochs):
            # users: target r − μ − b_i, features [q_i, 1]
            z = np.hstack([item_f[:, :k], np.ones((train.n_items, 1))])
            t = by_user - item_f[csr.indices, k]
            user_f = _solve_side(csr.indptr, csr.indices, t, z, pen, train.n_users)
            z = np.hstack([user_f[:, :k], np.ones((train.n_users, 1))])
            t = by_item - user_f[csc.indices, k]
            item_f = _solve_side(csc.indptr, csc.indices, t, z, pen, train.n_items)
        self.user_factors_, self.user_bias_ = user_f[:, :k], user_f[:, k]
        self.item_factors_, self.item_bias_ = item_f[:, :k], item_f[:, k]

    def _predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        dot = np.zeros(len(users))
        ok = (users >= 0) & (items >= 0)
        dot[ok] = np.einsum("nk,nk->n", self.user_factors_[users[ok]], self.item_factors_[items[ok]])
        return self.global_mean_ + take_or_zero(self.user_bias_, users) + take_or_zero(self.item_bias_, items) + dot

    def predict_new_user(self, ratings: Mapping[Any, float], items: Sequence[Any]) -> np.ndarray:
        """Folds in a new user by one ridge solve against the fixed item factors."""
        self._check_fitted()
        idx, values = self._new_user_row(ratings)
        k = self.n_factors
        z = np.hstack([self.item_factors_[idx], np.ones((len(idx), 1))])
        t = values - self.global_mean_ - self.item_bias_[idx]
        x = np.linalg.solve(z.T @ z + len(idx) * np.diag(self._penalty()), z.T @ t)
        target = self.item_vocab_.lookup(items)
        out = self.global_mean_ + x[k] + take_or_zero(self.item_bias_, target)
        ok = target >= 0
        out[ok] += self.item_factors_[target[ok]] @ x[:k]
        return np.clip(out, *self.scale_)

    def _state(self) -> dict[str, Any]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "user_bias": self.user_bias_, "item_bias": self.item_bias_}

    def _set_state(self, tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        for key in ("user_factors", "item_factors", "user_bias", "item_bias"):
            setattr(self, key + "_", tensors[key].numpy())


class PMF(MatrixFactorization):
    """Probabilistic matrix factorization (Salakhutdinov & Mnih 2007): r̂_ui = μ + p_uᵀ q_i,
    no biases; the MAP estimate under Gaussian priors, fitted by the same ALS."""

    name = "pmf"

    def __init__(self, n_factors: int = 20, reg: float = 0.08, bias_reg: float = 0.2, n_epochs: int = 15,
                 init_std: float = 0.1, biased: bool = False, seed: int = 0) -> None:
        super().__init__(n_factors, reg, bias_reg, n_epochs, init_std, biased, seed)

"""Classic baselines: the global mean, regularized user and item biases, and most-popular.

Both share the fallback every model uses: an unknown user or item contributes no bias.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from dlfm.data.ratings import Ratings
from dlfm.models.base import Recommender
from dlfm.models.params import Param, size_param
from dlfm.models.space import LogUniform


def take_or_zero(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``values[idx]`` with 0 where ``idx < 0`` (unknown id)."""
    out = np.zeros(len(idx), dtype=np.float64)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


class GlobalMean(Recommender):
    """r̂_ui = μ, the mean training rating. The floor every model must beat."""

    name = "mean"
    supports_new_users = True

    def __init__(self) -> None:
        pass

    def _fit(self, train: Ratings, validation: Ratings | None) -> None:
        pass

    def _predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(users), self.global_mean_)

    def predict_new_user(self, ratings: Mapping[Any, float], items: Sequence[Any]) -> np.ndarray:
        self._check_fitted()
        self._new_user_row(ratings)
        return np.clip(np.full(len(items), self.global_mean_), *self.scale_)

    def predict_new_item(self, ratings: Mapping[Any, float], users: Sequence[Any]) -> np.ndarray:
        """μ for every user: the mean ignores who rated what."""
        self._check_fitted()
        self._new_item_column(ratings)
        return np.clip(np.full(len(users), self.global_mean_), *self.scale_)


def als_biases(train: Ratings, reg_user: float, reg_item: float, n_epochs: int) -> tuple[np.ndarray, np.ndarray]:
    """Alternating least squares for r_ui ≈ μ + b_u + b_i with penalties λ_u Σb_u² + λ_i Σb_i²
    (Koren 2010, as Surprise's BaselineOnly): each step is the closed-form minimizer

        b_i = Σ_{u ∈ R(i)} (r_ui − μ − b_u) / (λ_i + |R(i)|),
        b_u = Σ_{i ∈ R(u)} (r_ui − μ − b_i) / (λ_u + |R(u)|).
    """
    mu = train.global_mean
    b_u = np.zeros(train.n_users)
    b_i = np.zeros(train.n_items)
    u, i, r = train.users, train.items, train.ratings
    for _ in range(n_epochs):
        b_i = np.bincount(i, weights=r - mu - b_u[u], minlength=train.n_items) / (reg_item + train.item_counts)
        b_u = np.bincount(u, weights=r - mu - b_i[i], minlength=train.n_users) / (reg_user + train.user_counts)
    return b_u, b_i


class BaselineModel(Recommender):
    """Regularized biases: r̂_ui = μ + b_u + b_i, fitted by ALS (like Surprise's BaselineOnly).

    Args:
        reg_user: λ_u, the penalty on user biases (Surprise: 15).
        reg_item: λ_i, the penalty on item biases (Surprise: 10).
        n_epochs: ALS sweeps (Surprise: 10).

    A new user is folded in by the same closed form: b_u = Σ (r_ui − μ − b_i) / (λ_u + n).
    """

    name = "baseline"
    supports_new_users = True
    hyper_parameters = (
        Param("reg_user", float, "λ_u, the penalty on user biases", low=0),
        Param("reg_item", float, "λ_i, the penalty on item biases", low=0),
        size_param("n_epochs", "ALS sweeps", high=10_000),
    )

    search_space = {"reg_user": LogUniform(1.0, 100.0), "reg_item": LogUniform(1.0, 100.0)}

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, n_epochs: int = 10) -> None:
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_epochs = n_epochs

    def _fit(self, train: Ratings, validation: Ratings | None) -> None:
        self.user_bias_, self.item_bias_ = als_biases(train, self.reg_user, self.reg_item, self.n_epochs)

    def _predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.global_mean_ + take_or_zero(self.user_bias_, users) + take_or_zero(self.item_bias_, items)

    def predict_new_user(self, ratings: Mapping[Any, float], items: Sequence[Any]) -> np.ndarray:
        self._check_fitted()
        idx, values = self._new_user_row(ratings)
        b_u = np.sum(values - self.global_mean_ - self.item_bias_[idx]) / (self.reg_user + len(idx))
        target = self.item_vocab_.lookup(items)
        return np.clip(self.global_mean_ + b_u + take_or_zero(self.item_bias_, target), *self.scale_)

    def predict_new_item(self, ratings: Mapping[Any, float], users: Sequence[Any]) -> np.ndarray:
        """A new item folded in by the closed form of its bias, b_i = Σ_u (r_ui − μ − b_u) / (λ_i + n),
        then r̂_ui = μ + b_u + b_i for each of ``users`` (an unknown user contributes no b_u)."""
        self._check_fitted()
        idx, values = self._new_item_column(ratings)
        b_i = np.sum(values - self.global_mean_ - self.user_bias_[idx]) / (self.reg_item + len(idx))
        target = self.user_vocab_.lookup(users)
        return np.clip(self.global_mean_ + b_i + take_or_zero(self.user_bias_, target), *self.scale_)

    def _state(self) -> dict[str, Any]:
        return {"user_bias": self.user_bias_, "item_bias": self.item_bias_}

    def _set_state(self, tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        self._expect_shapes(tensors, {"user_bias": (self.train_.n_users,), "item_bias": (self.train_.n_items,)})
        self.user_bias_ = tensors["user_bias"].numpy()
        self.item_bias_ = tensors["item_bias"].numpy()


class PopularItems(BaselineModel):
    """Most popular: recommends the items with the most training ratings, to everyone.

    Ranking score s_ui = |R(i)|, the item's number of training ratings (ties by the lower item
    index), the same for every user — the non-personalised top-N baseline (Cremonesi et al.
    2010). Its *rating* prediction is the baseline's, r̂_ui = μ + b_u + b_i (same parameters
    and fold-in as ``baseline``), so RMSE/MAE read as ``baseline``'s; only :meth:`score_indices`
    (what top-N evaluation ranks by) differs.
    """

    name = "popular"
    recommends_by_rating = False

    def score_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """|R(i)| for each pair (0 for an unknown item)."""
        self._check_fitted()
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        return take_or_zero(self.train_.item_counts.astype(np.float64), items)

"""Matrix factorization baselines: biased MF (``mf``, SVD-style) and unbiased PMF (``pmf``).

Model (biased):   r̂_ui = μ + b_u + b_i + p_uᵀ q_i
Model (PMF):      r̂_ui = μ + p_uᵀ q_i            (μ centres the ratings)

Fitting has two stages.

1. **ALS warm start** (``n_epochs`` sweeps): alternating least squares on

       Σ_{(u,i)} (r_ui − r̂_ui)² + λ Σ_u n_u^α (‖p_u‖² + β b_u²) + λ Σ_i n_i^α (‖q_i‖² + β b_i²)

   (α = 1 is the frequency-weighted penalty of ALS-WR, Zhou et al. 2008; α = 0 a plain ridge
   penalty). With the items fixed each user's [p_u, b_u] is a ridge regression with a closed
   form, and vice versa. This alone (``gibbs_sweeps=0``) is the MAP estimate, deterministic given
   the seed of the initial factors.

2. **Bayesian averaging** (``gibbs_sweeps`` Gibbs sweeps, after Salakhutdinov & Mnih's BPMF,
   2008, with diagonal priors): Gaussian noise of standard deviation σ, a Gaussian prior
   N(m_d, 1/λ_d) on every coordinate d of the user vectors [p_u, b_u] (and, separately, of the
   item vectors) and a Normal–Gamma hyperprior on each (m_d, λ_d). Each sweep draws the user
   hyperparameters given the users, the users given the items (each user's conditional
   posterior is Gaussian: the same ridge system as in ALS, with the prior in place of the
   penalty), then the same for the items. σ is not sampled: it is ``noise_scale`` times the training
   RMSE of the warm start (a plug-in estimate that goes to 0 on exactly low-rank data).
   Predictions average over the sweeps, Rao–Blackwellized: sweep s contributes the user
   vectors' conditional *means* given the item draw of that sweep, paired with that draw. The
   average of S products p·q is again one product, of the S vectors concatenated (scaled by
   1/√S), so a fitted model is an ordinary factor model with S·k factors.

Speed: every side's ridge systems are built and solved in batches — rows sorted by length are
grouped into blocks, their entries zero-padded, each block's Gram matrices are one batched
matrix product, and all systems of a side are one batched ``np.linalg.solve``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from dlfm.data.ratings import Ratings
from dlfm.errors import TrainingError
from dlfm.models.baselines import take_or_zero
from dlfm.models.space import Choice, LogUniform, Uniform
from dlfm.models.base import Recommender
from dlfm.models.params import MAX_WIDTH, Param, seed_param, size_param

#: padded entries per batched Gram product (small blocks stay in cache)
_BLOCK_ENTRIES = 2048
#: the Normal–Gamma hyperprior on each coordinate's (mean, precision): mean 0 with the weight
#: of one observation, Gamma(1, 1) on the precision
_PRIOR_WEIGHT, _PRIOR_SHAPE, _PRIOR_RATE = 1.0, 1.0, 1.0


class _Side:
    """One side of the alternation (the users, or the items) as a fixed plan: each row's
    entries in compressed order, and blocks of rows of similar length whose entries are
    gathered zero-padded, so that a block's Gram matrices Σ_j z_j z_jᵀ are one batched product."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, n_other: int) -> None:
        self.indptr, self.indices, self.n_other = indptr, indices, n_other
        self.n_rows = len(indptr) - 1
        self.counts = np.diff(indptr)
        self.has = self.counts > 0
        self.blocks: list[tuple[np.ndarray, np.ndarray]] = []
        order = np.argsort(self.counts, kind="stable")
        order = order[self.counts[order] > 0]
        start = 0
        while start < len(order):
            # rows sorted by length: grow the block while its padded size stays in budget
            stop = start + 1
            while stop < len(order) and (stop - start + 1) * self.counts[order[stop]] <= _BLOCK_ENTRIES:
                stop += 1
            rows = order[start:stop]
            pos = np.arange(self.counts[rows].max())
            inside = pos[None, :] < self.counts[rows, None]
            entry = np.minimum(indptr[rows, None] + pos[None, :], len(indices) - 1)
            # padding gathers row ``n_other`` of the features: an appended row of zeros
            self.blocks.append((rows, np.where(inside, indices[entry], n_other)))
            start = stop

    def grams(self, feats: np.ndarray) -> np.ndarray:
        """Σ_j z_j z_jᵀ over each row's entries, shape (n_rows, dim, dim)."""
        dim = feats.shape[1]
        padded = np.vstack([feats, np.zeros((1, dim))])
        out = np.zeros((self.n_rows, dim, dim))
        for rows, gather in self.blocks:
            z = padded[gather]
            out[rows] = np.matmul(z.transpose(0, 2, 1), z)
        return out

    def solve(self, targets: np.ndarray, feats: np.ndarray, penalty: np.ndarray,
              prior_mean: np.ndarray | None = None, rng: np.random.Generator | None = None,
              noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """For every row r, with z_j = feats[j] over the row's entries j and A = Σ z_j z_jᵀ +
        diag(penalty[r]): the minimizer A⁻¹b of Σ_j (t_rj − z_jᵀx)² + (x − m)ᵀ diag(penalty[r])
        (x − m), m = ``prior_mean``; and, with ``rng``, a draw from N(A⁻¹b, noise² A⁻¹) (else
        the minimizer again). Rows without entries get 0. Returns (minimizers, draws)."""
        dim = feats.shape[1]
        pen = penalty[self.has]
        gram = self.grams(feats)[self.has]
        diag = np.arange(dim)
        gram[:, diag, diag] += pen
        weighted = sp.csr_matrix((targets, self.indices, self.indptr), shape=(self.n_rows, self.n_other))
        rhs = np.asarray(weighted @ feats)[self.has]
        if prior_mean is not None:
            rhs = rhs + pen * prior_mean
        mean = np.zeros((self.n_rows, dim))
        if rng is None:
            mean[self.has] = np.linalg.solve(gram, rhs[..., None])[..., 0]
            return mean, mean
        # with A = L Lᵀ: A⁻¹ noise·L ε ~ N(0, noise² A⁻¹); one solve gives both columns
        chol = np.linalg.cholesky(gram)
        shift = noise * np.matmul(chol, rng.standard_normal((len(rhs), dim, 1)))
        both = np.linalg.solve(gram, np.concatenate([rhs[..., None], shift], axis=2))
        draw = np.zeros((self.n_rows, dim))
        mean[self.has] = both[..., 0]
        draw[self.has] = both[..., 0] + both[..., 1]
        return mean, draw


def _draw_prior(rng: np.random.Generator, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw each coordinate's prior (mean m_d, precision λ_d) from its Normal–Gamma posterior
    given the vectors ``x`` (one per row)."""
    n = len(x)
    xbar = x.mean(axis=0)
    weight = _PRIOR_WEIGHT + n
    shape = _PRIOR_SHAPE + n / 2
    rate = _PRIOR_RATE + 0.5 * ((x - xbar) ** 2).sum(axis=0) + n * _PRIOR_WEIGHT * xbar ** 2 / (2 * weight)
    precision = rng.gamma(shape, 1.0 / rate)
    mean = rng.normal(n * xbar / weight, 1.0 / np.sqrt(weight * precision))
    return mean, precision


class MatrixFactorization(Recommender):
    """Biased matrix factorization: an ALS warm start, then Bayesian averaging over Gibbs
    sweeps (see the module docstring).

    Args:
        n_factors: latent dimension k.
        reg: λ, the warm start's penalty (per rating when ``reg_exponent`` is 1).
        bias_reg: β, the warm start's penalty on the biases relative to λ.
        n_epochs: ALS sweeps of the warm start (each updates all users, then all items).
        init_std: standard deviation of the random initial item factors.
        biased: learn b_u and b_i (``False`` gives PMF).
        seed: seed of the initial factors and of the Gibbs sampler.
        reg_exponent: α, the warm start's penalty grows as n^α with a row's rating count n.
        gibbs_sweeps: Gibbs sweeps averaged into the prediction; 0 keeps the ALS (MAP)
            estimate. The fitted model holds ``gibbs_sweeps · n_factors`` factors per user and
            per item. (Until this release ``n_samples``, a name that elsewhere means draws of
            the predictive distribution; the old name still works, with a FutureWarning.)
        noise_scale: the sampler's noise standard deviation σ, as a multiple of the warm
            start's training RMSE (until this release ``noise``; the old name still works).

    Defaults — n_factors=10, reg=0.1, bias_reg=0.2, reg_exponent=1.0, n_epochs=8,
    gibbs_sweeps=100, noise_scale=1.2 — are the best of a grid scored in an earlier round on 10%
    validation parts carved from ML-100k's official training files u1.base … u5.base. Those
    files hold the other folds' test ratings, so the defaults' figure on u1–u5 is not a clean
    test figure; ``dlfm cv ml-100k --model mf --folds official --tune N`` gives the nested one.

    ``pmf`` shares these defaults (not tuned separately).
    """

    name = "mf"
    search_space = {"n_factors": Choice((5, 10, 20, 50)), "reg": LogUniform(0.01, 1.0),
                    "bias_reg": LogUniform(0.01, 1.0), "noise_scale": Uniform(0.5, 2.0)}
    supports_new_users = True
    renamed_params = {"n_samples": "gibbs_sweeps", "noise": "noise_scale"}
    hyper_parameters = (
        size_param("n_factors", "latent dimension k", high=10_000),
        Param("reg", float, "λ, the warm start's penalty (per rating when reg_exponent is 1)", low=0),
        Param("bias_reg", float, "β, the warm start's penalty on the biases relative to λ", low=0),
        size_param("n_epochs", "ALS sweeps of the warm start", high=10_000),
        Param("init_std", float, "standard deviation of the random initial item factors", low=0),
        Param("biased", bool, "learn user and item biases (false gives PMF)"),
        seed_param("seed of the initial factors and of the Gibbs sampler"),
        Param("reg_exponent", float, "α: the penalty grows as n^α with a row's rating count n", low=-4, high=4),
        size_param("gibbs_sweeps", "Gibbs sweeps averaged into the prediction (0: the ALS estimate)", low=0,
                   high=MAX_WIDTH),
        Param("noise_scale", float, "the sampler's noise σ, as a multiple of the warm start's training RMSE", low=0),
    )

    def __init__(self, n_factors: int = 10, reg: float = 0.1, bias_reg: float = 0.2, n_epochs: int = 8,
                 init_std: float = 0.1, biased: bool = True, seed: int = 0, reg_exponent: float = 1.0,
                 gibbs_sweeps: int = 100, noise_scale: float = 1.2) -> None:
        self.n_factors = n_factors
        self.reg = reg
        self.bias_reg = bias_reg
        self.n_epochs = n_epochs
        self.init_std = init_std
        self.biased = biased
        self.seed = seed
        self.reg_exponent = reg_exponent
        self.gibbs_sweeps = gibbs_sweeps
        self.noise_scale = noise_scale

    def _dim(self) -> int:
        return self.n_factors + (1 if self.biased else 0)

    def _als_penalty(self, counts: np.ndarray) -> np.ndarray:
        """λ n^α (1, …, 1, β) for each row of ``counts`` ratings."""
        base = np.full(self._dim(), float(self.reg))
        if self.biased:
            base[-1] = self.reg * self.bias_reg
        return np.power(np.asarray(counts, dtype=np.float64), self.reg_exponent)[:, None] * base

    def _features(self, vectors: np.ndarray) -> np.ndarray:
        """The other side's regressors: [q_i, 1] (biased) or q_i (PMF)."""
        k = self.n_factors
        if not self.biased:
            return vectors[:, :k]
        return np.hstack([vectors[:, :k], np.ones((len(vectors), 1))])

    def _bias(self, vectors: np.ndarray) -> np.ndarray:
        return vectors[:, self.n_factors] if self.biased else np.zeros(len(vectors))

    def _fit(self, train: Ratings, validation: Ratings | None) -> None:
        try:
            self._fit_factors(train, validation)
        except np.linalg.LinAlgError as exc:
            raise TrainingError(f"{self.name}: a least-squares system is singular ({exc}); "
                                "use a positive --param reg") from None

    def _fit_factors(self, train: Ratings, validation: Ratings | None) -> None:
        rng = np.random.default_rng(self.seed)
        k, dim = self.n_factors, self._dim()
        csr, csc = train.csr(), train.csc()
        by_user, by_item = csr.data - self.global_mean_, csc.data - self.global_mean_
        users = _Side(csr.indptr, csr.indices, train.n_items)
        items = _Side(csc.indptr, csc.indices, train.n_users)
        item_of = np.repeat(np.arange(train.n_items), items.counts)  # item of each csc entry
        user_f = np.zeros((train.n_users, dim))  # rows [p_u, b_u]
        item_f = np.zeros((train.n_items, dim))  # rows [q_i, b_i]
        item_f[:, :k] = rng.normal(0.0, self.init_std, (train.n_items, k))
        tracker = _ValidationTracker(self, validation)

        def update_users(**args: Any) -> np.ndarray:
            nonlocal user_f
            mean, user_f = users.solve(by_user - self._bias(item_f)[csr.indices], self._features(item_f), **args)
            return mean

        def update_items(**args: Any) -> None:
            nonlocal item_f
            _, item_f = items.solve(by_item - self._bias(user_f)[csc.indices], self._features(user_f), **args)

        u_pen, i_pen = self._als_penalty(users.counts), self._als_penalty(items.counts)
        for epoch in range(self.n_epochs):
            update_users(penalty=u_pen)
            update_items(penalty=i_pen)
            tracker.record(epoch, user_f, item_f)

        resid = by_item - self._bias(user_f)[csc.indices] - self._bias(item_f)[item_of] \
            - np.einsum("nk,nk->n", user_f[csc.indices, :k], item_f[item_of, :k])
        sigma = self.noise_scale * float(np.sqrt(np.mean(resid ** 2)))
        # σ = 0 (no sampling asked for, noise_scale=0, or the warm start fits every rating exactly, e.g.
        # all ratings equal or a single one): the posterior is a point, the warm start's estimate
        if self.gibbs_sweeps == 0 or sigma == 0.0:
            self.user_factors_, self.user_bias_ = user_f[:, :k], self._bias(user_f)
            self.item_factors_, self.item_bias_ = item_f[:, :k], self._bias(item_f)
            self.user_priors_ = np.zeros((0, 2, dim))
            self.item_sample_bias_ = np.zeros((train.n_items, 0))
            self.noise_ = 0.0
            return
        self.noise_ = sigma

        def posterior(vectors: np.ndarray, side: _Side) -> dict[str, Any]:
            """A draw of the side's prior, as the arguments of its conditional posterior."""
            mean, precision = _draw_prior(rng, vectors[side.has])
            return {"penalty": np.broadcast_to(sigma ** 2 * precision, (side.n_rows, dim)),
                    "prior_mean": mean, "rng": rng, "noise": sigma}

        pairs: list[tuple[np.ndarray, np.ndarray]] = []
        priors = np.zeros((self.gibbs_sweeps, 2, dim))  # per sweep: the users' prior penalty and mean
        for s in range(self.gibbs_sweeps):
            args = posterior(user_f, users)
            priors[s] = args["penalty"][0], args["prior_mean"]
            item_draw = item_f
            # Rao–Blackwellized: the users' conditional means given the item draw they saw
            pairs.append((update_users(**args), item_draw))
            update_items(**posterior(item_f, items))
            tracker.record(self.n_epochs + s, *pairs[-1], average=True)

        scale = 1.0 / np.sqrt(len(pairs))
        self.user_factors_ = np.hstack([u[:, :k] for u, _ in pairs]) * scale
        self.item_factors_ = np.hstack([i[:, :k] for _, i in pairs]) * scale
        self.user_bias_ = np.mean([self._bias(u) for u, _ in pairs], axis=0)
        self.item_sample_bias_ = np.stack([self._bias(i) for _, i in pairs], axis=1)
        self.item_bias_ = self.item_sample_bias_.mean(axis=1)
        self.user_priors_ = priors

    def _predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        dot = np.zeros(len(users))
        ok = np.flatnonzero((users >= 0) & (items >= 0))
        step = max(1, 2 ** 22 // max(1, self.user_factors_.shape[1]))  # pairs per chunk: ~32 MB
        for start in range(0, len(ok), step):
            part = ok[start:start + step]
            dot[part] = np.einsum("nk,nk->n", self.user_factors_[users[part]], self.item_factors_[items[part]])
        return self.global_mean_ + take_or_zero(self.user_bias_, users) + take_or_zero(self.item_bias_, items) + dot

    def score_matrix(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """μ + b_u + b_i + p_uᵀ q_i for all of ``users × items`` by one matrix product (unclipped)."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        p = np.where((users >= 0)[:, None], self.user_factors_[np.maximum(users, 0)], 0.0)
        q = np.where((items >= 0)[:, None], self.item_factors_[np.maximum(items, 0)], 0.0)
        return (self.global_mean_ + take_or_zero(self.user_bias_, users)[:, None]
                + take_or_zero(self.item_bias_, items)[None, :] + p @ q.T)

    def predict_new_user(self, ratings: Mapping[Any, float], items: Sequence[Any]) -> np.ndarray:
        """Folds in a new user as the model treats a training user: the ridge solve against
        the fixed item factors (ALS), or, after Gibbs sweeps, the posterior mean given each
        sweep's item draw and user prior, averaged over the sweeps."""
        self._check_fitted()
        idx, values = self._new_user_row(ratings)
        k = self.n_factors
        target = self.item_vocab_.lookup(items)
        ok = target >= 0
        n_sweeps = len(self.user_priors_)
        if n_sweeps == 0:
            sweeps = [(self.item_factors_, self.item_bias_, self._als_penalty(np.array([len(idx)]))[0], None)]
            scale = 1.0
        else:
            scale = np.sqrt(n_sweeps)  # undo the 1/√S of the stored concatenation
            sweeps = [(self.item_factors_[:, s * k:(s + 1) * k] * scale, self.item_sample_bias_[:, s],
                       self.user_priors_[s, 0], self.user_priors_[s, 1]) for s in range(n_sweeps)]
        out = np.zeros(len(target))
        for factors, bias, penalty, prior_mean in sweeps:
            z = factors[idx] if not self.biased else np.hstack([factors[idx], np.ones((len(idx), 1))])
            rhs = z.T @ (values - self.global_mean_ - bias[idx])
            if prior_mean is not None:
                rhs = rhs + penalty * prior_mean
            x = np.linalg.solve(z.T @ z + np.diag(penalty), rhs)
            pred = self.global_mean_ + take_or_zero(bias, target) + (x[k] if self.biased else 0.0)
            pred[ok] += np.einsum("nk,k->n", factors[target[ok]], x[:k])  # per row: the same in any batch
            out += pred
        return np.clip(out / len(sweeps), *self.scale_)

    def predict_new_item(self, ratings: Mapping[Any, float], users: Sequence[Any]) -> np.ndarray:
        """Folds in a new item from ``{user: rating}``: the regularised least-squares solve of
        [q, b_i] against the fixed user factors,

            [q, b_i] = argmin Σ_u (r_ui − μ − b_u − b_i − p_uᵀ q)² + λ n^α (‖q‖² + β b_i²),

        with n the item's ratings (the warm start's penalty); after Gibbs sweeps, one solve per
        sweep against that sweep's user factors (with the averaged b_u), predictions averaged."""
        self._check_fitted()
        idx, values = self._new_item_column(ratings)
        k = self.n_factors
        target = self.user_vocab_.lookup(users)
        ok = target >= 0
        n_sweeps = len(self.user_priors_)
        penalty = self._als_penalty(np.array([len(idx)]))[0]
        scale = np.sqrt(n_sweeps) if n_sweeps else 1.0  # undo the 1/√S of the stored concatenation
        blocks = [self.user_factors_[:, s * k:(s + 1) * k] * scale for s in range(max(1, n_sweeps))]
        out = np.zeros(len(target))
        for factors in blocks:
            z = factors[idx] if not self.biased else np.hstack([factors[idx], np.ones((len(idx), 1))])
            x = np.linalg.solve(z.T @ z + np.diag(penalty), z.T @ (values - self.global_mean_ - self.user_bias_[idx]))
            pred = self.global_mean_ + take_or_zero(self.user_bias_, target) + (x[k] if self.biased else 0.0)
            pred[ok] += factors[target[ok]] @ x[:k]
            out += pred
        return np.clip(out / len(blocks), *self.scale_)

    def _state(self) -> dict[str, Any]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "user_bias": self.user_bias_, "item_bias": self.item_bias_,
                "user_priors": self.user_priors_, "item_sample_bias": self.item_sample_bias_}

    def _set_state(self, tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        n_users, n_items, dim = self.train_.n_users, self.train_.n_items, self._dim()
        self._expect_shapes(tensors, {"user_factors": (n_users, None), "item_factors": (n_items, None),
                                      "user_bias": (n_users,), "item_bias": (n_items,),
                                      "user_priors": (None, 2, dim), "item_sample_bias": (n_items, None)})
        sweeps = tensors["user_priors"].shape[0]
        width = self.n_factors * max(1, sweeps)
        if tensors["user_factors"].shape[1] != width or tensors["item_factors"].shape[1] != width \
                or tensors["item_sample_bias"].shape[1] != sweeps:
            raise ValueError(f"its factors do not fit n_factors={self.n_factors} and {sweeps} sweeps")
        for key in ("user_factors", "item_factors", "user_bias", "item_bias", "user_priors", "item_sample_bias"):
            setattr(self, key + "_", tensors[key].numpy())
        self.noise_ = float(meta.get("noise", 0.0))

    def _extra_meta(self) -> dict[str, Any]:
        return {"noise": getattr(self, "noise_", 0.0)}


class _ValidationTracker:
    """With validation data, appends ``{"epoch", "val_rmse"}`` to the model's history after every
    sweep: the prediction the model would make if fitting stopped there (for the Gibbs sweeps,
    the running average so far)."""

    def __init__(self, model: MatrixFactorization, validation: Ratings | None) -> None:
        self.model, self.validation = model, validation
        self.total: np.ndarray | float = 0.0
        self.count = 0

    def record(self, epoch: int, user_f: np.ndarray, item_f: np.ndarray, average: bool = False) -> None:
        if self.validation is None:
            return
        m, k = self.model, self.model.n_factors
        users, items = self.validation.users, self.validation.items
        ok = (users >= 0) & (items >= 0) & (users < len(user_f)) & (items < len(item_f))
        u, i = users[ok], items[ok]
        pred = np.full(len(users), m.global_mean_)
        pred[ok] += m._bias(user_f)[u] + m._bias(item_f)[i] + np.einsum("nk,nk->n", user_f[u, :k], item_f[i, :k])
        if average:
            self.total = self.total + pred
            self.count += 1
            pred = self.total / self.count
        err = np.clip(pred, *m.scale_) - self.validation.ratings
        m.history_.append({"epoch": epoch + 1, "val_rmse": float(np.sqrt(np.mean(err ** 2)))})


class PMF(MatrixFactorization):
    """Probabilistic matrix factorization (Salakhutdinov & Mnih 2007): r̂_ui = μ + p_uᵀ q_i,
    no biases; fitted by the same ALS warm start and Bayesian averaging (BPMF, 2008)."""

    name = "pmf"

    def __init__(self, n_factors: int = 10, reg: float = 0.1, bias_reg: float = 0.2, n_epochs: int = 8,
                 init_std: float = 0.1, biased: bool = False, seed: int = 0, reg_exponent: float = 1.0,
                 gibbs_sweeps: int = 100, noise_scale: float = 1.2) -> None:
        super().__init__(n_factors, reg, bias_reg, n_epochs, init_std, biased, seed, reg_exponent, gibbs_sweeps,
                         noise_scale)

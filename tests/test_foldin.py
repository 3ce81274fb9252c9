"""Semi-amortized fold-in of new users and items (dlfm.models.foldin)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlfm.data.splits import entity_folds, fold_in_split
from dlfm.datasets import synthetic
from dlfm.evaluation.coldstart import fold_in_scores
from dlfm.evaluation.metrics import rmse
from dlfm.models import create
from dlfm.models.foldin import fold_in, latent_spread, map_objective, prior_centre, refine_latent

FAST = dict(hidden=32, latent=8, decoder_hidden=16, max_epochs=10, batch_size=256, verbose=False, ema_decay=0.0,
            mc_samples=0)


@pytest.fixture(scope="module")
def planted():
    """A rank-3 model with noise 0.3; a fifth of the users held out whole."""
    data = synthetic(300, 200, 12000, rank=3, noise=0.3, seed=1)
    return next(iter(entity_folds(data, 5, by="user", seed=0)))


@pytest.fixture(scope="module")
def fitted(planted):
    return create("dlf", **FAST).fit(planted.train)


def fold_in_rmse(model, held, given: int) -> float:
    g, others = fold_in_split(held, given, seed=0)
    rows = np.unique(others.users)
    scores = fold_in_scores(model, g, rows)
    position = np.full(held.n_users, -1)
    position[rows] = np.arange(len(rows))
    return rmse(others.ratings, scores[position[others.users], others.items])


def test_refine_latent_solves_the_linear_gaussian_map_by_hand():
    # f(u, v) = u·v with ℓ = ½(r − f)²: u* = (VᵀV + λ S⁻²)⁻¹ (Vᵀr + λ S⁻² u₀)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    r = torch.randn(6, generator=gen, dtype=torch.float64)
    u0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    s = torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    lam = 0.7
    got, bias = refine_latent(u0, v, r, lambda u, w: (u * w).sum(-1), lambda y, eta: 0.5 * (y - eta) ** 2,
                              prior_std=s, strength=lam, steps=50)
    assert bias == 0.0
    precision = torch.diag(lam / s ** 2)
    want = torch.linalg.solve(v.T @ v + precision, v.T @ r + precision @ u0)
    assert torch.allclose(got, want, atol=1e-8)
    # the prior alone (λ → ∞) keeps u₀; no steps return u₀ itself
    stiff, _ = refine_latent(u0, v, r, lambda u, w: (u * w).sum(-1), lambda y, eta: 0.5 * (y - eta) ** 2,
                             prior_std=s, strength=1e9, steps=50)
    assert torch.allclose(stiff, u0, atol=1e-6)
    assert refine_latent(u0, v, r, lambda u, w: u @ w.T, lambda y, eta: y, prior_std=s, steps=0).latent is u0


def test_map_objective_by_hand():
    u, u0, s = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0])
    v, r = torch.tensor([[1.0, 1.0]]), torch.tensor([4.0])
    value = map_objective(u, u0, s, 2.0, v, r, lambda a, b: (a * b).sum(-1), lambda y, eta: (y - eta) ** 2)
    assert value.item() == pytest.approx((4 - 3) ** 2 + 0.5 * 2.0 * (1 + 0.25))


def test_latent_spread_is_the_per_dimension_std_with_a_floor():
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    assert torch.allclose(latent_spread(x), torch.tensor([np.sqrt(2.0), 1e-6], dtype=torch.float32))
    assert torch.equal(latent_spread(x[:1]), torch.ones(2))


def test_prior_centre_is_the_product_of_the_two_priors():
    code = torch.tensor([1.0, -2.0])
    population = torch.tensor([[0.0, 0.0], [2.0, 4.0]])  # mean (1, 2)
    assert torch.equal(prior_centre(code, population, 1.0), code)
    assert torch.allclose(prior_centre(code, population, 0.0), torch.tensor([1.0, 2.0]))
    assert torch.allclose(prior_centre(code, population, 0.25), torch.tensor([1.0, 1.0]))
    # N(u0, s²/(aλ)) · N(ū, s²/((1-a)λ)) has precision λ/s² and mean a u0 + (1-a) ū: the MAP of a
    # linear-Gaussian model with the split prior is the closed form with centre c
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(5, 2, generator=gen, dtype=torch.float64)
    r = torch.randn(5, generator=gen, dtype=torch.float64)
    lam, a = 0.8, 0.3

    class Dot(torch.nn.Module):  # η = f(u, v) = u·v, linear in u
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return ((u * w).sum(-1) * self.scale)[:, None]

    decoder = Dot()

    class Unit:
        name = "gaussian"

        @staticmethod
        def nll(eta, y):
            return 0.5 * (y - eta) ** 2

    pop = population.double()
    got, _ = fold_in(decoder, Unit(), 1.0, code.double(), v, r, pop, strength=lam, steps=60, anchor=a, swap=False)
    s = latent_spread(pop)
    centre = a * code.double() + (1 - a) * pop.mean(0)
    precision = torch.diag(lam / s ** 2)
    want = torch.linalg.solve(v.T @ v + precision, v.T @ r + precision @ centre)
    assert torch.allclose(got, want, atol=1e-6)


def test_refine_latent_with_the_offset_solves_the_joint_linear_gaussian_map_by_hand():
    # f(u, v) = u·v, ℓ = ½(r − β − f)², priors ½λ Σ (u − u₀)²/s² and ½κβ²: one linear system in (u, β)
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    r = torch.randn(7, generator=gen, dtype=torch.float64) + 1.5
    u0 = torch.tensor([0.2, -0.4, 1.0], dtype=torch.float64)
    s = torch.tensor([1.0, 0.7, 1.5], dtype=torch.float64)
    lam, kappa = 0.6, 3.75
    got, bias = refine_latent(u0, v, r, lambda u, w: (u * w).sum(-1), lambda y, eta: 0.5 * (y - eta) ** 2,
                              prior_std=s, strength=lam, steps=60, bias=0.3, bias_penalty=kappa)
    x = torch.cat([v, torch.ones(7, 1, dtype=torch.float64)], dim=1)
    precision = torch.diag(torch.cat([lam / s ** 2, torch.tensor([kappa], dtype=torch.float64)]))
    want = torch.linalg.solve(x.T @ x + precision, x.T @ r + precision @ torch.cat([u0, torch.zeros(1, dtype=torch.float64)]))
    assert torch.allclose(got, want[:3], atol=1e-7) and bias == pytest.approx(float(want[3]), abs=1e-7)
    # a zero decoder leaves β the ridge (ALS) mean Σr / (n + κ), and u at u₀
    zero, beta = refine_latent(u0, v, r, lambda u, w: 0.0 * (u * w).sum(-1), lambda y, eta: 0.5 * (y - eta) ** 2,
                               prior_std=s, strength=lam, steps=60, bias=0.0, bias_penalty=kappa)
    assert beta == pytest.approx(float(r.sum()) / (7 + kappa), abs=1e-8) and torch.allclose(zero, u0, atol=1e-8)
    # not refined (no penalty): β is returned as given
    assert refine_latent(u0, v, r, lambda u, w: (u * w).sum(-1), lambda y, eta: 0.5 * (y - eta) ** 2,
                         prior_std=s, strength=lam, steps=5, bias=0.3).bias == 0.3


def test_the_offset_is_refined_only_when_foldin_offset_prior_is_positive(fitted, planted):
    held = planted.test
    mine = held.users == held.users[0]
    ratings = dict(zip(held.item_vocab.raw(held.items[mine]), held.ratings[mine].tolist()))
    items = planted.train.raw_items()[:40]
    assert fitted._own_prior("user") == pytest.approx(fitted.foldin_offset_prior * 15.0)
    assert fitted._own_prior("item") == pytest.approx(fitted.foldin_offset_prior * 10.0)
    refined = fitted.predict_new_user(ratings, items)
    fitted.foldin_offset_prior = 0.0
    try:
        assert fitted._own_prior("user") is None
        closed = fitted.predict_new_user(ratings, items)
    finally:
        fitted.foldin_offset_prior = 0.25
    assert not np.allclose(refined, closed)


def test_zero_steps_is_the_encoder_fold_in_bit_for_bit(fitted, planted):
    held = planted.test
    user = held.users[0]
    mine = held.users == user
    ratings = dict(zip(held.item_vocab.raw(held.items[mine]), held.ratings[mine].tolist()))
    items = planted.train.raw_items()[:40]
    fitted.foldin_steps = 0
    try:
        got = fitted.predict_new_user(ratings, items)
        idx, values = fitted._new_user_row(ratings)
        code = fitted.scorer_.encode_new(fitted.network_.user_encoder, idx, values)
        target = fitted.item_vocab_.lookup(items)
        _, item_codes = fitted.scorer_.code_rows(np.zeros(len(target), dtype=np.int64), target)
        with torch.no_grad():
            eta = fitted._decode(fitted.network_, code.expand(len(target), -1), item_codes)[:, 0]
        # dlf's per-row offsets: the new user's own (folded in from its ratings) and the items'
        eta = eta + fitted._new_offset(idx, values, "user") + fitted.scorer_.pair_offset(
            np.full(len(target), -1), target)
        assert np.array_equal(got, np.clip(fitted.likelihood_.mean(eta).double().numpy(), *fitted.scale_))
    finally:
        fitted.foldin_steps = 20


def test_refinement_lowers_the_fold_in_error_on_planted_data(fitted, planted):
    fitted.foldin_steps = 0
    try:
        before = [fold_in_rmse(fitted, planted.test, n) for n in (5, 10)]
    finally:
        fitted.foldin_steps = 20
    after = [fold_in_rmse(fitted, planted.test, n) for n in (5, 10)]
    assert all(a < b - 0.005 for a, b in zip(after, before)), (before, after)


@pytest.mark.parametrize("name", ["dlf", "vdlf"])
def test_a_user_who_rates_everything_5_is_predicted_above_the_mean(name, planted):
    model = create(name, **FAST).fit(planted.train)
    items = planted.train.raw_items()
    top = planted.train.scale[1]
    liked = model.predict_new_user({i: top for i in items[:10]}, items[10:60])
    assert liked.mean() > planted.train.global_mean + 0.3
    loved = model.predict_new_item({u: top for u in planted.train.raw_users()[:10]}, planted.train.raw_users()[10:60])
    assert loved.mean() > planted.train.global_mean + 0.3


def test_fold_in_settings_leave_the_warm_predictions_unchanged(planted):
    train = planted.train
    a = create("dlf", **FAST, foldin_steps=0).fit(train).predict_indices(train.users[:300], train.items[:300])
    b = create("dlf", **FAST, foldin_steps=7, foldin_prior=0.2).fit(train).predict_indices(train.users[:300],
                                                                                           train.items[:300])
    assert np.array_equal(a, b)


def test_poisson_fold_in_lowers_the_nll_of_the_given_counts():
    data = synthetic(200, 100, 6000, rank=3, likelihood="poisson", seed=3)
    fold = next(iter(entity_folds(data, 5, by="user", seed=0)))
    model = create("dlf", **FAST, likelihood="poisson").fit(fold.train)
    g, _ = fold_in_split(fold.test, 10, seed=0)
    user = g.users[0]
    mine = g.users == user
    ratings = dict(zip(g.item_vocab.raw(g.items[mine]), g.ratings[mine].tolist()))
    items = list(ratings)
    y = torch.tensor(list(ratings.values()))

    def nll(steps: int) -> float:
        model.foldin_steps = steps
        rate = torch.as_tensor(model.predict_new_user(ratings, items))
        return float((rate - y * torch.log(rate)).sum())

    assert nll(20) < nll(0)


def test_a_new_user_is_ranked_as_a_known_user_is(fitted, planted):
    # recommend_new_user adds the same ranking offset (the calibrated popularity term) that
    # score_indices adds for a known user
    train = planted.train
    ratings = {i: 4.0 for i in train.raw_items()[:8]}
    saved = fitted.popularity_weight_
    try:
        fitted.popularity_weight_ = 0.0
        plain = fitted.recommend_new_user(ratings, k=5)
        fitted.popularity_weight_ = 100.0  # popularity dominates: the most rated unrated items
        top = [item for item, _ in fitted.recommend_new_user(ratings, k=5)]
        idx = fitted.item_vocab_.lookup(top)
        candidates = np.setdiff1d(np.flatnonzero(train.item_counts > 0), fitted.item_vocab_.lookup(list(ratings)))
        assert sorted(train.item_counts[idx].tolist()) == sorted(np.sort(train.item_counts[candidates])[-5:].tolist())
        scores = fitted.predict_new_user(ratings, top) + 100.0 * np.log1p(train.item_counts[idx])
        assert np.allclose([s for _, s in fitted.recommend_new_user(ratings, k=5)], scores)
    finally:
        fitted.popularity_weight_ = saved
    assert [s for _, s in plain] == sorted([s for _, s in plain], reverse=True)
    assert np.array_equal(create("baseline").fit(train).ranking_offset(np.arange(5)), np.zeros(5))

"""The conformance suite every dlfm model inherits (the pattern of LensKit's and implicit's
shared model tests).

A model joins by one class in ``tests/test_conformance.py``::

    class TestBaseline(ModelConformance):
        name = "baseline"                 # its name in dlfm.models.MODELS
        params = {}                       # a small, fast configuration
        expected_rmse, rmse_tol = 0.78, 0.005
        planted = staticmethod(planted_biases)   # a structure it must recover:
        planted_params = {"reg_user": 0.0}       # fitted so,
        planted_rmse = 1e-6                      # to this held-out RMSE

and then gets every ``test_*`` check below: ``fit`` returns ``self``; predictions are finite
and inside the rating scale; save/load gives identical predictions; unknown ids fall back as
documented (and ``unknown="error"`` raises); ``recommend`` leaves seen items out; the same seed
reproduces, another seed differs, and ``fit`` starts over; a pair's prediction does not depend
on the rest of the request, for every ``predict*`` method; a known answer; and the held-out
RMSE on :func:`conformance_fold` is at most ``expected_rmse + rmse_tol``.

A check that fails because of a known, filed bug is listed in ``known_failures`` (test id →
reason): it is then marked ``xfail(strict=True)``, so it turns into a failure once fixed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import pytest

from dlfm.data.ratings import Ratings, Vocabulary
from dlfm.data.splits import Fold, holdout
from dlfm.datasets import synthetic
from dlfm.errors import UnknownIdError
from dlfm.evaluation.metrics import rmse
from dlfm.models import create, model_class
from dlfm.models.base import Recommender

#: a small, fast configuration shared by the neural models' tests (dlf and vdlf)
NEURAL_FAST: dict[str, Any] = dict(hidden=16, latent=4, decoder_hidden=8, max_epochs=12, patience=4, batch_size=64,
                                   mc_samples=2, lr=1e-2, ema_decay=0.0, verbose=False, device="cpu")
#: a raw id that no generated vocabulary holds
UNKNOWN_ID = 10**6
#: the rating scale of the generated data; tighter than the generated values, so clipping matters
SCALE = (1.0, 5.0)
#: ids of the user and the item that :func:`conformance_fold`'s vocabularies hold without a rating
GHOST_USER, GHOST_ITEM = 40, 30


# ---------------------------------------------------------------------------------- data
def in_vocabularies(users: np.ndarray, items: np.ndarray, values: np.ndarray, n_users: int, n_items: int,
                    scale: tuple[float, float] = SCALE, name: str = "generated") -> Ratings:
    """Ratings over the integer ids ``0..n_users-1`` and ``0..n_items-1``; ids without a
    rating stay in the vocabularies."""
    return Ratings(users, items, values, Vocabulary(np.arange(n_users)), Vocabulary(np.arange(n_items)), scale,
                   name=name)


@functools.cache
def conformance_fold() -> Fold:
    """The fixed data set of ``expected_rmse``: 40 users × 30 items, 600 ratings from a rank-2
    model with biases and noise σ = 0.3, clipped to 1..5, split 80/20 (seed 0). The
    vocabularies also hold :data:`GHOST_USER` and :data:`GHOST_ITEM`, which have no rating."""
    data = synthetic(40, 30, 600, rank=2, noise=0.3, seed=5)
    ratings = in_vocabularies(data.users, data.items, np.clip(data.ratings, *SCALE), GHOST_USER + 1, GHOST_ITEM + 1,
                              name="conformance")
    return holdout(ratings, 0.2, seed=0)


@dataclass(frozen=True)
class Planted:
    """Generated ratings with a known noise-free truth: fit on ``train``; ``truth`` is the true
    value of every pair of ``test`` (held-out pairs of the same structure)."""

    train: Ratings
    test: Ratings
    truth: np.ndarray


def plant(value: Callable[[np.ndarray, np.ndarray], np.ndarray], n_users: int = 30, n_items: int = 20,
          observed: float = 0.6, seed: int = 0) -> Planted:
    """Observe a share ``observed`` of the ``n_users × n_items`` pairs of ``value(u, i)`` (no
    noise); about a fifth of them are held out. Every user and item keeps a training rating,
    so the held-out pairs test what the model learned, not its fallback."""
    rng = np.random.default_rng(seed)
    u, i = np.divmod(np.arange(n_users * n_items), n_items)
    chosen = np.sort(rng.choice(len(u), int(observed * len(u)), replace=False))
    u, i = u[chosen], i[chosen]
    test = rng.random(len(u)) < 0.2
    for side in (u, i):  # a user's (item's) first pair stays in training if all were held out
        for k in np.unique(side):
            rows = np.flatnonzero(side == k)
            if test[rows].all():
                test[rows[0]] = False
    truth = value(u, i)
    full = in_vocabularies(u, i, truth, n_users, n_items, name="planted")
    return Planted(full.subset(~test), full.subset(test), truth[test])


def planted_biases(seed: int = 0) -> Planted:
    """r_ui = 3 + b_u + b_i exactly."""
    rng = np.random.default_rng(seed)
    b_u, b_i = rng.normal(0, 0.4, 30), rng.normal(0, 0.5, 20)
    return plant(lambda u, i: 3.0 + b_u[u] + b_i[i], seed=seed)


def planted_low_rank(biased: bool, rank: int = 2, seed: int = 0) -> Planted:
    """r_ui = 3 (+ b_u + b_i) + p_uᵀ q_i exactly, with rank-``rank`` factors."""
    rng = np.random.default_rng(seed)
    p, q = rng.normal(0, 0.6, (30, rank)), rng.normal(0, 0.6, (20, rank))
    b_u, b_i = (rng.normal(0, 0.3, 30), rng.normal(0, 0.3, 20)) if biased else (np.zeros(30), np.zeros(20))
    return plant(lambda u, i: 3.0 + b_u[u] + b_i[i] + np.einsum("nk,nk->n", p[u], q[i]), seed=seed)


def checkerboard(seed: int = 0) -> Planted:
    """Two kinds of users and two kinds of items: 5 where the kinds match, 1 where they
    differ (implicit's known answer). The global mean errs by about 2 on every pair."""
    return plant(lambda u, i: np.where(u % 2 == i % 2, 5.0, 1.0), seed=seed)


def held_out_rmse(model: Recommender, data: Planted) -> float:
    """RMSE of a fitted model's predictions against the planted truth on the held-out pairs."""
    return rmse(data.truth, model.predict_indices(data.test.users, data.test.items))


def mean_rmse(data: Planted) -> float:
    """The same RMSE for the trivial predictor, the training mean."""
    return rmse(data.truth, np.full(len(data.truth), data.train.global_mean))


# ---------------------------------------------------------------------------------- the suite
@dataclass
class FitResult:
    """A model fitted once per conformance class, and what its ``fit`` returned."""

    model: Recommender
    returned: Any


def batch_layouts(n: int, seed: int = 0) -> list[np.ndarray]:
    """Orders of the same ``n`` pairs to predict again: reversed, shuffled, and inside a
    request of twice the size."""
    rng = np.random.default_rng(seed)
    return [np.arange(n)[::-1], rng.permutation(n), np.concatenate([rng.permutation(n), np.arange(n)])]


class ModelConformance:
    """The checks every model passes; a subclass names the model and its expectations."""

    #: the model's name in :data:`dlfm.models.MODELS`
    name: ClassVar[str]
    #: hyper-parameters of a small, fast configuration
    params: ClassVar[dict[str, Any]] = {}
    #: the measured held-out RMSE on :func:`conformance_fold`, and the tolerance above it
    expected_rmse: ClassVar[float]
    rmse_tol: ClassVar[float] = 0.01
    #: test id (``test_x`` or ``test_x[param]``) → reason, for checks that fail on a filed bug
    known_failures: ClassVar[dict[str, str]] = {}
    #: the known answer: generated data with a planted structure (a function returning
    #: :class:`Planted`), the configuration changes to fit it with, and the largest held-out
    #: RMSE against the truth that passes (it must be under half the global mean's)
    planted: ClassVar[Callable[[], Planted]]
    planted_params: ClassVar[dict[str, Any]] = {}
    planted_rmse: ClassVar[float]

    # ------------------------------------------------------------------ set-up
    def make(self, **overrides: Any) -> Recommender:
        """A fresh model of this class's configuration (with ``overrides``)."""
        return create(self.name, **{**self.params, **overrides})

    @pytest.fixture(scope="class")
    def fit_result(self) -> FitResult:
        model = self.make()
        return FitResult(model, model.fit(conformance_fold().train))

    @pytest.fixture(scope="class")
    def fitted(self, fit_result: FitResult) -> Recommender:
        return fit_result.model

    @pytest.fixture(autouse=True)
    def _mark_known_failure(self, request: pytest.FixtureRequest) -> None:
        reason = self.known_failures.get(request.node.name)
        if reason is not None:
            request.node.add_marker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """``method``: every ``predict*`` method the model has."""
        if "method" in metafunc.fixturenames:
            metafunc.parametrize("method", self.predict_methods())

    def predict_methods(self) -> list[str]:
        """``predict``, and ``predict_distribution``, ``predict_new_user`` and ``predict_new_item``
        where the model has them."""
        cls = model_class(self.name)
        methods = ["predict"]
        if hasattr(cls, "predict_distribution"):
            methods.append("predict_distribution")
        if cls.supports_new_users:
            methods.append("predict_new_user")
        if hasattr(cls, "predict_new_item"):
            methods.append("predict_new_item")
        return methods

    @staticmethod
    def pairs() -> tuple[list[Any], list[Any]]:
        """Raw (user, item) ids of test pairs, with ghosts and unknown ids among them."""
        test = conformance_fold().test
        users = test.raw_users()[:12] + [GHOST_USER, UNKNOWN_ID, 0, GHOST_USER]
        items = test.raw_items()[:12] + [0, 1, GHOST_ITEM, UNKNOWN_ID]
        return users, items

    @staticmethod
    def new_row(side: str) -> dict[Any, float]:
        """A new user's ratings (``side="user"``: user 0's first five training ratings, a point
        higher), or a new item's (``"item"``: the same of item 0)."""
        train = conformance_fold().train
        own, other, vocab = (train.users, train.items, train.item_vocab) if side == "user" else \
            (train.items, train.users, train.user_vocab)
        rows = np.flatnonzero(own == 0)[:5]
        return {vocab.raw([other[k]])[0]: min(5.0, train.ratings[k] + 1.0) for k in rows}

    def outputs(self, model: Recommender, method: str, users: list[Any], items: list[Any]) -> np.ndarray:
        """What ``method`` says of each pair, one row per pair (``predict_new_user``: of each
        item, for the new user of :meth:`new_row`; ``predict_new_item``: of each user)."""
        if method == "predict":
            return np.asarray(model.predict(users, items))[:, None]
        if method == "predict_distribution":
            dist = model.predict_distribution(users, items, n_samples=64, seed=3)
            return np.stack([dist["mean"], dist["std"], dist["q50"]], axis=1)
        if method == "predict_new_user":
            return np.asarray(model.predict_new_user(self.new_row("user"), items))[:, None]
        if method == "predict_new_item":
            return np.asarray(model.predict_new_item(self.new_row("item"), users))[:, None]
        raise AssertionError(f"no such method {method}")

    def expected_fallback(self, model: Recommender, users: np.ndarray, items: np.ndarray) -> np.ndarray | None:
        """The documented prediction for index pairs where the user or the item is unknown
        (``-1``), or ``None`` where the documentation gives no formula. By default the base
        class's: the training mean plus whatever bias is known, clipped to the scale."""
        mean = np.full(len(users), model.global_mean_)
        for bias, idx in ((getattr(model, "user_bias_", None), users), (getattr(model, "item_bias_", None), items)):
            if bias is not None:
                mean += np.where(idx >= 0, bias[np.maximum(idx, 0)], 0.0)
        return np.clip(mean, *model.scale_)

    def check_known_answer(self) -> None:
        """Fit on the planted structure and check that the model recovers it on held-out pairs."""
        data = self.planted()
        model = self.make(**self.planted_params).fit(data.train)
        assert self.planted_rmse < 0.5 * mean_rmse(data), "a bar the global mean almost passes tests nothing"
        measured = held_out_rmse(model, data)
        assert measured < self.planted_rmse, f"held-out RMSE {measured:.4f} against the planted truth"

    # ------------------------------------------------------------------ the checks
    def test_fit_returns_self(self, fit_result: FitResult) -> None:
        assert fit_result.returned is fit_result.model

    def test_predictions_finite_and_in_scale(self, fitted: Recommender) -> None:
        users, items = np.divmod(np.arange((GHOST_USER + 1) * (GHOST_ITEM + 1)), GHOST_ITEM + 1)  # every pair
        out = fitted.predict_indices(users, items)
        assert out.shape == users.shape and np.all(np.isfinite(out))
        assert np.all((out >= SCALE[0]) & (out <= SCALE[1]))
        assert fitted.scale_ == SCALE

    def test_save_load_identical(self, fitted: Recommender, tmp_path: Path) -> None:
        path = tmp_path / f"{self.name}.dlfm"
        fitted.save(path)
        again = Recommender.load(path)
        assert type(again) is type(fitted) and again.get_params() == fitted.get_params()
        users, items = self.pairs()
        for method in self.predict_methods():
            np.testing.assert_array_equal(self.outputs(again, method, users, items),
                                          self.outputs(fitted, method, users, items), err_msg=method)
        assert again.recommend(0, k=5) == fitted.recommend(0, k=5)

    def test_unknown_ids_fall_back_as_documented(self, fitted: Recommender) -> None:
        known_users, known_items = [0, 1, 2], [3, 4, 5]
        users, items = [UNKNOWN_ID] * 3 + known_users, known_items + [UNKNOWN_ID] * 3
        unknown = fitted.predict(users, items)
        # an id the vocabulary lacks is predicted as one that has no training rating
        ghost = fitted.predict([GHOST_USER] * 3 + known_users, known_items + [GHOST_ITEM] * 3)
        np.testing.assert_allclose(unknown, ghost, rtol=0, atol=1e-6)
        other = fitted.predict([UNKNOWN_ID + 1] * 3 + known_users, known_items + [UNKNOWN_ID + 1] * 3)
        np.testing.assert_allclose(unknown, other, rtol=0, atol=1e-6)
        expected = self.expected_fallback(fitted, np.array([-1] * 3 + known_users), np.array(known_items + [-1] * 3))
        if expected is not None:
            np.testing.assert_allclose(unknown, expected, rtol=0, atol=1e-9)

    def test_unknown_error_raises(self, fitted: Recommender) -> None:
        with pytest.raises(UnknownIdError, match="user"):
            fitted.predict([UNKNOWN_ID], [0], unknown="error")
        with pytest.raises(UnknownIdError, match="item"):
            fitted.predict([0], [UNKNOWN_ID], unknown="error")
        if hasattr(fitted, "predict_distribution"):
            with pytest.raises(UnknownIdError):
                fitted.predict_distribution([UNKNOWN_ID], [0], n_samples=4, unknown="error")
        assert np.isfinite(fitted.predict([0], [0], unknown="error")[0])

    def test_recommend_excludes_seen(self, fitted: Recommender) -> None:
        train = conformance_fold().train
        user = int(np.argmax(train.user_counts))
        seen = set(train.item_vocab.raw(train.csr()[user].indices))
        rated = set(train.item_vocab.raw(np.flatnonzero(train.item_counts > 0)))
        top = fitted.recommend(user, k=100)
        assert {item for item, _ in top} == rated - seen
        # in the order of the model's ranking score (its prediction, or e.g. popularity)
        index = fitted.user_vocab_.lookup([user])[0]
        ranked = fitted.item_vocab_.lookup([item for item, _ in top])
        scores = list(fitted.score_indices(np.full(len(ranked), index), ranked))
        assert scores == sorted(scores, reverse=True)
        everything = fitted.recommend(user, k=100, exclude_seen=False)
        assert {item for item, _ in everything} == rated  # never the ghost item: it has no rating
        assert len(fitted.recommend(user, k=3)) == 3
        if fitted.supports_new_users:  # a new user's rated items are left out likewise
            given = self.new_row("user")
            assert {item for item, _ in fitted.recommend_new_user(given, k=100)} == rated - set(given)

    def test_same_seed_reproduces_and_fit_starts_over(self, fitted: Recommender) -> None:
        """A model fitted before — with another seed, or (without a seed) on other data — and
        then fitted again with the same seed as ``fitted`` predicts exactly as ``fitted``."""
        users, items = self.pairs()
        train = conformance_fold().train
        model = self.make()
        if "seed" in model.param_names():
            seed = model.get_params()["seed"]
            model.set_params(seed=seed + 1).fit(train)
            assert not np.allclose(model.predict(users, items), fitted.predict(users, items), rtol=0, atol=1e-6), \
                "another seed gives the same predictions: the seed decides nothing"
            model.set_params(seed=seed)
        else:
            model.fit(planted_biases().train)
        assert model.fit(train) is model
        for method in self.predict_methods():
            np.testing.assert_array_equal(self.outputs(model, method, users, items),
                                          self.outputs(fitted, method, users, items), err_msg=method)

    def test_prediction_does_not_depend_on_the_batch(self, fitted: Recommender, method: str) -> None:
        users, items = self.pairs()
        whole = self.outputs(fitted, method, users, items)
        alone = np.concatenate([self.outputs(fitted, method, [u], [i]) for u, i in zip(users, items)])
        np.testing.assert_allclose(alone, whole, rtol=0, atol=1e-5, err_msg="each pair alone")
        for order in batch_layouts(len(users)):
            out = self.outputs(fitted, method, [users[k] for k in order], [items[k] for k in order])
            np.testing.assert_allclose(out, whole[order], rtol=0, atol=1e-5, err_msg=f"order {order.tolist()}")

    def test_known_answer(self) -> None:
        self.check_known_answer()

    def test_expected_rmse(self, fitted: Recommender) -> None:
        test = conformance_fold().test
        measured = rmse(test.ratings, fitted.predict_indices(test.users, test.items))
        assert measured <= self.expected_rmse + self.rmse_tol, f"RMSE {measured:.4f}, expected {self.expected_rmse}"

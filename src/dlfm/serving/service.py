"""The model behind the HTTP server: one loaded model, a lock, request limits, a ranking cache.

:class:`ModelService` answers the server's queries with the library's own calls
(:meth:`~dlfm.models.base.Recommender.recommend`,
:meth:`~dlfm.models.base.Recommender.recommend_new_user`,
:func:`~dlfm.serving.queries.predict_record`), so its answers equal ``dlfm recommend`` and
``dlfm predict`` for the same model. It knows nothing of HTTP: it raises
:class:`~dlfm.errors.UnknownIdError` for an id the model never saw (the server's 404) and
:class:`~dlfm.errors.ConfigError` for a value outside the limits (the server's 422).

Concurrency. A model computes under one lock, so requests in different threads never run
PyTorch on the same model at once (its code caches are filled lazily) and each request's
numbers are those of a model used alone. The lazily filled caches are warmed when the
service is built, so the first request costs no more than the others.

Ranking cache. A known user's ranking depends only on the (immutable) model, the user and
``exclude_seen``, and the top ``k`` of a ranking is the first ``k`` of its top
``cache_depth``; so the service keeps the top ``cache_depth`` of the last ``cache_users``
(user, exclude_seen) queries (least recently used out) and serves any ``k ≤ cache_depth``
from there without computing. Answers are identical with the cache on or off.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import numpy as np

from dlfm.errors import ConfigError, UnknownIdError
from dlfm.models.base import Recommender, versions
from dlfm.serving.queries import predict_record

#: the largest ``k`` a recommendation request may ask for
MAX_K = 1000
#: the most (user, item) pairs of one ``POST /predict``
MAX_PAIRS = 1000
#: the most samples of the predictive distribution per pair
MAX_SAMPLES = 10_000
#: the most samples of one request, all pairs together
MAX_REQUEST_SAMPLES = 1_000_000
#: the most ratings of one new user
MAX_RATINGS = 10_000
#: the longest raw id, in characters
MAX_ID_LENGTH = 256

Ranking = list[tuple[Any, float]]


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj


class ModelService:
    """A loaded model with the server's limits, a compute lock and a ranking cache.

    Args:
        model: a fitted model (e.g. :meth:`Recommender.load`); it is never changed.
        cache_users: how many (user, exclude_seen) rankings to keep; 0 turns the cache off.
        cache_depth: how many items of each cached ranking to keep; larger ``k`` are computed.
        warm: fill the model's lazy caches now, so that no request pays for them.
    """

    def __init__(self, model: Recommender, *, cache_users: int = 4096, cache_depth: int = 100, warm: bool = True):
        if not hasattr(model, "train_"):
            raise ConfigError("the model to serve is not fitted")
        if cache_users < 0 or cache_depth < 1:
            raise ConfigError("cache_users must be 0 or more and cache_depth at least 1")
        self.model = model
        self.cache_users = int(cache_users)
        self.cache_depth = min(int(cache_depth), MAX_K)
        self.lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, bool], Ranking] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.cache_hits = 0
        self.cache_misses = 0
        self.scale: tuple[float, float] = (float(model.rating_scale_[0]), float(model.rating_scale_[1]))
        self.has_distribution = hasattr(model, "predict_distribution")
        self.card = self._build_card()
        if warm:
            self.warm_up()

    # ------------------------------------------------------------------ model card
    def _build_card(self) -> dict[str, Any]:
        model = self.model
        card = dict(getattr(model, "card_", {}) or {})
        trained_with = card.pop("versions", {})
        history = getattr(model, "history_", []) or []
        serving = versions()
        for name in ("fastapi", "uvicorn"):
            try:
                serving[name] = __import__(name).__version__
            except ImportError:
                pass
        return _finite({
            "model": model.name, "dataset": card.get("dataset"), "params": model.get_params(),
            "scale": list(self.scale), "n_users": len(model.user_vocab_), "n_items": len(model.item_vocab_),
            "n_ratings": len(model.train_), "supports_new_users": bool(model.supports_new_users),
            "predictive_distribution": self.has_distribution,
            "metrics": {k: v for k, v in history[-1].items() if k != "seconds"} if history else {},
            "epochs": len(history), "card": card,
            "versions": {"trained_with": trained_with, "serving": serving},
        })

    def warm_up(self) -> None:
        """Fill the model's lazily built caches (codes, Monte Carlo masks) under the lock."""
        model = self.model
        candidates = np.flatnonzero(model.train_.item_counts > 0)
        if not len(candidates):
            return
        item = model.item_vocab_.raw(candidates[:1])[0]
        users = np.flatnonzero(model.train_.user_counts > 0)
        with self.lock:
            if len(users):
                model.recommend(model.user_vocab_.raw(users[:1])[0], 1)
            if self.has_distribution:
                model.predict_distribution([model.user_vocab_.raw([0])[0]], [item], n_samples=2)
            if model.supports_new_users:
                model.predict_new_user({item: self.scale[1]}, [item])

    # ------------------------------------------------------------------ checks
    @staticmethod
    def check_k(k: int) -> None:
        if not 1 <= k <= MAX_K:
            raise ConfigError(f"k must be between 1 and {MAX_K}, not {k}")

    def check_ratings(self, ratings: Mapping[Any, float]) -> None:
        """A new user's ratings: 1 to ``MAX_RATINGS`` finite numbers on the model's scale."""
        if not ratings:
            raise ConfigError("ratings: a new user needs at least one rating")
        if len(ratings) > MAX_RATINGS:
            raise ConfigError(f"ratings: at most {MAX_RATINGS} ratings, not {len(ratings)}")
        lo, hi = self.scale
        for item, value in ratings.items():
            if not (isinstance(value, (int, float)) and lo <= value <= hi):
                raise ConfigError(f"ratings: the rating of item {item!r} must be a number from {lo:g} to {hi:g} "
                                  f"(the model's scale), not {value!r}")

    @staticmethod
    def check_samples(samples: int, n_pairs: int = 1) -> None:
        if samples != 0 and not 2 <= samples <= MAX_SAMPLES:
            raise ConfigError(f"samples must be 0 (no distribution) or from 2 to {MAX_SAMPLES}, not {samples}")
        if samples * n_pairs > MAX_REQUEST_SAMPLES:
            raise ConfigError(f"samples: {n_pairs} pairs × {samples} samples exceed {MAX_REQUEST_SAMPLES} per request")

    # ------------------------------------------------------------------ recommend
    def user_index(self, user: Any) -> int:
        """Index of a raw user id, ``-1`` if the model never saw it."""
        return int(self.model.user_vocab_.lookup([user])[0])

    def cached_recommend(self, user: Any, k: int, exclude_seen: bool) -> Ranking | None:
        """The answer from the cache, or ``None`` (not cached, cache off, or ``k`` too deep)."""
        if not self.cache_users or k > self.cache_depth:
            return None
        key = (self.user_index(user), bool(exclude_seen))
        with self._cache_lock:
            ranking = self._cache.get(key)
            if ranking is None:
                return None
            self._cache.move_to_end(key)
            self.cache_hits += 1
        return ranking[:k]

    def recommend(self, user: Any, k: int = 10, *, exclude_seen: bool = True) -> Ranking:
        """``model.recommend(user, k, exclude_seen=...)``, through the cache.

        Raises:
            UnknownIdError: the model never saw ``user``.
            ConfigError: ``k`` outside 1..``MAX_K``.
        """
        self.check_k(k)
        cached = self.cached_recommend(user, k, exclude_seen)
        if cached is not None:
            return cached
        index = self.user_index(user)
        if index < 0:
            raise UnknownIdError(f"unknown user {user!r}")
        cache = bool(self.cache_users) and k <= self.cache_depth
        with self.lock:
            ranking = self.model.recommend(user, self.cache_depth if cache else k, exclude_seen=exclude_seen)
        if cache:
            with self._cache_lock:
                self.cache_misses += 1
                self._cache[(index, bool(exclude_seen))] = ranking
                while len(self._cache) > self.cache_users:
                    self._cache.popitem(last=False)
        return ranking[:k]

    def recommend_unknown(self, k: int = 10, *, exclude: Sequence[Any] = ()) -> Ranking:
        """The fallback ranking for a user the model cannot place: items by the model's
        prediction for an unknown user (its documented fallback, clipped to the scale: the
        training mean plus the item's bias for the baselines, the code of an empty row for
        ``dlf``/``vdlf``), ties by item index as in :meth:`Recommender.recommend`;
        ``exclude`` (raw ids) left out. Items without a training rating are never ranked."""
        self.check_k(k)
        model = self.model
        candidates = np.flatnonzero(model.train_.item_counts > 0)
        if len(exclude):
            excluded = model.item_vocab_.lookup(list(exclude))
            candidates = np.setdiff1d(candidates, excluded[excluded >= 0])
        with self.lock:
            scores = model.predict_indices(np.full(len(candidates), -1), candidates)
        order = np.lexsort((candidates, -scores))[:k]
        return list(zip(model.item_vocab_.raw(candidates[order]), (float(s) for s in scores[order])))

    def recommend_new_user(self, ratings: Mapping[Any, float], k: int = 10, *,
                           fallback: bool = False) -> tuple[Ranking, list[Any]]:
        """``model.recommend_new_user(ratings, k)`` and the rated items it ignored.

        With ``fallback``, rated items the model never saw are ignored (and listed); if none is
        left, the answer is :meth:`recommend_unknown`. Without it they are an error.

        Raises:
            UnknownIdError: an item the model never saw, without ``fallback``.
            ConfigError: ``k`` or a rating out of bounds; a model that cannot fold in new users.
        """
        self.check_k(k)
        self.check_ratings(ratings)
        model = self.model
        if not model.supports_new_users:
            raise ConfigError(f"model {model.name!r} cannot fold in new users")
        known = model.item_vocab_.lookup(list(ratings)) >= 0
        ignored = [item for item, ok in zip(ratings, known) if not ok]
        if ignored and not fallback:
            raise UnknownIdError(f"unknown item {ignored[0]!r} in ratings (send fallback=true to ignore it)")
        given = {item: float(value) for (item, value), ok in zip(ratings.items(), known) if ok}
        if not given:
            return self.recommend_unknown(k, exclude=list(ratings)), ignored
        with self.lock:
            return model.recommend_new_user(given, k), ignored

    # ------------------------------------------------------------------ predict
    def predict(self, pairs: Sequence[tuple[Any, Any]], samples: int = 0, *, fallback: bool = False) -> list[dict[str, Any]]:
        """Prediction records of (user, item) pairs, as ``dlfm predict --json`` gives them.

        One pair, or any pairs with ``samples``: one :func:`~dlfm.serving.queries.predict_record`
        per pair, the very call of ``dlfm predict`` (so a pair's samples never depend on the
        other pairs). Many pairs without samples: one batched ``model.predict(users, items)``,
        a hundred times faster than a call per pair; its means equal the per-pair ones to
        float32 rounding (≤ 1e-6: a batched matrix product may round differently), and equal
        exactly the library's ``model.predict`` of the same list.

        Raises:
            UnknownIdError: an unknown user or item, without ``fallback``.
            ConfigError: too many pairs or samples.
        """
        if not 1 <= len(pairs) <= MAX_PAIRS:
            raise ConfigError(f"pairs: from 1 to {MAX_PAIRS} pairs, not {len(pairs)}")
        self.check_samples(samples, len(pairs))
        unknown = "fallback" if fallback else "error"
        model = self.model
        if not fallback:  # every id checked before any work, so an error costs nothing
            for user, item in pairs:
                if user not in model.user_vocab_:
                    raise UnknownIdError(f"unknown user {user!r}")
                if item not in model.item_vocab_:
                    raise UnknownIdError(f"unknown item {item!r}")
        if len(pairs) == 1 or (samples and self.has_distribution):
            with self.lock:
                return _finite([predict_record(model, user, item, samples, unknown=unknown) for user, item in pairs])
        users = [user for user, _ in pairs]
        items = [item for _, item in pairs]
        known = (model.user_vocab_.lookup(users) >= 0) & (model.item_vocab_.lookup(items) >= 0)
        with self.lock:
            means = model.predict(users, items, unknown=unknown)
        return _finite([{"user": user, "item": item, "known": bool(ok), "prediction": float(mean)}
                        for user, item, ok, mean in zip(users, items, known, means)])

"""Run Surprise's algorithms on dlfm's folds: the identical train/test pairs, Surprise's own code.

scikit-surprise is an optional extra (``pip install dlfm[surprise]``). Each fold's training
part becomes a Surprise ``Trainset`` built from the raw ids, in the container's row order (so
Surprise assigns its inner ids exactly as when it reads the same rating file itself), and the
test part a list of ``(raw user, raw item, rating)`` triples. Predictions are Surprise's own
``algo.test`` estimates (clipped to the rating scale, its default for pairs it cannot predict);
RMSE and MAE are computed from them with :mod:`dlfm.evaluation.metrics`, which gives the
numbers ``surprise.accuracy`` gives.

Algorithms run with Surprise's defaults, made reproducible: ``random_state=seed`` where the
class takes one, ``verbose=False`` for the KNN family and BaselineOnly, and NumPy's global
generator (used by NormalPredictor) seeded for the duration of each fit and test, then restored.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import time
from typing import Any, Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from dlfm.data.ratings import Ratings
from dlfm.errors import ConfigError
from dlfm.models.params import parse_pairs
from dlfm.evaluation.metrics import mae, rmse

#: Surprise's prediction algorithms that the benchmark runs, in its table order
SURPRISE_ALGORITHMS: tuple[str, ...] = ("NormalPredictor", "BaselineOnly", "KNNBasic", "KNNWithMeans", "KNNBaseline",
                                        "SVD", "SVDpp", "NMF", "SlopeOne", "CoClustering")


def available() -> bool:
    """Whether scikit-surprise can be imported."""
    try:
        import surprise  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str | None:
    try:
        import surprise
    except ImportError:
        return None
    return str(getattr(surprise, "__version__", "unknown"))


def canonical_name(name: str) -> str | None:
    """The Surprise class name for ``name`` (case-insensitive), or ``None``."""
    low = name.strip().lower()
    for algo in SURPRISE_ALGORITHMS:
        if algo.lower() == low:
            return algo
    return None


def _parse_literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_params(name: str, pairs: Sequence[str]) -> dict[str, Any]:
    """``["n_factors=50", "sim_options={'name': 'pearson'}"]`` → keyword arguments of Surprise's
    ``name`` class: values read as Python literals, else kept as text, since Surprise declares
    no types (the shared reading and key check is :func:`dlfm.models.params.parse_pairs`)."""
    known = _param_names(algorithm_class(name))
    return parse_pairs(pairs, owner=f"Surprise's {name}", known=None if known is None else sorted(known),
                       value_of=lambda key, text: _parse_literal(text.strip()))


def _param_names(cls: type) -> set[str] | None:
    """The named keyword arguments of a Surprise class (``None`` when it cannot be inspected)."""
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return None
    return {n for n, p in sig.parameters.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def algorithm_class(name: str) -> type:
    import surprise

    canonical = canonical_name(name)
    if canonical is None:
        raise ConfigError(f"unknown Surprise algorithm {name!r}; known: {', '.join(SURPRISE_ALGORITHMS)}")
    return getattr(surprise, canonical)


def make_algorithm(name: str, seed: int | None = 0, **params: Any) -> Any:
    """An instance of Surprise's ``name`` with its defaults, ``params`` and the fixed seed."""
    cls = algorithm_class(name)
    names = _param_names(cls) or set()
    kwargs = dict(params)
    if "random_state" in names and seed is not None:
        kwargs.setdefault("random_state", seed)
    if "verbose" in names:
        kwargs.setdefault("verbose", False)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"Surprise's {cls.__name__}: {exc}") from None


def to_trainset(train: Ratings) -> Any:
    """A Surprise ``Trainset`` of the same ratings (raw ids, same row order, same scale)."""
    from surprise import Dataset, Reader

    frame = train.to_dataframe()[["user", "item", "rating"]]
    return Dataset.load_from_df(frame, Reader(rating_scale=tuple(train.scale))).build_full_trainset()


def to_testset(test: Ratings) -> list[tuple[Any, Any, float]]:
    """Surprise's test list ``[(raw user, raw item, rating)]`` of a container."""
    frame = test.to_dataframe()
    return list(zip(frame["user"].tolist(), frame["item"].tolist(), frame["rating"].astype(float).tolist()))


@contextlib.contextmanager
def _numpy_seed(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class SurpriseModel:
    """A fitted Surprise algorithm behind dlfm's prediction calls (``predict`` on raw ids)."""

    source = "surprise"

    def __init__(self, algo: Any, name: str, seed: int | None = 0) -> None:
        self.algo = algo
        self.name = name
        self.seed = seed
        self.history_: list[dict[str, float]] = []

    def fit(self, train: Ratings) -> "SurpriseModel":
        trainset = to_trainset(train)
        self.trainset_ = trainset
        self.train_ = train
        self.scale_ = tuple(train.scale)
        started = time.perf_counter()
        with _numpy_seed(self.seed):
            self.algo.fit(trainset)
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def test(self, test: Ratings) -> tuple[np.ndarray, int, float]:
        """Estimates for the test pairs, how many Surprise could not predict, and the seconds."""
        testset = to_testset(test)
        started = time.perf_counter()
        with _numpy_seed(self.seed):
            predictions = self.algo.test(testset)
        seconds = time.perf_counter() - started
        est = np.fromiter((p.est for p in predictions), dtype=np.float64, count=len(predictions))
        impossible = sum(1 for p in predictions if p.details.get("was_impossible", False))
        return est, impossible, seconds

    def _inner(self, indices: np.ndarray, vocab: Any, table: dict[Any, int]) -> np.ndarray:
        """Surprise's inner ids of dlfm indices (``-1`` where Surprise does not know the id)."""
        raw = vocab.ids[np.asarray(indices, dtype=np.int64)].tolist()
        return np.fromiter((table.get(r, -1) for r in raw), dtype=np.int64, count=len(raw))

    def score_matrix(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Surprise's unclipped estimate for every pair of ``users × items`` (dlfm indices of the
        training container), shape (len(users), len(items)): the ranking scores of the top-N
        protocol, as for dlfm's models. BaselineOnly, SVD, SVDpp and NMF are computed from
        their learned arrays with Surprise's own formulas, in one matrix product; the other
        algorithms call Surprise's ``predict(clip=False)`` pair by pair (slow: KNN on ML-100k
        takes minutes per fold). Pairs Surprise cannot predict get its default, the mean."""
        ts = self.trainset_
        u = self._inner(users, self.train_.user_vocab, ts._raw2inner_id_users)
        i = self._inner(items, self.train_.item_vocab, ts._raw2inner_id_items)
        fast = _fast_scores(self.algo, ts, u, i)
        if fast is not None:
            return fast
        raw_u = self.train_.user_vocab.ids[np.asarray(users, dtype=np.int64)].tolist()
        raw_i = self.train_.item_vocab.ids[np.asarray(items, dtype=np.int64)].tolist()
        out = np.empty((len(raw_u), len(raw_i)))
        with _numpy_seed(self.seed):
            for row, ru in enumerate(raw_u):
                out[row] = [self.algo.predict(ru, ri, clip=False).est for ri in raw_i]
        return out

    def predict(self, users: Sequence[Any], items: Sequence[Any]) -> np.ndarray:
        """Surprise's estimate (clipped) for each raw (user, item) pair."""
        with _numpy_seed(self.seed):
            return np.array([self.algo.predict(u, i).est for u, i in zip(users, items)], dtype=np.float64)


def _fast_scores(algo: Any, ts: Any, u: np.ndarray, i: np.ndarray) -> np.ndarray | None:
    """Surprise's estimate for ``u × i`` (inner ids, ``-1`` unknown) of the factor and bias
    models, vectorised; ``None`` for other algorithms. The formulas are Surprise's
    ``estimate``: with known user and item (ku, ki),

        BaselineOnly: μ + b_u·ku + b_i·ki
        SVD (biased): μ + b_u·ku + b_i·ki + q_iᵀp_u·ku·ki       (unbiased: q_iᵀp_u, else μ)
        SVDpp:        μ + b_u·ku + b_i·ki + q_iᵀ(p_u + |I_u|^-½ Σ_{j ∈ I_u} y_j)·ku·ki
        NMF:          q_iᵀp_u (+ μ + b_u + b_i when biased) if ku·ki, else μ.
    """
    import surprise

    mu = ts.global_mean
    ku, ki = u >= 0, i >= 0
    uu, ii = np.maximum(u, 0), np.maximum(i, 0)
    both = ku[:, None] & ki[None, :]

    def biases() -> np.ndarray:
        return mu + np.where(ku, algo.bu[uu], 0.0)[:, None] + np.where(ki, algo.bi[ii], 0.0)[None, :]

    kind = type(algo)
    if kind is surprise.BaselineOnly:
        return biases()
    if kind is surprise.SVD:
        dot = algo.pu[uu] @ algo.qi[ii].T
        if algo.biased:
            return biases() + np.where(both, dot, 0.0)
        return np.where(both, dot, mu)
    if kind is surprise.SVDpp:
        rows = [(uid, j) for uid in range(ts.n_users) for j, _ in ts.ur[uid]]
        implicit = sp.csr_matrix((np.ones(len(rows)), ([r[0] for r in rows], [r[1] for r in rows])),
                                 shape=(ts.n_users, ts.n_items))
        sizes = np.maximum(np.asarray(implicit.sum(axis=1)).ravel(), 1.0)
        user_vec = algo.pu + (implicit @ algo.yj) / np.sqrt(sizes)[:, None]
        return biases() + np.where(both, user_vec[uu] @ algo.qi[ii].T, 0.0)
    if kind is surprise.NMF:
        dot = algo.pu[uu] @ algo.qi[ii].T
        if algo.biased:
            dot = dot + mu + algo.bu[uu][:, None] + algo.bi[ii][None, :]
        return np.where(both, dot, mu)
    return None


def evaluate_fold(name: str, train: Ratings, test: Ratings, *, seed: int | None = 0,
                  params: dict[str, Any] | None = None, ranking: Any = None) -> tuple[dict[str, Any], SurpriseModel]:
    """Fit Surprise's ``name`` on ``train``, test it on ``test``: the fold record and the model;
    with ``ranking`` (a :class:`~dlfm.evaluation.ranking.RankingSpec`) also the top-N metrics,
    ranked by :meth:`SurpriseModel.score_matrix` exactly as dlfm's models are."""
    model = SurpriseModel(make_algorithm(name, seed, **(params or {})), canonical_name(name) or name, seed)
    model.fit(train)
    est, impossible, seconds = model.test(test)
    record = {"rmse": rmse(test.ratings, est), "mae": mae(test.ratings, est), "predict_seconds": seconds,
              "fit_seconds": model.fit_seconds_, "n_test": len(test), "n_impossible": impossible}
    if ranking is not None:
        from dlfm.evaluation.ranking import evaluate_ranking

        started = time.perf_counter()
        record.update(evaluate_ranking(None, train, test, ranking, score_rows=model.score_matrix))
        record["relevance_threshold"] = ranking.threshold_for(train.scale)
        record["rank_seconds"] = time.perf_counter() - started
    return record, model

"""The one model interface every dlfm model shares.

Estimator contract (scikit-learn style): ``__init__`` only stores hyper-parameters under their
own names; :meth:`Recommender.fit` validates them, starts over and returns ``self``; learned
state ends in ``_``. Subclasses write :meth:`_fit`, :meth:`_predict_indices` and the pair
:meth:`_state` / :meth:`_set_state`; everything else — raw-id handling, the fallback for
unknown users and items, clipping to the rating scale, top-N recommendation, save and load —
lives here once.

Unknown users and items
-----------------------
An id not in the vocabulary (or, for the neural models, one without a training rating) is
predicted by the model's *fallback*, clipped to the rating scale; pass ``unknown="error"`` to
get an :class:`~dlfm.errors.UnknownIdError` instead. What the fallback is, model by model:

* ``mean`` (:class:`~dlfm.models.baselines.GlobalMean`): μ, the training mean, always.
* ``baseline`` (:class:`~dlfm.models.baselines.BaselineModel`) and ``popular``: r̂ = μ + b_u + b_i
  with the unknown side's bias 0 (μ + b_i for an unknown user, μ + b_u for an unknown item, μ
  for both); ``popular`` *ranks* an unknown item with score 0.
* ``mf``: μ + b_u + b_i with the unknown side's bias *and* its factor vector 0, i.e. the same
  μ + b_i / μ + b_u / μ, from mf's own (sweep-averaged) biases; ``pmf`` learns no biases, so
  its fallback is μ.
* ``dlf`` and ``vdlf``: μ + b_u + b_i (the unknown side's bias 0) from ALS biases of the
  training ratings with ``baseline``'s default penalties (λ_u = 15, λ_i = 10, 10 sweeps;
  ``NeuralFactorModel.fallback_biases_``), for a pair whose user or item is unknown *or has no
  training rating*; the encoders' "nothing known" code is never used there.

Renamed hyper-parameters
------------------------
A model that renames a hyper-parameter keeps the old name working for one release through
``renamed_params``, the one place the aliases live::

    class MatrixFactorization(Recommender):
        renamed_params = {"n_samples": "gibbs_sweeps", "noise": "noise_scale"}   # old → new
        def __init__(self, ..., gibbs_sweeps: int = 100, noise_scale: float = 1.2): ...

and nothing else: ``__init__``, ``hyper_parameters``, ``search_space`` and the docstrings use
the new names only. Then

* ``Model(old=v)``, ``dlfm.create(name, old=v)`` and ``set_params(old=v)`` work, with a
  :class:`FutureWarning` that names the new name (pointing at the caller's line);
* ``--param old=v`` works, with one line ``dlfm: warning: ...`` on standard error
  (:func:`dlfm.models.parse_params` warns, :func:`dlfm.cli.main.main` prints it);
* a model file saved with the old names loads silently (:meth:`Recommender.load`);
* ``get_params()``, ``repr``, saved files and every JSON document carry the new names only;
  ``dlfm params MODEL`` lists the aliases under the table.

How: :meth:`Recommender.__init_subclass__` wraps the ``__init__`` of every model class whose
hierarchy declares a rename in a translator (:func:`_accepting_renamed`, made with
:func:`functools.wraps`, so :func:`inspect.signature` — and with it :meth:`param_names` and
:meth:`param_defaults` — still read the real ``__init__``). The translator reads the renames
of ``type(self)``, so a subclass inherits its parent's aliases and may add its own (merged
along the MRO by :meth:`Recommender.renamed`). Giving both an old and its new name is an
error. :meth:`canonical_params` is the translation itself, for callers that hold a
dictionary (loading a file, ``--param``, tuning).

Rating transforms
-----------------
``model.fit(train, transform="log1p")`` fits every model on t(r) = log(1 + r) (the registry and
the equations: :mod:`dlfm.models.transforms`); ``transform_`` is the fitted transform's name
(``None``: none), saved in the model file. While fitting and inside the model, ``train_``,
``scale_`` and ``global_mean_`` are in the transformed space (the model's own); the original
scale is ``rating_scale_``. Everything public answers in the original scale, r̂ = t⁻¹(t̂)
clipped to ``rating_scale_``: :meth:`predict_indices` (and so ``predict``, ``recommend``),
:meth:`score_indices`, ``score_matrix``, ``predict_new_user`` / ``predict_new_item`` (whose
given ratings are checked against the original scale and transformed before the fold-in, in
:meth:`_fold_in_ratings`), and ``distribution_indices`` (draws and quantiles mapped by t⁻¹,
``std`` of the mapped draws; its ``mean`` is t⁻¹ of the point prediction — for ``log1p`` the
median of a log-normal, not E[r]). A subclass that defines its own ``score_matrix``,
``predict_new_user``, ``predict_new_item`` or ``distribution_indices`` gets them wrapped by
:meth:`Recommender.__init_subclass__` (:func:`_back_transformed`), so the subclass computes in
the transformed space only and never sees the transform; a subclass's own ``fit`` takes
``transform`` and hands it to :meth:`Recommender.fit`.

Fitting a Gaussian model (every model but ``popular`` and a Poisson or Bernoulli ``dlf`` /
``vdlf``) without a transform on what look like heavy-tailed counts
(:func:`~dlfm.models.transforms.heavy_tailed_counts`) warns once (a
:class:`~dlfm.models.transforms.HeavyCountsWarning`, a :class:`UserWarning`).
"""

from __future__ import annotations

import functools
import inspect
import os
import platform
import sys
import time
import warnings
from typing import Any, Callable, ClassVar, Iterable, Literal, Mapping, Sequence

import numpy as np

from dlfm.data.ratings import Ratings, Vocabulary
from dlfm.errors import ConfigError, DataError, ModelFileError, TrainingError, UnknownIdError
from dlfm.models.params import Param
from dlfm.models.space import SearchSpace
from dlfm.models.transforms import HeavyCountsWarning, get_transform, heavy_tailed_counts

UnknownPolicy = Literal["fallback", "error"]
#: the largest |rating| a model fits: beyond it sums of squares overflow (and float32 sooner)
MAX_ABS_RATING = 1e15


def versions() -> dict[str, str]:
    """Versions of dlfm and the libraries that shape its numbers."""
    import numpy
    import scipy
    import torch

    from dlfm import __version__

    return {"dlfm": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "scipy": scipy.__version__, "torch": torch.__version__}


def _is_id(value: Any) -> bool:
    """Whether ``value`` is one id (not a sequence of ids)."""
    return np.isscalar(value) or (isinstance(value, np.ndarray) and value.ndim == 0)


def _id_list(ids: Any, what: str) -> list[Any]:
    """One id or a 1-D sequence of ids, as a list; a 2-D array or nested lists are an error."""
    if _is_id(ids):
        return [ids.item() if isinstance(ids, np.ndarray) else ids]
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise ConfigError(f"{what} must be one id or a 1-D sequence of ids, not a {ids.ndim}-D array of shape {ids.shape}")
        if ids.dtype != object:
            return ids.tolist()
    try:
        out = list(ids)
    except TypeError:
        raise ConfigError(f"{what} must be one id or a sequence of ids, not {type(ids).__name__}") from None
    for value in out:
        if not _is_id(value):
            raise ConfigError(f"{what} must be one id or a 1-D sequence of ids, not a sequence holding {value!r:.60}")
    return out


def _check_k(k: Any) -> None:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise ConfigError(f"k must be a whole number of items, not {k!r}")
    if k < 1:
        raise ConfigError(f"k must be at least 1, not {k}")


def _as_ratings(data: Any, what: str) -> Ratings:
    """``data`` as :class:`Ratings`: a DataFrame is read by :func:`~dlfm.data.io.from_dataframe`."""
    if isinstance(data, Ratings):
        return data
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        from dlfm.data.io import from_dataframe

        return from_dataframe(data, name=what)
    raise ConfigError(f"{what} must be Ratings or a pandas DataFrame, not {type(data).__name__}")


#: the folder of the dlfm package: frames below it are dlfm's own, not the caller's
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside the dlfm package, counted from the
    function that calls :func:`warnings.warn` (so a FutureWarning points at the user's line)."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        level += 1
        frame = frame.f_back
    return level


def _accepting_renamed(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` that first translates deprecated keyword names (:meth:`Recommender.canonical_params`
    of ``type(self)``), with a FutureWarning; :func:`functools.wraps` keeps its signature."""

    @functools.wraps(init)
    def __init__(self: "Recommender", *args: Any, **kwargs: Any) -> None:
        if kwargs and type(self).renamed():
            kwargs = type(self).canonical_params(kwargs)
        init(self, *args, **kwargs)

    __init__._accepts_renamed = True  # type: ignore[attr-defined]
    return __init__


def _back_transformed(method: Callable[..., Any], distribution: bool = False) -> Callable[..., Any]:
    """A subclass's own prediction ``method`` whose output (in the transformed space) is mapped
    back to the original scale (:meth:`Recommender._back`, or :meth:`Recommender._back_distribution`
    for a ``distribution_indices``)."""

    @functools.wraps(method)
    def wrapper(self: "Recommender", *args: Any, **kwargs: Any) -> Any:
        out = method(self, *args, **kwargs)
        return self._back_distribution(out) if distribution else self._back(out)

    wrapper._back_transformed = True  # type: ignore[attr-defined]
    return wrapper


#: the public methods a subclass may define whose output is a rating (or rating distribution)
_RATING_OUTPUTS = ("score_matrix", "predict_new_user", "predict_new_item", "distribution_indices")


class Recommender:
    """Base class of every model: fit on a :class:`Ratings`, predict, recommend, save, load.

    The fallback for unknown users and items and the mechanism for renamed hyper-parameters
    (``renamed_params``) are described in the module docstring of :mod:`dlfm.models.base`.
    """

    name: ClassVar[str] = "base"
    #: whether the model's predictions are fitted ratings (``popular`` recommends by counts: False)
    recommends_by_rating: ClassVar[bool] = True
    #: whether :meth:`predict_new_user` can fold in a user from ratings alone
    supports_new_users: ClassVar[bool] = False
    #: this class's own hyper-parameters (type, range, meaning; defaults are ``__init__``'s);
    #: a subclass lists only those its ``__init__`` adds (see :mod:`dlfm.models.params`)
    hyper_parameters: ClassVar[tuple[Param, ...]] = ()
    #: what ``dlfm tune`` searches over (:mod:`dlfm.models.space`); empty: nothing to tune
    search_space: ClassVar[SearchSpace] = {}
    #: deprecated hyper-parameter names still accepted for one release, old → new (see the
    #: module docstring); a subclass lists only its own renames, its parents' are inherited
    renamed_params: ClassVar[Mapping[str, str]] = {}
    #: what a hyper-parameter missing from an older model file meant when that file was written
    #: (a parameter added since with a default that changes behaviour); :meth:`load` fills these
    #: in before the current defaults, so a file predicts as it did
    older_file_params: ClassVar[Mapping[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap the class's ``__init__`` in :func:`_accepting_renamed` when its hierarchy
        renames a hyper-parameter (once: an inherited wrapper already reads ``type(self)``);
        check that its own ``fit`` takes ``transform``; wrap its own rating outputs
        (:data:`_RATING_OUTPUTS`) in :func:`_back_transformed` (see "Rating transforms" in the
        module docstring)."""
        super().__init_subclass__(**kwargs)
        renamed = cls.renamed()
        for old, new in renamed.items():
            if old == new or new in renamed:
                raise TypeError(f"{cls.__name__}.renamed_params: {old!r} → {new!r} is not a rename to a final name")
        if renamed and not getattr(cls.__init__, "_accepts_renamed", False):
            cls.__init__ = _accepting_renamed(cls.__init__)  # type: ignore[method-assign]
        fit = cls.__dict__.get("fit")
        if fit is not None and "transform" not in inspect.signature(fit).parameters:
            raise TypeError(f"{cls.__name__}.fit must take transform= and hand it to Recommender.fit")
        for name in _RATING_OUTPUTS:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_back_transformed", False):
                setattr(cls, name, _back_transformed(method, distribution=name == "distribution_indices"))

    @classmethod
    def renamed(cls) -> dict[str, str]:
        """Every deprecated hyper-parameter name of this class, old → new, along the MRO."""
        out: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            out.update(klass.__dict__.get("renamed_params", {}))
        return out

    @classmethod
    def canonical_params(cls, params: Mapping[str, Any], *, warn: bool = True) -> dict[str, Any]:
        """``params`` with every deprecated name replaced by its new one (order kept); with
        ``warn``, a :class:`FutureWarning` per old name, pointing at the caller's line.

        Raises:
            ConfigError: an old name and its new one are both given.
        """
        renamed = cls.renamed()
        out: dict[str, Any] = {}
        for key, value in params.items():
            new = renamed.get(key)
            if new is None:
                if key in out:
                    raise ConfigError(f"{cls.name}: {key} is given twice (once under its old name)")
                out[key] = value
                continue
            if new in params or new in out:
                raise ConfigError(f"{cls.name}: give {new} only ({key} is its deprecated old name)")
            if warn:
                warnings.warn(f"{cls.name}: the parameter {key!r} is renamed {new!r}; {key!r} still works in this "
                              f"release but will be removed", FutureWarning, stacklevel=_caller_stacklevel())
            out[new] = value
        return out

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _init_parameters(cls) -> dict[str, inspect.Parameter]:
        """Named ``__init__`` parameters along the class hierarchy (a subclass's
        ``__init__(self, extra=..., **kwargs)`` adds to its parent's)."""
        found: dict[str, inspect.Parameter] = {}
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            params = inspect.signature(init).parameters.values()
            for p in params:
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    found.setdefault(p.name, p)
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return found

    @classmethod
    def param_names(cls) -> list[str]:
        return list(cls._init_parameters())

    @classmethod
    def param_defaults(cls) -> dict[str, Any]:
        return {name: p.default for name, p in cls._init_parameters().items()}

    @classmethod
    def param_specs(cls) -> dict[str, Param]:
        """Every hyper-parameter's declaration, in ``__init__`` order, gathered along the class
        hierarchy (a subclass's declaration of a name wins)."""
        declared: dict[str, Param] = {}
        for klass in cls.__mro__:
            for spec in klass.__dict__.get("hyper_parameters", ()):
                declared.setdefault(spec.name, spec)
        return {name: declared[name] for name in cls.param_names() if name in declared}

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> "Recommender":
        """Set hyper-parameters by name (a deprecated name works, with a FutureWarning)."""
        params = self.canonical_params(params)
        known = set(self.param_names())
        for key, value in params.items():
            if key not in known:
                raise ConfigError(f"{self.name} has no parameter {key!r}; it has {', '.join(sorted(known))}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _validate_params(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid hyper-parameter, by its declared
        type and range (called by :meth:`fit` and :meth:`load`). A subclass may add checks
        that involve more than one parameter or the machine (e.g. a GPU)."""
        specs = self.param_specs()
        undeclared = [name for name in self.param_names() if name not in specs]
        if undeclared:  # a programming error of the model, caught by the tests
            raise TypeError(f"{type(self).__name__} does not declare {', '.join(undeclared)} in hyper_parameters")
        for name, spec in specs.items():
            spec.check(getattr(self, name), self.name)

    # ------------------------------------------------------------------ fitting
    def fit(self, train: Ratings, *, validation: Ratings | None = None, transform: str | None = None,
            **options: Any) -> "Recommender":
        """Learn from ``train`` (starting over); ``validation`` may steer early stopping.
        ``transform`` (``"log1p"``; see the module docstring and :mod:`dlfm.models.transforms`)
        fits on t(r) and predicts t⁻¹ of the fit, in the original scale.
        ``options`` are handed to :meth:`_fit`: only a model whose own ``fit`` declares
        them takes any (the neural models' ``checkpoint_dir``, ``resume``, ``on_epoch``).

        ``train`` and ``validation`` are :class:`Ratings` or pandas DataFrames with user,
        item and rating columns (read by :func:`dlfm.data.io.from_dataframe`).

        Raises:
            ConfigError: an invalid hyper-parameter (named), or no ratings, or an unknown
                transform, or ratings outside its domain (``log1p``: a negative rating), or a
                transform of a model whose likelihood is not Gaussian.
            TrainingError: training diverged (its learned state is not finite).

        Warns:
            HeavyCountsWarning: (a UserWarning) a Gaussian model fitted without a transform on
                heavy-tailed counts.
        """
        if options and type(self).fit is Recommender.fit:
            raise TypeError(f"{type(self).__name__}.fit() takes no option {next(iter(options))!r}")
        self._validate_params()
        train = _as_ratings(train, "train")
        if validation is not None:
            validation = _as_ratings(validation, "validation")
        if len(train) == 0:
            raise ConfigError("cannot fit on an empty training set")
        largest = float(np.max(np.abs(train.ratings)))
        if largest > MAX_ABS_RATING:
            raise DataError(f"ratings as large as {largest:g} are beyond what the models compute with "
                            f"(|rating| at most {MAX_ABS_RATING:g}); rescale them", source=train.name)
        rule = get_transform(transform)
        original_scale = train.scale
        likelihood = getattr(self, "likelihood", "gaussian")
        if rule is not None:
            if likelihood != "gaussian":
                raise ConfigError(f"{self.name}: transform {rule.name} is for a Gaussian model; the {likelihood} "
                                  f"likelihood models the raw ratings (drop the transform)")
            rule.check(train.ratings, train.name)
            train = train.with_ratings(rule.forward(train.ratings), scale=rule.scale(train.scale))
            if validation is not None:
                rule.check(validation.ratings, validation.name)
                validation = validation.with_ratings(rule.forward(validation.ratings), scale=rule.scale(validation.scale))
        elif likelihood == "gaussian" and self.recommends_by_rating:
            self._warn_heavy_counts(train)
        self.transform_: str | None = transform
        self.rating_scale_: tuple[float, float] = original_scale
        self.train_ = train
        self.user_vocab_: Vocabulary = train.user_vocab
        self.item_vocab_: Vocabulary = train.item_vocab
        self.scale_ = train.scale
        self.global_mean_ = train.global_mean
        self.history_: list[dict[str, float]] = []
        started = time.perf_counter()
        self._fit(train, validation, **options)
        self._check_finite_state()
        self.fit_seconds_ = time.perf_counter() - started
        self.card_ = {"dataset": train.name, "n_ratings": len(train), "n_users": train.n_users,
                      "n_items": train.n_items, "fit_seconds": round(self.fit_seconds_, 3),
                      "transform": transform, "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return self

    def _warn_heavy_counts(self, train: Ratings) -> None:
        """One :class:`UserWarning` when ``train`` looks like heavy-tailed counts
        (:func:`~dlfm.models.transforms.heavy_tailed_counts`) — for a Gaussian model fitted on
        them untransformed, whose predictions then crowd around the mean."""
        found = heavy_tailed_counts(train.ratings)
        if found is None:
            return
        q99, median = found
        poisson = "--likelihood poisson" if self.name in ("dlf", "vdlf") else "dlf or vdlf with --likelihood poisson"
        warnings.warn(f"{train.name} looks like heavy-tailed counts (whole numbers >= 0, 99th percentile {q99:g} vs "
                      f"median {median:g}), which a Gaussian {self.name} model fits poorly: use {poisson}, or "
                      f"--transform log1p (transform='log1p' in Python)", HeavyCountsWarning, stacklevel=_caller_stacklevel())

    def _fit(self, train: Ratings, validation: Ratings | None) -> None:
        raise NotImplementedError

    def _check_finite_state(self) -> None:
        """Raise :class:`TrainingError` when a learned array holds NaN or infinity: a model
        never predicts NaN silently."""
        for key, value in self._state().items():
            array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                raise TrainingError(f"{self.name}: training diverged ({key} is not finite); check the "
                                    f"hyper-parameters (see `dlfm params {self.name}`) and the ratings' range")

    def _check_fitted(self) -> None:
        if not hasattr(self, "train_"):
            raise ConfigError(f"this {self.name} model is not fitted yet: call fit() first")

    # ------------------------------------------------------------------ prediction
    def predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predictions for index pairs (``-1`` = unknown), clipped to the rating scale."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.shape != items.shape:
            raise ConfigError(f"users and items differ in shape ({users.shape} vs {items.shape})")
        if users.size == 0:
            return np.empty(0, dtype=np.float64)
        raw = np.asarray(self._predict_indices(users.reshape(-1), items.reshape(-1)), dtype=np.float64)
        bad = np.count_nonzero(np.isnan(raw))
        if bad:
            raise TrainingError(f"{self.name}: the model predicts NaN for {bad} of {raw.size} pairs; "
                                "its training diverged (refit with other hyper-parameters)")
        return self._back(np.clip(raw, *self.scale_)).reshape(users.shape)

    def _predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Ranking scores of index pairs (higher = recommend first), as the top-N protocol of
        :mod:`dlfm.evaluation.ranking` reads them: the prediction *before* clipping to the
        rating scale, so that items predicted above the top of the scale do not tie, plus
        :meth:`ranking_offset`. A model that ranks by something else than its rating
        (``popular``) overrides this."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if users.shape != items.shape:
            raise ConfigError(f"users and items differ in shape ({users.shape} vs {items.shape})")
        if users.size == 0:
            return np.empty(0, dtype=np.float64)
        return (self._back(np.asarray(self._predict_indices(users, items), dtype=np.float64), clip=False)
                + self.ranking_offset(items))

    def _back(self, values: Any, *, clip: bool = True) -> np.ndarray:
        """``values`` of the model's (transformed) space in the original one: t⁻¹(values),
        clipped to ``rating_scale_`` unless ``clip=False``; unchanged without a transform."""
        rule = get_transform(getattr(self, "transform_", None))
        if rule is None:
            return values
        out = rule.inverse(np.asarray(values, dtype=np.float64))
        return np.clip(out, *self.rating_scale_) if clip else out

    def _back_distribution(self, dist: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A ``distribution_indices`` result in the original scale: every draw, quantile and
        the mean mapped by t⁻¹ (t is increasing, so quantiles map to quantiles; the mean becomes
        the back-transformed point prediction, median-like, not E[r]); ``std`` that of the
        mapped draws."""
        if getattr(self, "transform_", None) is None:
            return dist
        out = {key: self._back(value) for key, value in dist.items() if key != "std"}
        if "std" in dist:
            out["std"] = out["samples"].std(axis=1) if "samples" in out else dist["std"]
        return out

    def ranking_offset(self, items: np.ndarray) -> np.ndarray:
        """What the ranking score adds to a pair's predicted rating for items ``items``
        (indices; ``-1`` for unknown): 0 here; ``dlf``/``vdlf`` add their calibrated popularity
        term w log(1 + n_j). :meth:`score_indices` of a known user and
        :meth:`recommend_new_user` of a new one both add it, so that a user is ranked the same
        way whether known or folded in."""
        return np.zeros(np.asarray(items).shape, dtype=np.float64)

    def score_matrix(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """:meth:`score_indices` of every (user, item) pair of ``users × items``, shape
        (len(users), len(items)); a model with a faster product (``mf``) overrides it."""
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        grid = self.score_indices(np.repeat(users, len(items)), np.tile(items, len(users)))
        return grid.reshape(len(users), len(items))

    def _lookup(self, users: Iterable[Any], items: Iterable[Any], unknown: UnknownPolicy) -> tuple[np.ndarray, np.ndarray]:
        """Index arrays of raw ``users`` and ``items``: two sequences of ids of one length, or
        one id (a sequence of one) against many."""
        users, items = _id_list(users, "users"), _id_list(items, "items")
        if len(users) == 1 and len(items) > 1:
            users = users * len(items)
        elif len(items) == 1 and len(users) > 1:
            items = items * len(users)
        if len(users) != len(items):
            raise ConfigError(f"users and items differ in length ({len(users)} vs {len(items)}); give one id "
                              "against many, or two sequences of one length")
        u = self.user_vocab_.lookup(users)
        i = self.item_vocab_.lookup(items)
        if unknown == "error":
            for what, raw, idx in (("user", users, u), ("item", items, i)):
                missing = np.flatnonzero(idx < 0)
                if len(missing):
                    raise UnknownIdError(f"unknown {what} {list(raw)[missing[0]]!r}")
        elif unknown != "fallback":
            raise ConfigError(f"unknown must be 'fallback' or 'error', not {unknown!r}")
        return u, i

    def predict(self, users: Sequence[Any] | Any, items: Sequence[Any] | Any, *,
                unknown: UnknownPolicy = "fallback") -> np.ndarray | float:
        """Predicted ratings for raw (user, item) ids; scalars in, a float out."""
        self._check_fitted()
        scalar = _is_id(users) and _is_id(items)
        u, i = self._lookup(users, items, unknown)
        out = self.predict_indices(u, i)
        return float(out[0]) if scalar else out

    def recommend(self, user: Any, k: int = 10, *, exclude_seen: bool = True,
                  items: Sequence[Any] | None = None) -> list[tuple[Any, float]]:
        """The ``k`` items with the highest ranking score (:meth:`score_indices`: the
        unclipped predicted rating, or popularity for ``popular``) for a known user, as
        ``(raw item id, predicted rating)`` pairs; items the user rated in training are left out
        unless ``exclude_seen=False``; items without any training rating are never recommended."""
        self._check_fitted()
        _check_k(k)
        u = self.user_vocab_.index(user, what="user")
        candidates = self._candidates(items)
        if exclude_seen:
            seen = self.train_.csr()[u].indices
            candidates = np.setdiff1d(candidates, seen, assume_unique=False)
        if k < 1:
            raise ConfigError(f"k must be at least 1, not {k}")
        users = np.full(len(candidates), u)
        order = np.lexsort((candidates, -self.score_indices(users, candidates)))[:k]  # ties by index
        chosen = candidates[order]
        predicted = self.predict_indices(users[order], chosen)
        return [(r, float(s)) for r, s in zip(self.item_vocab_.raw(chosen), predicted)]

    def recommend_batch(self, users: Sequence[Any] | np.ndarray, k: int = 10, *, exclude_seen: bool = True,
                        chunk_pairs: int = 1_000_000, progress: bool = False) -> dict[str, Any]:
        """Top-``k`` items for many known users at once, vectorised over chunks of users.

        The same ranking as :meth:`recommend` for each user (ties broken by item index), as
        flat columns of a table: ``user`` (raw ids), ``rank`` (1-based), ``item`` (raw ids)
        and ``score``; a user with fewer than ``k`` unseen items gets fewer rows.
        ``chunk_pairs`` bounds the (user, item) pairs scored at once; ``progress`` shows a
        bar on standard error when it is a terminal.

        Raises:
            UnknownIdError: for a user the model has no training rating of.
        """
        self._check_fitted()
        if k < 1:
            raise ConfigError(f"k must be at least 1, not {k}")
        idx = self.user_vocab_.lookup(list(users))
        counts = self.train_.user_counts
        bad = np.flatnonzero((idx < 0) | (counts[np.maximum(idx, 0)] == 0))
        if len(bad):
            raise UnknownIdError(f"unknown user {list(users)[bad[0]]!r}: the model has no rating of it")
        candidates = self._candidates(None)
        n_cand = len(candidates)
        position = np.full(self.train_.n_items, -1, dtype=np.int64)
        position[candidates] = np.arange(n_cand)
        csr = self.train_.csr()
        step = max(1, chunk_pairs // max(n_cand, 1))
        out_users, out_ranks, out_items, out_scores = [], [], [], []
        from tqdm import tqdm

        with tqdm(total=len(idx), desc="recommend", unit="user", disable=True if not progress or len(idx) <= step else None,
                  dynamic_ncols=True) as bar:
            for start in range(0, len(idx), step):
                chunk = idx[start:start + step]
                scores = self.score_matrix(chunk, candidates)  # the ranking of :meth:`recommend`
                if exclude_seen:
                    rows = csr[chunk]
                    row_of = np.repeat(np.arange(len(chunk)), np.diff(rows.indptr))
                    col = position[rows.indices]
                    scores[row_of[col >= 0], col[col >= 0]] = -np.inf
                top = _top_rows(scores, k)
                pair_users = []
                for row, order in enumerate(top):
                    order = order[np.isfinite(scores[row, order])]
                    out_users.append(np.full(len(order), start + row))
                    out_ranks.append(np.arange(1, len(order) + 1))
                    out_items.append(candidates[order])
                    pair_users.append(np.full(len(order), chunk[row]))
                # the served predictions of the chunk's lists in one call (a pair's prediction
                # does not depend on the rest of the request)
                if pair_users:
                    out_scores.append(self.predict_indices(np.concatenate(pair_users),
                                                           np.concatenate(out_items[-len(pair_users):])))
                bar.update(len(chunk))
        cat = (lambda parts, dtype: np.concatenate(parts) if parts else np.empty(0, dtype=dtype))
        rows_of_users = cat(out_users, np.int64)
        raw_users = list(users)
        return {"user": [raw_users[r] for r in rows_of_users.tolist()],
                "rank": cat(out_ranks, np.int64), "item": self.item_vocab_.raw(cat(out_items, np.int64)),
                "score": cat(out_scores, np.float64)}

    def _candidates(self, items: Sequence[Any] | None) -> np.ndarray:
        if items is None:
            return np.flatnonzero(self.train_.item_counts > 0)
        idx = self.item_vocab_.lookup(items)
        return idx[idx >= 0]

    def _top(self, candidates: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[Any, float]]:
        _check_k(k)
        order = np.lexsort((candidates, -scores))[:k]  # ties by index, for determinism
        raw = self.item_vocab_.raw(candidates[order])
        return [(r, float(s)) for r, s in zip(raw, scores[order])]

    # ------------------------------------------------------------------ new users
    def predict_new_user(self, ratings: Mapping[Any, float], items: Sequence[Any]) -> np.ndarray:
        """Predictions for a user the model never saw, from that user's ratings alone."""
        raise ConfigError(f"model {self.name!r} cannot fold in new users; use dlf or vdlf")

    def recommend_new_user(self, ratings: Mapping[Any, float], k: int = 10, *,
                           items: Sequence[Any] | None = None) -> list[tuple[Any, float]]:
        """Top-``k`` items for a new user given ``{item: rating}``, ranked by the fold-in's
        prediction plus :meth:`ranking_offset` (as a known user is ranked); rated items are
        excluded."""
        self._check_fitted()
        _check_k(k)
        candidates = self._candidates(items)
        rated = self.item_vocab_.lookup(list(ratings))
        candidates = np.setdiff1d(candidates, rated[rated >= 0])
        scores = np.asarray(self.predict_new_user(ratings, self.item_vocab_.raw(candidates)), dtype=np.float64)
        return self._top(candidates, scores + self.ranking_offset(candidates), k)

    def _new_user_row(self, ratings: Mapping[Any, float]) -> tuple[np.ndarray, np.ndarray]:
        """Item indices and values of a new user's ratings; unknown items are an error."""
        return self._fold_in_ratings(ratings, "user", "item")

    def _new_item_column(self, ratings: Mapping[Any, float]) -> tuple[np.ndarray, np.ndarray]:
        """User indices and values of a new item's ratings; unknown users are an error."""
        return self._fold_in_ratings(ratings, "item", "user")

    def _fold_in_ratings(self, ratings: Mapping[Any, float], new: str, other: str) -> tuple[np.ndarray, np.ndarray]:
        """The one check of a new user's ``{item: rating}`` (``new="user"``) or a new item's
        ``{user: rating}``: a non-empty mapping of known ids to finite numbers on the model's
        scale (the original one). Returns the ids' indices and the values, transformed as the
        model's training ratings were (``transform_``)."""
        if not isinstance(ratings, Mapping):
            raise ConfigError(f"a new {new}'s ratings must be a mapping {{{other}: rating}}, not {type(ratings).__name__}")
        if not ratings:
            raise ConfigError(f"a new {new} needs at least one rating")
        vocab = self.item_vocab_ if other == "item" else self.user_vocab_
        idx = vocab.lookup(list(ratings))
        missing = [key for key, k in zip(ratings, idx) if k < 0]
        if missing:
            raise UnknownIdError(f"unknown {other} {missing[0]!r} in the new {new}'s ratings")
        values = np.empty(len(ratings))
        for n, (key, value) in enumerate(ratings.items()):
            if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float, np.number)):
                raise ConfigError(f"the new {new}'s rating of {other} {key!r} must be a number, not {value!r}")
            values[n] = float(value)
            if not np.isfinite(values[n]):
                raise ConfigError(f"the new {new}'s rating of {other} {key!r} must be finite, not {value!r}")
        lo, hi = self.rating_scale_
        outside = np.flatnonzero((values < lo) | (values > hi))
        if len(outside):
            k = int(outside[0])
            raise ConfigError(f"the new {new}'s rating {values[k]:g} of {other} {list(ratings)[k]!r} is outside the "
                              f"model's rating scale [{lo:g}, {hi:g}]")
        rule = get_transform(self.transform_)
        return idx, (values if rule is None else rule.forward(values))

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, Any]:
        """Learned arrays/tensors to save (names → numpy arrays or tensors)."""
        return {}

    def _set_state(self, tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """Restore what :meth:`_state` saved."""

    def _extra_meta(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def _expect_shapes(tensors: Mapping[str, Any], shapes: Mapping[str, tuple[int | None, ...]]) -> None:
        """Raise ``ValueError`` unless each named tensor is a float array of the given shape
        (``None``: any length on that axis)
        — for :meth:`_set_state`, before a model indexes arrays read from a file."""
        for name, shape in shapes.items():
            if name not in tensors:
                raise KeyError(f"state.{name}")
            got = tuple(tensors[name].shape)
            if len(got) != len(shape) or any(want is not None and want != have for want, have in zip(shape, got)):
                raise ValueError(f"{name} has shape {got}, not {tuple('any' if w is None else w for w in shape)}")
            if not tensors[name].is_floating_point():
                raise ValueError(f"{name} is not a float array")

    def save(self, path: Any) -> None:
        """Write one self-contained file: weights, configuration, vocabularies, the training
        ratings (as the model fitted them: transformed, with ``transform_`` and the original
        ``rating_scale_`` in the meta), and a model card. Atomic: a crash leaves any previous
        file intact."""
        from dlfm.persistence import save_payload

        self._check_fitted()
        train = self.train_
        meta = {
            "model": self.name, "params": self.get_params(), "scale": list(self.scale_),
            "global_mean": self.global_mean_, "user_vocab": self.user_vocab_.to_json(),
            "item_vocab": self.item_vocab_.to_json(), "train_name": train.name,
            "card": {**self.card_, "versions": versions()}, "history": self.history_, "extra": self._extra_meta(),
            "transform": self.transform_, "rating_scale": list(self.rating_scale_),
        }
        tensors = {"train.users": train.users, "train.items": train.items, "train.ratings": train.ratings}
        tensors.update({f"state.{k}": v for k, v in self._state().items()})
        save_payload(path, meta, tensors)

    @classmethod
    def load(cls, path: Any, *, device: str | None = None) -> "Recommender":
        """Load a model saved by :meth:`save` (any model class; checks the file's kind).

        ``device`` (``cpu``, ``cuda``, ``auto``) moves a neural model there; without it a model
        saved from a GPU loads on the CPU when this machine has no GPU.
        """
        from dlfm.models import model_class
        from dlfm.persistence import load_payload

        meta, tensors = load_payload(path)
        try:
            try:
                model_cls = model_class(meta["model"])
            except ConfigError:
                raise ModelFileError(f"{path}: holds an unknown model {meta['model']!r}") from None
            if cls is not Recommender and not issubclass(model_cls, cls):
                raise ModelFileError(f"{path}: holds a {meta['model']} model, not {cls.name}")
            try:  # a file saved under a deprecated name loads silently, as the new name
                params = model_cls.canonical_params(dict(meta["params"]), warn=False)
            except ConfigError as exc:
                raise ModelFileError(f"{path}: the file is corrupt or was edited ({exc})") from None
            known = set(model_cls.param_names())
            params = {**{k: v for k, v in model_cls.older_file_params.items() if k in known}, **params}
            if "device" in params:
                import torch

                if device is not None:
                    params["device"] = device
                elif params["device"] == "cuda" and not torch.cuda.is_available():
                    params["device"] = "cpu"
            model = model_cls(**params)
            try:  # before anything is allocated from the parameters (e.g. a network's width)
                Recommender._validate_params(model)
            except ConfigError as exc:
                raise ModelFileError(f"{path}: the file is corrupt or was edited ({exc})") from None
            user_vocab = Vocabulary.from_json(meta["user_vocab"])
            item_vocab = Vocabulary.from_json(meta["item_vocab"])
            train = Ratings(tensors["train.users"].numpy(), tensors["train.items"].numpy(),
                            tensors["train.ratings"].numpy(), user_vocab, item_vocab,
                            tuple(meta["scale"]), name=meta["train_name"])
            model.train_ = train
            model.user_vocab_, model.item_vocab_ = user_vocab, item_vocab
            model.scale_ = tuple(meta["scale"])
            try:  # a file from before transforms has neither field: no transform
                get_transform(meta.get("transform"))
            except ConfigError as exc:
                raise ModelFileError(f"{path}: the file is corrupt or was edited ({exc})") from None
            model.transform_ = meta.get("transform")
            model.rating_scale_ = tuple(float(v) for v in meta.get("rating_scale", meta["scale"]))
            model.global_mean_ = float(meta["global_mean"])
            model.card_ = meta.get("card", {})
            model.history_ = meta.get("history", [])
            state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
            model._set_state(state, meta.get("extra", {}))
        except ModelFileError:
            raise
        except KeyError as exc:
            raise ModelFileError(f"{path}: the file is corrupt or incomplete (it lacks {exc})") from None
        except (TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise ModelFileError(f"{path}: the file is corrupt or was edited ({str(exc)[:300]})") from None
        return model


def _top_rows(scores: np.ndarray, k: int) -> list[np.ndarray]:
    """Per row of ``scores``, the column positions of the ``k`` highest scores, best first,
    ties by position (as :meth:`Recommender._top`): a partial selection per row, with a full
    stable sort only for the rows tied at the cut."""
    n_rows, n_cols = scores.shape
    if n_cols == 0:
        return [np.empty(0, dtype=np.int64) for _ in range(n_rows)]
    kk = min(k, n_cols)
    if kk == n_cols:
        order = np.argsort(-scores, axis=1, kind="stable")
        return list(order)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    ties = (scores >= kth[:, None]).sum(axis=1) > kk  # more candidates at the cut than places
    picked = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -picked), axis=1)
    result = list(np.take_along_axis(part, order, axis=1))
    for row in np.flatnonzero(ties):
        result[row] = np.argsort(-scores[row], kind="stable")[:kk]
    return result

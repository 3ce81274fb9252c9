"""Rating transforms: a model fitted with ``transform=NAME`` learns t(r), and predicts r̂ = t⁻¹(t̂).

One registry, :data:`TRANSFORMS`, name → :class:`Transform`; another transform is one entry.

``log1p``
    t(r) = log(1 + r), t⁻¹(t̂) = exp(t̂) − 1, for ratings r ≥ 0 (counts, durations, prices).
    A Gaussian model fitted on t(r) is a log-normal model of 1 + r; its back-transformed point
    prediction exp(t̂) − 1 is the *median* of that log-normal (its mean, E[r] = exp(t̂ + σ²/2) − 1,
    is larger), which is what a model of heavy-tailed counts should predict.

How :class:`~dlfm.models.base.Recommender` uses it (the one place): ``fit`` checks the ratings are
in the transform's domain, fits on t(r) with the scale [t(low), t(high)] (``scale_``; the
original one is ``rating_scale_``), and every prediction, ranking score, fold-in and
predictive draw is mapped back by t⁻¹ and clipped to the original scale. t is increasing, so
rankings and quantiles are unchanged by the back-transform.

The heavy-count rule (:func:`heavy_tailed_counts`) decides when fitting a Gaussian model to
untransformed data deserves a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dlfm.errors import ConfigError


@dataclass(frozen=True)
class Transform:
    """An increasing map of ratings ``forward`` with its inverse, defined for ratings ≥ ``low``."""

    name: str
    forward: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    low: float
    meaning: str

    def check(self, ratings: np.ndarray, source: str) -> None:
        """Raise :class:`ConfigError` naming the transform and the smallest rating when a rating
        lies outside the transform's domain."""
        smallest = float(np.min(ratings)) if len(ratings) else self.low
        if smallest < self.low:
            raise ConfigError(f"transform {self.name} needs ratings >= {self.low:g} ({self.meaning}); "
                              f"the smallest rating of {source} is {smallest:g}")

    def scale(self, scale: tuple[float, float]) -> tuple[float, float]:
        """The transformed rating scale [t(low), t(high)]."""
        lo, hi = self.forward(np.array(scale, dtype=np.float64))
        return float(lo), float(hi)


TRANSFORMS: dict[str, Transform] = {
    "log1p": Transform("log1p", np.log1p, np.expm1, 0.0, "t(r) = log(1 + r), inverted as exp(t) - 1"),
}


def get_transform(name: str | None) -> Transform | None:
    """The transform named ``name`` (``None``: no transform).

    Raises:
        ConfigError: an unknown name (the known ones are listed).
    """
    if name is None:
        return None
    if name not in TRANSFORMS:
        raise ConfigError(f"unknown transform {name!r}; use one of {', '.join(TRANSFORMS)} (or none)")
    return TRANSFORMS[name]


class HeavyCountsWarning(UserWarning):
    """A Gaussian model is fitted, untransformed, to ratings that look like heavy-tailed counts."""


#: the heavy-count rule: the 99th percentile at least this many times the median (or 1)
HEAVY_TAIL_RATIO = 20.0


def heavy_tailed_counts(ratings: np.ndarray) -> tuple[float, float] | None:
    """``(q99, median)`` when ``ratings`` look like heavy-tailed counts, else ``None``.

    Counts: every value a non-negative integer. Heavy-tailed: q99 ≥ 20 · max(median, 1), the
    99th percentile at least 20 times the median. The rule is scale-free (a ratio of two
    quantiles, robust to a single outlier unlike max/median); for log-normal counts
    q99 / median = exp(2.33 σ), so it fires from σ ≈ 1.3 on — counts spread over several orders
    of magnitude, where a least-squares fit is dominated by the few largest. The max(median, 1)
    keeps sparse 0/1 data (likes) out. It never fires on a bounded star scale: 1–5 stars have
    q99 ≤ 5 < 20, and half stars (0.5–5) are not integers.
    """
    values = np.asarray(ratings, dtype=np.float64)
    if len(values) == 0 or np.min(values) < 0 or not np.all(values == np.round(values)):
        return None
    q99, median = (float(q) for q in np.quantile(values, [0.99, 0.5]))
    return (q99, median) if q99 >= HEAVY_TAIL_RATIO * max(median, 1.0) else None

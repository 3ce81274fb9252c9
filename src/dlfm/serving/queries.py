"""Answers that ``dlfm predict`` and the HTTP server share, computed by the same library calls.

Both hand raw ids to the model as they arrived (a command line's strings, a JSON id); the
model's :class:`~dlfm.data.ratings.Vocabulary` maps them (``"196"`` finds the integer id 196).
"""

from __future__ import annotations

from typing import Any

from dlfm.models.base import Recommender, UnknownPolicy


def predict_record(model: Recommender, user: Any, item: Any, samples: int = 0, *,
                   unknown: UnknownPolicy = "fallback") -> dict[str, Any]:
    """The prediction of one (user, item) pair as a JSON-ready record.

    ``{"user", "item", "known", "prediction"}``, and with ``samples`` (≥ 2) for a model with a
    predictive distribution also ``std`` and the 90% interval ``q05``, ``q95``; ``prediction``
    is the point prediction (the distribution's mean). Ids come back as the model's vocabulary
    holds them, exactly as ``dlfm predict`` writes them. Each pair is computed on its own (one library call per
    pair), so the numbers of a pair never depend on the other pairs of a request.

    Raises:
        UnknownIdError: ``unknown="error"`` and the user or the item is not in the model.
        ConfigError: ``samples`` is 1 or negative.
    """
    from dlfm.cli.model_commands import predict_table  # the very function behind `dlfm predict`
    from dlfm.cli.outputs import records

    if samples and not hasattr(model, "distribution_indices"):
        samples = 0  # a point model: its prediction alone
    return records(predict_table(model, [user], [item], samples=samples, strict=unknown == "error"))[0]

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
    is then the mean of the samples. Each pair is computed on its own (one library call per
    pair), so the numbers of a pair never depend on the other pairs of a request.

    Raises:
        UnknownIdError: ``unknown="error"`` and the user or the item is not in the model.
        ConfigError: ``samples`` is 1 or negative.
    """
    record: dict[str, Any] = {"user": user, "item": item,
                              "known": bool(user in model.user_vocab_ and item in model.item_vocab_)}
    if samples and hasattr(model, "predict_distribution"):
        dist = model.predict_distribution([user], [item], n_samples=samples, unknown=unknown)
        record.update({"prediction": float(dist["mean"][0]), "std": float(dist["std"][0]),
                       "q05": float(dist["q05"][0]), "q95": float(dist["q95"][0])})
    else:
        record["prediction"] = float(model.predict(user, item, unknown=unknown))
    return record

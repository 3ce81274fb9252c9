"""Answers that ``dlfm predict`` and the HTTP server share, computed by the same library calls:
:func:`predict_table` (the columns of ``dlfm predict``), :func:`predict_record` (one pair, for
the server), :func:`records` and :func:`display_ids`. Below the CLI: nothing here imports
:mod:`dlfm.cli`.

Both hand raw ids to the model as they arrived (a command line's strings, a JSON id); the
model's :class:`~dlfm.data.ratings.Vocabulary` maps them (``"196"`` finds the integer id 196).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np

from dlfm.data.ratings import Vocabulary
from dlfm.models.base import Recommender, UnknownPolicy

_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")

#: a table: equally long columns by name (``{"user": [...], "item": [...], "prediction": array}``)
Table = Mapping[str, Sequence[Any] | np.ndarray]


def display_ids(vocab: Vocabulary, texts: Sequence[str], indices: np.ndarray) -> list[Any]:
    """Ids as they are in the data: the vocabulary's own value for a known id (the integer
    196 for ``"196"`` in an integer vocabulary), the text as given for an unknown one (an
    integer when the vocabulary's ids are integers and the text is one)."""
    known = vocab.raw(np.maximum(indices, 0)) if len(indices) else []
    out: list[Any] = []
    for text, index, value in zip(texts, indices.tolist(), known):
        if index >= 0:
            out.append(value)
        elif vocab.kind == "int" and _CANONICAL_INT.fullmatch(text) and -(2**63) <= int(text) < 2**63:
            out.append(int(text))
        else:
            out.append(text)
    return out


def records(table: Table) -> list[dict[str, Any]]:
    """The rows of ``table`` as JSON-ready dictionaries (numpy values as Python values)."""
    names = list(table)
    columns = [np.asarray(table[n]).tolist() if isinstance(table[n], np.ndarray) else list(table[n]) for n in names]
    return [dict(zip(names, row)) for row in zip(*columns)]


def predict_table(model: Any, users: list[str], items: list[str], *, samples: int, strict: bool,
                  lines: Any = None, source: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Predictions for raw (user, item) pairs as columns ``user, item, prediction[, std, q05,
    q95], known``, computed in chunks (with a progress bar when asked). ``known`` is false
    where the user or the item has no training rating, i.e. the fallback predicted."""
    from tqdm import tqdm

    from dlfm.errors import DataError, UnknownIdError

    u = model.user_vocab_.lookup(users)
    i = model.item_vocab_.lookup(items)
    train = model.train_
    has_user = (u >= 0) & (train.user_counts[np.maximum(u, 0)] > 0)
    has_item = (i >= 0) & (train.item_counts[np.maximum(i, 0)] > 0)
    if strict:
        for what, raw, known in (("user", users, has_user), ("item", items, has_item)):
            missing = np.flatnonzero(~known)
            if len(missing):
                k = int(missing[0])
                problem = f"unknown {what} {raw[k]!r} (--strict)"
                if lines is not None:
                    raise DataError(problem, source=source, line=int(lines[k]))
                raise UnknownIdError(problem)
    table: dict[str, Any] = {"user": display_ids(model.user_vocab_, users, u),
                             "item": display_ids(model.item_vocab_, items, i)}
    n = len(u)
    chunk = max(1, 2_000_000 // samples) if samples else 200_000
    columns: dict[str, list[np.ndarray]] = {}
    with tqdm(total=n, desc="predict", unit="pair", disable=True if not progress or n <= chunk else None,
              dynamic_ncols=True) as bar:  # None: no bar where stderr is not a terminal
        for start in range(0, n, chunk):
            uu, ii = u[start:start + chunk], i[start:start + chunk]
            if samples:
                dist = model.distribution_indices(uu, ii, n_samples=samples)
                parts = {"prediction": dist["mean"], "std": dist["std"], "q05": dist["q05"], "q95": dist["q95"]}
            else:
                parts = {"prediction": model.predict_indices(uu, ii)}
            for key, value in parts.items():
                columns.setdefault(key, []).append(np.asarray(value, dtype=np.float64))
            bar.update(len(uu))
    for key, parts in columns.items():
        table[key] = np.concatenate(parts)
    if not columns:
        table["prediction"] = np.empty(0)
    table["known"] = (has_user & has_item).tolist()
    return table




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
    if samples and not hasattr(model, "distribution_indices"):
        samples = 0  # a point model: its prediction alone
    return records(predict_table(model, [user], [item], samples=samples, strict=unknown == "error"))[0]

"""Cold start as a protocol: fold in new users (items) from a few ratings, without retraining.

Protocol ``new-users`` (``new-items`` is the same with users and items swapped):

1. :func:`~dlfm.data.splits.entity_folds`: the users are shuffled (seeded) into ``k`` disjoint
   sets; fold f trains on every rating of the other users.
2. Ratings of a held-out user on items no training user rated are dropped (no model can use
   them). For each ``given`` = n, :func:`~dlfm.data.splits.fold_in_split` draws n of each
   held-out user's ratings (random, seeded, nested over n) to fold in; the user's other ratings
   are scored. Users with n ratings or fewer are left out at that n.
3. **fold-in**: the model trained in step 1 predicts each held-out user from the n given
   ratings alone — ``dlf``/``vdlf`` through the user encoder g, ``mf`` by the ridge solve of
   the user's factors against the fixed item factors, ``baseline`` by the user's bias
   (:meth:`~dlfm.models.base.Recommender.predict_new_user`; ``predict_new_item`` for items).
4. **retrained** (reference): the same model fitted on the training part *plus* every given
   rating, scored on the same other ratings.

Both are scored by RMSE and MAE on the other ratings and by the top-N metrics of
:mod:`dlfm.evaluation.ranking`, where each held-out user ranks the items with a training rating
that are not among its given ones, relevant = its other ratings at or above the threshold;
both rank as the model recommends: the retrained model by its ranking score (``score_matrix``,
unclipped, as :meth:`~dlfm.models.base.Recommender.recommend`), the fold-in by its prediction
plus :meth:`~dlfm.models.base.Recommender.ranking_offset` (as ``recommend_new_user``; for
``new-items`` the offset is the item's own and the same for every user, so it changes nothing).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from dlfm.data.ratings import Ratings
from dlfm.data.splits import entity_folds, fold_in_split
from dlfm.errors import ConfigError
from dlfm.evaluation.cv import summarize
from dlfm.evaluation.metrics import mae, rmse
from dlfm.evaluation.ranking import RankingSpec, comma_tokens, rank_rows, whole_number
from dlfm.models import create
from dlfm.models.base import Recommender, versions


def parse_given(text: str, flag: str = "--given") -> list[int]:
    """``"5,10,20"`` → ``[5, 10, 20]`` (sorted, distinct, each at least 1)."""
    values = [whole_number(token, f"{flag} expects whole numbers separated by commas, not {text!r}",
                           f"{flag}: {token} — each value must be at least 1")
              for token in comma_tokens(text, flag, "value")]
    return sorted(set(values))


def transpose(ratings: Ratings) -> Ratings:
    """The same ratings with users and items swapped (items × users)."""
    return Ratings(ratings.items, ratings.users, ratings.ratings, ratings.item_vocab, ratings.user_vocab,
                   ratings.scale, ratings.timestamps, ratings.name, _checked=True)


def union(a: Ratings, b: Ratings, name: str) -> Ratings:
    """Two disjoint containers over one vocabulary as one."""
    return Ratings(np.concatenate([a.users, b.users]), np.concatenate([a.items, b.items]),
                   np.concatenate([a.ratings, b.ratings]), a.user_vocab, a.item_vocab, a.scale, name=name)


def fold_in_scores(model: Recommender, given: Ratings, rows: np.ndarray, *, side: str = "user") -> np.ndarray:
    """Each held-out row's predictions for every column, from its given ratings alone.

    ``side="user"``: rows are users, columns items, through ``model.predict_new_user``;
    ``side="item"``: rows are items, columns users, through ``model.predict_new_item``. One
    call per row (vectorised over the columns). Returns shape (len(rows), n_columns)."""
    if side == "user":
        fold_in = getattr(model, "predict_new_user", None)
        row_ids, col_ids, col_vocab = given.users, given.items, given.item_vocab
    else:
        fold_in = getattr(model, "predict_new_item", None)
        row_ids, col_ids, col_vocab = given.items, given.users, given.user_vocab
    if side == "item" and fold_in is None:
        raise ConfigError(f"model {model.name!r} cannot fold in new items")
    columns_raw = col_vocab.ids.tolist()
    order = np.argsort(row_ids, kind="stable")
    starts = np.searchsorted(row_ids[order], rows, side="left")
    stops = np.searchsorted(row_ids[order], rows, side="right")
    out = np.empty((len(rows), len(columns_raw)))
    for n, (start, stop) in enumerate(zip(starts, stops)):
        take = order[start:stop]
        known = dict(zip(col_vocab.ids[col_ids[take]].tolist(), given.ratings[take].tolist()))
        out[n] = fold_in(known, columns_raw)  # type: ignore[misc]
    return out


def _scores(predictions: np.ndarray, target: Ratings) -> dict[str, float]:
    return {"rmse": rmse(target.ratings, predictions), "mae": mae(target.ratings, predictions)}


def _ranking(score_rows: Callable[[np.ndarray, np.ndarray], np.ndarray], rows: np.ndarray, candidates: np.ndarray,
             given: Ratings, others: Ratings, spec: RankingSpec) -> dict[str, float]:
    """Top-N metrics of held-out ``rows`` (in row-major containers ``given``/``others``)."""
    shape = (given.n_users, given.n_items)
    seen = sp.csr_matrix((np.ones(len(given), dtype=np.int8), (given.users, given.items)), shape=shape)
    good = others.ratings >= spec.threshold_for(others.scale)
    relevant = sp.csr_matrix((np.ones(int(good.sum()), dtype=np.int8), (others.users[good], others.items[good])),
                             shape=shape)
    return rank_rows(score_rows, rows, candidates, seen, relevant, spec)


def evaluate_fold(model_name: str, params: dict[str, Any], train: Ratings, held: Ratings, given: Sequence[int], *,
                  side: str = "user", seed: int = 0, ranking: RankingSpec | None = None, reference: bool = True,
                  fold: str = "", on_record: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One cold-start fold: fit on ``train``, fold in each held-out user (item) of ``held`` from
    each ``given`` count, and (``reference``) refit with the given ratings; one record per count.

    Each record: ``fold, given, n_heldout, n_given, n_test, fold_in {rmse, mae, ranking...},
    retrained {...}, fit_seconds, fold_in_seconds, retrain_seconds``."""
    if side not in ("user", "item"):
        raise ConfigError(f"side must be 'user' or 'item', not {side!r}")
    flip = side == "item"
    started = time.perf_counter()
    model = create(model_name, **params).fit(train)
    fit_seconds = time.perf_counter() - started
    if side == "user" and not model.supports_new_users:
        raise ConfigError(f"model {model_name!r} cannot fold in new users")
    other_counts = train.item_counts if side == "user" else train.user_counts
    known_other = other_counts[held.items if side == "user" else held.users] > 0
    held = held.subset(known_other)
    # row-major views: rows = the held-out side (users, or items when flipped)
    t_train, t_held = (transpose(train), transpose(held)) if flip else (train, held)
    candidates = np.flatnonzero((t_train.item_counts > 0))
    # a new user's ranking score adds the model's ranking offset, as recommend_new_user does (a
    # new item's own offset is the same for every user it ranks, so none is added)
    bonus = np.zeros(t_train.n_items) if flip else model.ranking_offset(np.arange(t_train.n_items))
    records = []
    for n in given:
        g, others = fold_in_split(t_held, n, by="user", seed=seed)
        rows = np.unique(others.users)
        record: dict[str, Any] = {"fold": fold, "given": n, "n_heldout": int(len(rows)), "n_given": len(g),
                                  "n_test": len(others), "fit_seconds": fit_seconds}
        if not len(rows):
            record.update({"fold_in": {}, "retrained": {}})
            records.append(record)
            continue
        t0 = time.perf_counter()
        scores = fold_in_scores(model, transpose(g) if flip else g, rows, side=side)
        position = np.full(t_train.n_users, -1)
        position[rows] = np.arange(len(rows))
        record["fold_in"] = _scores(scores[position[others.users], others.items], others)
        if ranking is not None:
            record["fold_in"].update(_ranking(lambda r, c: scores[position[r]][:, c] + bonus[c], rows, candidates,
                                              g, others, ranking))
        record["fold_in_seconds"] = time.perf_counter() - t0
        if reference:
            t0 = time.perf_counter()
            both = union(train, transpose(g) if flip else g, name=f"{train.name} + given {n}")
            ref = create(model_name, **params).fit(both)
            if flip:
                def served(r: np.ndarray, c: np.ndarray) -> np.ndarray:
                    return ref.score_matrix(c, r).T
                pred = ref.predict_indices(others.items, others.users)
            else:
                def served(r: np.ndarray, c: np.ndarray) -> np.ndarray:
                    return ref.score_matrix(r, c)
                pred = ref.predict_indices(others.users, others.items)
            record["retrained"] = _scores(pred, others)
            if ranking is not None:
                record["retrained"].update(_ranking(served, rows, candidates, g, others, ranking))
            record["retrain_seconds"] = time.perf_counter() - t0
        records.append(record)
        if on_record is not None:
            on_record(record)
    return records


def _mean_std(records: list[dict[str, Any]], part: str) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and std over ``records`` of each metric of their ``part`` (``fold_in`` or
    ``retrained``), by :func:`dlfm.evaluation.cv.summarize`'s rule (non-finite values left
    out); a metric no record has a finite value of is left out altogether."""
    mean, std, counted = summarize([r[part] for r in records if part in r])
    empty = {key for key, n in counted.items() if n == 0}
    return ({k: v for k, v in mean.items() if k not in empty}, {k: v for k, v in std.items() if k not in empty})


def cold_start(model_name: str, params: dict[str, Any], ratings: Ratings, *, side: str = "user",
               given: Sequence[int] = (5, 10, 20), k: int = 5, seed: int = 0, ranking: RankingSpec | None = None,
               reference: bool = True, only_fold: int | None = None, dataset: str = "",
               on_record: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The whole protocol of this module over ``k`` folds of users (``side="user"``) or items;
    returns the JSON document: per-record ``folds`` and, per given count, the ``mean`` and
    ``std`` over folds of ``fold_in`` and ``retrained``."""
    folds = list(entity_folds(ratings, k, by=side, seed=seed))
    if only_fold is not None:
        if not 1 <= only_fold <= len(folds):
            raise ConfigError(f"--fold {only_fold}: there are {len(folds)} folds (count from 1)")
        folds = [folds[only_fold - 1]]
    records: list[dict[str, Any]] = []
    for n, fold in enumerate(folds):
        records += evaluate_fold(model_name, params, fold.train, fold.test, given, side=side, seed=seed + n,
                                 ranking=ranking, reference=reference, fold=fold.name, on_record=on_record)
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for n in given:
        mine = [r for r in records if r["given"] == n]
        mean[str(n)], std[str(n)] = {}, {}
        for part in ("fold_in", "retrained"):
            m, s = _mean_std(mine, part)
            if m:
                mean[str(n)][part], std[str(n)][part] = m, s
    return {"dataset": dataset, "model": model_name, "params": params,
            "protocol": "new-users" if side == "user" else "new-items", "given": list(given), "k": k, "seed": seed,
            "folds": records, "mean": mean, "std": std,
            "ranking": None if ranking is None else {"metrics": list(ranking.names), "threshold": ranking.threshold},
            "versions": versions()}


def summary_rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The printed table: one row per given count and kind (fold-in, retrained)."""
    metrics: list[str] = []
    for per_given in result["mean"].values():
        for part in per_given.values():
            metrics += [k for k in part if k not in metrics and k != "n_rank_users"]
    rows = []
    for n, per_given in result["mean"].items():
        for part, label in (("fold_in", "fold-in"), ("retrained", "retrained")):
            if part in per_given:
                rows.append([n, label, *[per_given[part].get(m, float("nan")) for m in metrics]])
    return ["given", "model", *metrics], rows

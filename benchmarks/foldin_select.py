"""Choose dlf's fold-in settings (``foldin_steps``, ``foldin_prior``, ``foldin_anchor``, ``foldin_offset_prior``) without any test rating.

The cold-start protocol's fold 1 (``dlfm cv ml-100k --protocol new-users --fold 1``) trains
on the ratings of 80% of the users. This script works inside that training part only: it
holds out a further seeded sixth of its users *and* a sixth of its items (every rating of
either), fits ``dlf`` (defaults) on the rest, and then folds in the held-out users from
``given`` = 5, 10, 20 of their ratings on the kept items (and the held-out items from their
ratings by kept users), scoring their other ratings, for a grid of (steps, λ, a, k). The protocol's
held-out users and their ratings are never read. (The new-items protocol holds out items of
another split, so this inner split is not nested in its fold; its test ratings are not read
either: the inner model is fitted on a subset of new-users fold 1's training part.)

    python benchmarks/foldin_select.py --threads 1 --json docs/coldstart/foldin_select.json
    python benchmarks/foldin_select.py --seed 2 --threads 1 --json F      # another inner split
    python benchmarks/foldin_select.py --model-file /tmp/inner.dlfm   # reuse (or write) the fit

The same inner split compares *model* settings too, peers included: ``--model M --param K=V
--no-grid`` fits model M with those settings and scores its own fold-in (``--no-grid``: no
fold-in grid), and reports the inner model's best validation RMSE (its early-stopping part,
carved from the inner training ratings) as the warm figure:

    python benchmarks/foldin_select.py --model mf --no-grid --json mf.json
    python benchmarks/foldin_select.py --param row_cap=10 --no-grid --json dlf_cap10.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from dlfm import datasets
from dlfm.data.splits import entity_folds, fold_in_split
from dlfm.evaluation.coldstart import fold_in_scores, transpose
from dlfm.evaluation.metrics import rmse
from dlfm.models import create, model_class, parse_params
from dlfm.models.base import Recommender

#: (foldin_steps, foldin_prior λ, foldin_anchor a, foldin_offset_prior k): the encoder alone, λ with
#: the prior around the encoder's code only (a = 1), then shares of it moved onto the population
#: mean, step counts; then the new row's own offset refined too, its prior k × the ALS penalty
GRID = ([(0, 1.0, 1.0, 0.0)] + [(20, lam, 1.0, 0.0) for lam in (0.1, 0.3, 1.0, 3.0)]
        + [(20, lam, a, 0.0) for lam in (0.3, 0.6) for a in (0.33, 0.5, 0.67)]
        + [(20, 0.3, 0.0, 0.0), (5, 0.3, 0.5, 0.0), (50, 0.3, 0.5, 0.0)]
        + [(20, lam, a, k) for lam in (0.3, 0.6, 1.0) for a in (0.25, 0.5, 0.75) for k in (0.15, 0.25, 0.35, 1.0)])


def inner_split(seed: int):  # type: ignore[no-untyped-def]
    """(inner training ratings, held-out users' ratings, held-out items' ratings) of new-users fold 1's
    training part; ratings between a held-out user and a held-out item are dropped."""
    ratings = datasets.load("ml-100k")
    train = next(iter(entity_folds(ratings, 5, by="user", seed=0))).train
    rng = np.random.default_rng(seed)
    users, items = np.flatnonzero(train.user_counts > 0), np.flatnonzero(train.item_counts > 0)
    held_u = np.zeros(train.n_users, bool)
    held_u[rng.choice(users, len(users) // 6, replace=False)] = True
    held_i = np.zeros(train.n_items, bool)
    held_i[rng.choice(items, len(items) // 6, replace=False)] = True
    u, i = held_u[train.users], held_i[train.items]
    return train.subset(~u & ~i, name="inner"), train.subset(u & ~i), train.subset(~u & i)


def score(model: Recommender, held, side: str, given: int, seed: int) -> float:  # type: ignore[no-untyped-def]
    rows_major = held if side == "user" else transpose(held)
    g, others = fold_in_split(rows_major, given, by="user", seed=seed)
    rows = np.unique(others.users)
    scores = fold_in_scores(model, g if side == "user" else transpose(g), rows, side=side)
    position = np.full(rows_major.n_users, -1)
    position[rows] = np.arange(len(rows))
    return rmse(others.ratings, scores[position[others.users], others.items])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-file", help="load the inner fit from here if it exists, else write it there")
    parser.add_argument("--model", default="dlf", help="the model fitted on the inner split (default dlf)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a hyper-parameter of the model (repeatable)")
    parser.add_argument("--no-grid", action="store_true",
                        help="score the model's own fold-in settings only, not the grid of (steps, λ, a)")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inner, held_users, held_items = inner_split(args.seed)
    started = time.perf_counter()
    if args.model_file and os.path.exists(args.model_file):
        model = Recommender.load(args.model_file)
    else:
        params = parse_params(args.model, args.param)
        if "verbose" in model_class(args.model).param_specs():
            params.setdefault("verbose", False)
        model = create(args.model, **params).fit(inner)
        if args.model_file:
            model.save(args.model_file)
    fit_seconds = time.perf_counter() - started
    rows = []
    grid = [None] if args.no_grid else GRID
    for setting in grid:
        row: dict = {}
        if setting is not None:
            model.foldin_steps, model.foldin_prior, model.foldin_anchor, model.foldin_offset_prior = setting
            row = {"foldin_steps": setting[0], "foldin_prior": setting[1], "foldin_anchor": setting[2],
                   "foldin_offset_prior": setting[3]}
        for side, held in (("user", held_users), ("item", held_items)):
            for n in (5, 10, 20):
                row[f"{side}_given{n}"] = score(model, held, side, n, args.seed)
        print(json.dumps(row), flush=True)
        rows.append(row)
    history = getattr(model, "history_", None) or []
    val = [r["val_rmse"] for r in history if "val_rmse" in r]
    out = {"model": args.model, "params": args.param, "seed": args.seed, "fit_seconds": fit_seconds,
           "n_inner": len(inner), "inner_val_rmse": min(val) if val else None,
           "n_held_users": int(len(np.unique(held_users.users))), "n_held_items": int(len(np.unique(held_items.items))),
           "noise_std": getattr(model, "noise_std_", None), "grid": rows}
    print(json.dumps({k: v for k, v in out.items() if k != "grid"}), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()

"""Choose dlf's fold-in settings (``foldin_steps``, ``foldin_prior``) without any test rating.

The cold-start protocol's fold 1 (``dlfm cv ml-100k --protocol new-users --fold 1``) trains
on the ratings of 80% of the users. This script works inside that training part only: it
holds out a further seeded sixth of its users *and* a sixth of its items (every rating of
either), fits ``dlf`` (defaults) on the rest, and then folds in the held-out users from
``given`` = 5, 10, 20 of their ratings on the kept items (and the held-out items from their
ratings by kept users), scoring their other ratings, for a grid of (steps, λ). The protocol's
held-out users and their ratings are never read. (The new-items protocol holds out items of
another split, so this inner split is not nested in its fold; its test ratings are not read
either: the inner model is fitted on a subset of new-users fold 1's training part.)

    python benchmarks/foldin_select.py --threads 1 --json docs/coldstart/foldin_select.json
    python benchmarks/foldin_select.py --model-file /tmp/inner.dlfm   # reuse (or write) the fit
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
from dlfm.models import create
from dlfm.models.base import Recommender

GRID = [(0, 1.0)] + [(20, lam) for lam in (0.1, 0.3, 1.0, 3.0, 10.0)] + [(5, 1.0), (50, 1.0)]


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
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    inner, held_users, held_items = inner_split(args.seed)
    started = time.perf_counter()
    if args.model_file and os.path.exists(args.model_file):
        model = Recommender.load(args.model_file)
    else:
        model = create("dlf", verbose=False).fit(inner)
        if args.model_file:
            model.save(args.model_file)
    fit_seconds = time.perf_counter() - started
    rows = []
    for steps, lam in GRID:
        model.foldin_steps, model.foldin_prior = steps, lam
        row = {"foldin_steps": steps, "foldin_prior": lam}
        for side, held in (("user", held_users), ("item", held_items)):
            for n in (5, 10, 20):
                row[f"{side}_given{n}"] = score(model, held, side, n, args.seed)
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = {"seed": args.seed, "fit_seconds": fit_seconds, "n_inner": len(inner),
           "n_held_users": int(len(np.unique(held_users.users))), "n_held_items": int(len(np.unique(held_items.items))),
           "noise_std": model.noise_std_, "grid": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()

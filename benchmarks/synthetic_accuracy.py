"""Accuracy of ``dlf`` against a known noise floor.

Synthetic ratings from a known low-rank model plus Gaussian noise of σ = ``--noise``
(ML-20M's proportions of users and items), 10% held out; ``dlf`` is trained on the rest and
its held-out RMSE is reported beside σ, the best any model can do.

``dlf`` runs with its shipped defaults (its regularisation scaled to the data by
:mod:`dlfm.training.sizing`, rows weighted by ``row_norm``); ``--large-data`` uses the
hand-set configuration earlier rounds recommended for millions of ratings instead
(``LARGE_DATA`` below, to rerun their figures), and ``--param KEY=VALUE`` overrides either.

    python benchmarks/synthetic_accuracy.py --ratings 4000000 --noise 0.9 --json acc.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ml20m_shape, report  # noqa: E402

from dlfm.data.splits import holdout, holdout_size
from dlfm.datasets import synthetic
from dlfm.evaluation.metrics import rmse
from dlfm.models import create

#: the hand-set configuration earlier rounds recommended for millions of ratings (with the
#: regularisation as given and no row_norm, as then)
LARGE_DATA = ["row_cap=10", "input_dropout=0.2", "dropout=0.2", "weight_decay=0.1", "size_scaled=false", "row_norm=0"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=4_000_000)
    parser.add_argument("--noise", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--large-data", action="store_true", help="LARGE_DATA instead of the shipped defaults")
    parser.add_argument("--defaults", action="store_true", help="the shipped defaults (the default; kept for old command lines)")
    parser.add_argument("--model", default="dlf", help="another model to compare (e.g. mf, baseline: its defaults)")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("--history", action="store_true", help="also write the per-epoch history of a neural model")
    args = parser.parse_args(argv)
    from dlfm.models import parse_params

    n = args.ratings
    users, items = ml20m_shape(n)
    data = synthetic(users, items, n, rank=10, noise=args.noise, seed=args.seed)
    fold = holdout(data, 0.1, seed=args.seed)
    started = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    neural = args.model in ("dlf", "vdlf")
    if args.large_data and args.defaults:
        parser.error("--defaults and --large-data exclude each other")
    params = parse_params(args.model, (LARGE_DATA if args.large_data and neural else []) + args.param)
    if neural:
        params.setdefault("verbose", True)
    model = create(args.model, **params).fit(fold.train)
    score = rmse(fold.test.ratings, model.predict_indices(fold.test.users, fold.test.items))
    out = {"noise": args.noise, "rmse": score, "rmse_over_noise": score / args.noise,
           "seconds": time.perf_counter() - started, "ratings": n, "users": users, "items": items,
           "epochs": len(getattr(model, "history_", [])), "model": args.model, "params": params}
    if neural:
        # epochs and seconds to the early-stopped best epoch (epochs are numbered from 1)
        out["best_epoch"] = model.best_epoch_
        out["seconds_to_best"] = sum(r.get("seconds", 0.0) for r in model.history_ if r["epoch"] <= model.best_epoch_)
        out["regularisation"] = model.regularisation_.to_json()
        # the rate of the fitting part: the training part less the trainer's validation part
        fitting = len(fold.train) - (holdout_size(len(fold.train), model.validation_ratio)
                                     if model.validation_ratio > 0 else 0)
        out["learning_rate"] = model.learning_rate(fitting)
    if args.history:
        out["history"] = list(getattr(model, "history_", []) or [])
    report(out, args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

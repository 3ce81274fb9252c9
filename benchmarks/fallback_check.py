"""The fallbacks of issue 16 on ML-100k, with a model's shipped defaults, trained on all of it.

Reports, for every user: the prediction of an item the model never saw against that user's
baseline μ + b_u (``baseline``'s ALS biases of the same ratings) — the largest and mean gap and
the share within 0.3 — and ``predict_new_item({1: 5, 2: 5}, users=[1, 2])`` (a new item that
users 1 and 2 rated 5) against the training mean and those users' μ + b_u.

    python benchmarks/fallback_check.py --model dlf --threads 2 --json docs/coldstart/fallback_check.json
"""

from __future__ import annotations

import argparse
import sys
import os
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

from dlfm import datasets
from dlfm.models import create


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dlf")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    ratings = datasets.load("ml-100k")
    started = time.perf_counter()
    model = create(args.model, **({"verbose": False} if args.model in ("dlf", "vdlf") else {})).fit(ratings)
    fit_seconds = time.perf_counter() - started
    baseline = create("baseline").fit(ratings)
    users = list(ratings.user_vocab.ids)  # every user once
    unknown = "an item nobody rated"
    got = model.predict(users, [unknown] * len(users))
    base = baseline.predict(users, [unknown] * len(users))
    gap = np.abs(got - base)
    new_item = model.predict_new_item({1: 5, 2: 5}, [1, 2])
    out = {"model": args.model, "fit_seconds": fit_seconds, "training_mean": float(ratings.global_mean),
           "unknown_item": {"max_gap": float(gap.max()), "mean_gap": float(gap.mean()),
                            "share_within_0.3": float(np.mean(gap <= 0.3)), "users": len(users)},
           "new_item_rated_5_by_users_1_2": {"prediction": new_item.tolist(),
                                             "baseline_mu_plus_b_u": baseline.predict([1, 2], [unknown] * 2).tolist()}}
    report(out, args.json)


if __name__ == "__main__":
    main()

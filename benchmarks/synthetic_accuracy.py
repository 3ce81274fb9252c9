"""Accuracy of ``dlf`` against a known noise floor.

Synthetic ratings from a known low-rank model plus Gaussian noise of σ = ``--noise``
(ML-20M's proportions of users and items), 10% held out; ``dlf`` at its defaults is trained on
the rest and its held-out RMSE is reported beside σ, the best any model can do.

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

from dlfm.data.splits import holdout
from dlfm.datasets import synthetic
from dlfm.evaluation.metrics import rmse
from dlfm.models import create



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=4_000_000)
    parser.add_argument("--noise", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    from dlfm.models import parse_params

    n = args.ratings
    users, items = ml20m_shape(n)
    data = synthetic(users, items, n, rank=10, noise=args.noise, seed=args.seed)
    fold = holdout(data, 0.1, seed=args.seed)
    started = time.perf_counter()
    model = create("dlf", verbose=True, **parse_params("dlf", args.param)).fit(fold.train)
    score = rmse(fold.test.ratings, model.predict_indices(fold.test.users, fold.test.items))
    out = {"noise": args.noise, "rmse": score, "rmse_over_noise": score / args.noise,
           "seconds": time.perf_counter() - started, "ratings": n, "users": users, "items": items,
           "epochs": len(model.history_)}
    report(out, args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

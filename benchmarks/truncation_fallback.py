"""Why dlf's "nothing known" code is bad, and what training on truncated rows does about it.

Fits ``dlf`` (defaults) on ML-100k's u1.base with, in training only, each encoder row (user)
and column (item) of a batch truncated with probability ``--p`` to a random 0..``--m`` of its
entries (weight 1 each, as a genuinely short row is read at prediction time) — by wrapping
:func:`dlfm.training.batching.gather_rows` in this process, not by changing dlfm — and reports:
u1.test RMSE; the encoders' prediction for an unknown item (the empty-column code, read by
``_mean_indices``, not the biases' fallback that ``predict`` now uses) against each user's
baseline μ + b_u; the same for an unknown user against μ + b_i; and ``predict_new_item({1: 5,
2: 5}, [1, 2])``. ``--p 0`` is dlf as it is.

    python benchmarks/truncation_fallback.py --p 0
    python benchmarks/truncation_fallback.py --p 0.1 --m 5
"""

from __future__ import annotations

import argparse
import sys
import os
import time

import numpy as np
import torch

import dlfm.training.batching as batching
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

from dlfm import datasets
from dlfm.evaluation.metrics import rmse
from dlfm.models import create
from dlfm.models.baselines import BaselineModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--p", type=float, default=0.1, help="share of rows truncated per batch")
    parser.add_argument("--m", type=int, default=5, help="a truncated row keeps 0..M entries")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    original = batching.gather_rows
    rng = np.random.default_rng(args.seed)

    def truncating(side, rows, **kw):  # type: ignore[no-untyped-def]
        seg = original(side, rows, **kw)
        if args.p <= 0 or kw.get("generator") is None:  # prediction-time reads are left alone
            return seg
        w = seg.weights.numpy().copy()
        starts = seg.offsets.numpy()
        counts = np.diff(np.append(starts, len(w)))
        for r in np.flatnonzero(rng.random(len(rows)) < args.p):
            s, c = starts[r], counts[r]
            keep = np.zeros(c, dtype=bool)
            m = int(rng.integers(0, args.m + 1))
            if m and c:
                keep[rng.choice(c, min(m, c), replace=False)] = True
            w[s:s + c] = keep.astype(np.float32)
        seg.weights = torch.from_numpy(w.astype(np.float32))
        return seg

    batching.gather_rows = truncating
    fold = next(iter(datasets.official_folds("ml-100k", "u1")))
    train, test = fold.train, fold.test
    started = time.perf_counter()
    model = create("dlf", verbose=False).fit(train)
    fit = time.perf_counter() - started
    base = BaselineModel().fit(train)
    mu = train.global_mean
    users, items = np.arange(train.n_users), np.arange(train.n_items)
    unknown_item = np.clip(model._mean_indices(model.scorer_, users, np.full(len(users), -1)), *train.scale)
    unknown_user = np.clip(model._mean_indices(model.scorer_, np.full(len(items), -1), items), *train.scale)
    gap_item = np.abs(unknown_item - np.clip(mu + base.user_bias_, *train.scale))
    gap_user = np.abs(unknown_user - np.clip(mu + base.item_bias_, *train.scale))
    out = {"p": args.p, "m": args.m, "fit_seconds": fit,
           "test_rmse": rmse(test.ratings, model.predict_indices(test.users, test.items)),
           "unknown_item_mean": float(unknown_item.mean()), "unknown_item_gap_mean": float(gap_item.mean()),
           "unknown_item_gap_max": float(gap_item.max()), "unknown_item_within_0.3": float(np.mean(gap_item <= 0.3)),
           "unknown_user_gap_mean": float(gap_user.mean()),
           "new_item_5_5_users_1_2": model.predict_new_item({1: 5, 2: 5}, [1, 2]).tolist(), "train_mean": mu}
    report(out, args.json)


if __name__ == "__main__":
    main()

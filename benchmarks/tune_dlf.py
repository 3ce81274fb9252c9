"""Choose the defaults of ``dlf`` / ``vdlf`` on validation data only.

A 10% validation part is carved (fixed seed) from each chosen official ML-100k *training*
fold (u1.base, ...); each configuration is fitted on the rest — the model carves its own
early-stopping part from that — and scored on the validation part. The test folds are never
read. Configurations are given as ``--config "key=value key=value"`` (repeatable; the
empty config is the current defaults).

    python benchmarks/tune_dlf.py --model dlf --config "" --config "lr=0.005" --json tune.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import numpy as np
import torch

from dlfm import datasets
from dlfm.data.splits import validation_split
from dlfm.evaluation.metrics import mae, rmse
from dlfm.models import create, parse_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="dlf", choices=["dlf", "vdlf"])
    parser.add_argument("--config", action="append", default=None, help="space-separated key=value overrides")
    parser.add_argument("--folds", type=int, default=1, help="how many training folds to average over (1-5)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = [validation_split(fold.train, 0.1, seed=0)
              for fold in itertools.islice(datasets.folds("ml-100k", "official"), args.folds)]
    results = []
    for config in args.config or [""]:
        params = parse_params(args.model, config.split())
        scores, maes, epochs, per_epoch = [], [], [], []
        started = time.perf_counter()
        for fit, val in splits:
            model = create(args.model, verbose=False, **params).fit(fit)
            pred = model.predict_indices(val.users, val.items)
            scores.append(rmse(val.ratings, pred))
            maes.append(mae(val.ratings, pred))
            epochs.append(model.best_epoch_)
            per_epoch.append(np.mean([h["seconds"] for h in model.history_]))
        row = {"params": params, "val_rmse": float(np.mean(scores)), "val_mae": float(np.mean(maes)),
               "best_epoch": float(np.mean(epochs)), "seconds_per_epoch": float(np.mean(per_epoch)),
               "seconds": time.perf_counter() - started}
        results.append(row)
        print(json.dumps(row), flush=True)
    best = min(results, key=lambda r: r["val_rmse"])
    print("best:", json.dumps(best))
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"model": args.model, "results": results, "best": best}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

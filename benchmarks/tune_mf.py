"""Choose the defaults of ``mf`` (and ``pmf``) on validation data only.

For each official ML-100k training fold (u1.base ... u5.base) a 10% validation part is carved
out with a fixed seed; each configuration of the grid is fitted on the rest and scored on that
validation part. The test folds are never read. Prints the table and, with ``--json``, writes
``{"model", "results": [{"params", "val_rmse"}], "best"}``.

    python benchmarks/tune_mf.py --model mf --json tune_mf.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np

from dlfm import datasets
from dlfm.data.splits import validation_split
from dlfm.evaluation.metrics import rmse
from dlfm.models import create


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mf", choices=["mf", "pmf"])
    parser.add_argument("--factors", default="10,20,50,100")
    parser.add_argument("--reg", default="0.04,0.06,0.08,0.12")
    parser.add_argument("--bias-reg", default="0.2,1.0")
    parser.add_argument("--folds", type=int, default=2, help="how many training folds to average over (1-5)")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    splits = []
    for fold in itertools.islice(datasets.folds("ml-100k", "official"), args.folds):
        splits.append(validation_split(fold.train, 0.1, seed=0))
    grid = itertools.product([int(x) for x in args.factors.split(",")], [float(x) for x in args.reg.split(",")],
                             [float(x) for x in args.bias_reg.split(",")])
    results = []
    for k, reg, bias_reg in grid:
        params = {"n_factors": k, "reg": reg, "bias_reg": bias_reg}
        scores = [rmse(val.ratings, create(args.model, **params).fit(fit).predict_indices(val.users, val.items))
                  for fit, val in splits]
        results.append({"params": params, "val_rmse": float(np.mean(scores))})
        print(f"{params}  validation RMSE {np.mean(scores):.4f}", flush=True)
    best = min(results, key=lambda r: r["val_rmse"])
    print("best:", best)
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"model": args.model, "results": results, "best": best}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

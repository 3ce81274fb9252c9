"""Choose the defaults of ``mf`` (and ``pmf``) on validation data only.

For each official ML-100k training fold (u1.base ... u5.base) a 10% validation part is carved
out with a fixed seed (``validation_split(fold.train, 0.1, seed=0)``); each configuration of the
grid is fitted on the rest and scored on that validation part. Only the training parts are
used: the test folds are never scored, so they cannot steer the choice.

The number of Gibbs sweeps costs no extra fits: a model fitted with ``validation=`` records,
after every sweep, the validation RMSE of the model that stopping there would give (the running
average of the sweeps so far; for ``n_samples=0``, the ALS warm start), so one fit with the
largest ``--samples`` value scores them all (``tests/test_mf.py`` checks that this equals
fitting each). The sample counts of the grid cap the fitting time: more sweeps average more
and score better, at a proportional cost.

Prints one line per configuration and the best; ``--json`` writes
``{"model", "grid", "results": [{"params", "val_rmse", "val_rmse_folds", "fit_seconds"}],
"best"}``.

The defaults of :class:`dlfm.models.mf.MatrixFactorization` are the best of the default grid:

    python benchmarks/tune_mf.py --json tune_mf.json

(``reg`` and ``bias_reg`` of the ALS warm start are kept at values found for plain ALS; widen
``--reg``/``--bias-reg``/``--reg-exponent`` to revisit them — ``--samples 0`` scores plain ALS.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import numpy as np

from dlfm import datasets
from dlfm.data.splits import validation_split
from dlfm.models import create


def _numbers(text: str, cast: type) -> list:
    return [cast(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mf", choices=["mf", "pmf"])
    parser.add_argument("--factors", default="10,20", help="n_factors values")
    parser.add_argument("--reg", default="0.1", help="reg values (the ALS warm start's λ)")
    parser.add_argument("--bias-reg", default="0.2", help="bias_reg values")
    parser.add_argument("--reg-exponent", default="1.0", help="reg_exponent values (α)")
    parser.add_argument("--noise", default="1.1,1.2,1.3", help="noise values (σ / warm-start RMSE)")
    parser.add_argument("--samples", default="0,50,100", help="n_samples values (scored from one fit)")
    parser.add_argument("--epochs", type=int, default=8, help="n_epochs (ALS warm-start sweeps)")
    parser.add_argument("--folds", type=int, default=5, help="how many training folds to average over (1-5)")
    parser.add_argument("--dataset", default="ml-100k", help="a named data set with official folds")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)

    samples = sorted(set(_numbers(args.samples, int)))
    splits = []
    for fold in itertools.islice(datasets.folds(args.dataset, "official"), args.folds):
        splits.append(validation_split(fold.train, 0.1, seed=0))  # fold.test is never touched
    grid = {"n_factors": _numbers(args.factors, int), "reg": _numbers(args.reg, float),
            "bias_reg": _numbers(args.bias_reg, float), "reg_exponent": _numbers(args.reg_exponent, float),
            "noise": _numbers(args.noise, float)}
    results = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values), n_epochs=args.epochs)
        # noise plays no part without sweeps: score n_samples=0 once per warm start
        counts = [s for s in samples if s > 0 or params["noise"] == grid["noise"][0]]
        if not counts:
            continue
        scores = {s: [] for s in counts}
        started = time.perf_counter()
        for fit, val in splits:
            model = create(args.model, **params, n_samples=max(counts)).fit(fit, validation=val)
            for s in counts:
                scores[s].append(model.history_[args.epochs + s - 1]["val_rmse"])
        seconds = (time.perf_counter() - started) / len(splits)
        for s in counts:
            record = {"params": {**params, "n_samples": s}, "val_rmse": float(np.mean(scores[s])),
                      "val_rmse_folds": [round(x, 5) for x in scores[s]],
                      "fit_seconds": round(seconds * (args.epochs + s) / (args.epochs + max(counts)), 2)}
            results.append(record)
            print(f"{record['params']}  validation RMSE {record['val_rmse']:.4f}  "
                  f"(folds {' '.join(f'{x:.4f}' for x in scores[s])}; ~{record['fit_seconds']:.1f} s/fit)", flush=True)
    best = min(results, key=lambda r: r["val_rmse"])
    print("best:", best)
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"model": args.model, "dataset": args.dataset, "folds": args.folds, "grid": grid,
                       "samples": samples, "n_epochs": args.epochs, "results": results, "best": best}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

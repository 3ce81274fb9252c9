"""How fast is ``dlf``? The whole 5-fold ML-100k cv next to Surprise's SVD++ on the same folds.

Runs, in one process and on the same official folds u1-u5: Surprise's SVDpp (defaults,
random_state=0) and ``dlf`` at its defaults, then reports the seconds of each whole 5-fold
run, their ratio, dlf's seconds per epoch, training ratings per second, and its achieved
GFLOP/s against this machine's float32 matmul peak measured in the same run.

    python benchmarks/speed_dlf.py --json speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import report, cpu_name, dlf_epoch_flops, matmul_peak_gflops  # noqa: E402

from dlfm import datasets  # noqa: E402
from dlfm.evaluation.metrics import mae, rmse  # noqa: E402
from dlfm.models import create  # noqa: E402
from dlfm.data.splits import validation_split  # noqa: E402
from dlfm.training.batching import Incidence  # noqa: E402


def surprise_svdpp(folds) -> dict:
    from surprise import SVDpp, Dataset, Reader

    scores, started = [], time.perf_counter()
    for fold in folds:
        frame = fold.train.to_dataframe()[["user", "item", "rating"]]
        trainset = Dataset.load_from_df(frame, Reader(rating_scale=fold.train.scale)).build_full_trainset()
        algo = SVDpp(random_state=0).fit(trainset)
        pred = np.array([algo.predict(u, i).est for u, i in zip(fold.test.raw_users(), fold.test.raw_items())])
        scores.append(rmse(fold.test.ratings, pred))
    return {"seconds": time.perf_counter() - started, "rmse": float(np.mean(scores))}


def dlf_run(folds, params) -> dict:
    scores, maes, epoch_seconds, rates, gflops, started = [], [], [], [], [], time.perf_counter()
    for fold in folds:
        model = create("dlf", verbose=False, **params).fit(fold.train)
        pred = model.predict_indices(fold.test.users, fold.test.items)
        scores.append(rmse(fold.test.ratings, pred))
        maes.append(mae(fold.test.ratings, pred))
        per_epoch = float(np.mean([h["seconds"] for h in model.history_]))
        epoch_seconds.append(per_epoch)
        n_fit = len(fold.train) - round(model.validation_ratio * len(fold.train))
        rates.append(n_fit / per_epoch)
        fit_part, _ = validation_split(fold.train, model.validation_ratio, seed=model.seed)
        inc = Incidence(fit_part, model.center_)
        sampler = model.make_sampler(inc)
        gflops.append(dlf_epoch_flops(model, inc, sampler) / per_epoch / 1e9)
    return {"seconds": time.perf_counter() - started, "rmse": float(np.mean(scores)), "mae": float(np.mean(maes)),
            "seconds_per_epoch": float(np.mean(epoch_seconds)), "ratings_per_second": float(np.mean(rates)),
            "gflops": float(np.mean(gflops))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-surprise", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    folds = list(datasets.folds("ml-100k", "official"))
    peak = matmul_peak_gflops()
    out = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "python": platform.python_version(), "torch": torch.__version__},
           "peak_gflops": peak}
    if not args.skip_surprise:
        out["svdpp"] = surprise_svdpp(folds)
        print("SVD++:", out["svdpp"], flush=True)
    out["dlf"] = dlf_run(folds, {})
    print("dlf:", out["dlf"], flush=True)
    if "svdpp" in out:
        out["ratio_to_svdpp"] = out["dlf"]["seconds"] / out["svdpp"]["seconds"]
    out["gflops_share_of_peak"] = out["dlf"]["gflops"] / peak
    report(out, args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

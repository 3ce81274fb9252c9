"""How the popularity term of dlf's ranking score moves NDCG@10, over the whole grid of w.

dlf ranks by s_ij = r̂_ij + w log(1 + n_j) with w calibrated on its validation part
(``NeuralFactorModel.calibrate_ranking``). This script reads the grid directly: a dlf with
``ranking="rating"`` (so that its score is r̂ alone) is fitted on an inner 90% of the fold's
training file and scored on the other 10% (what a calibration could see), and fitted on the
whole training file and scored on the fold's test ratings (what a report reads). The test
figures are for reading only: nothing here chooses a setting.

    python benchmarks/ranking_weight.py --fold 1 --json ranking_weight.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from dlfm.data.splits import validation_split
from dlfm.datasets import official_folds
from dlfm.evaluation.ranking import RankingSpec, evaluate_ranking
from dlfm.models import create

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 100.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    fold = list(official_folds("ml-100k"))[args.fold - 1]
    spec = RankingSpec(ks=(10,), metrics=("ndcg",))
    inner_fit, inner_val = validation_split(fold.train, 0.1, seed=0)
    out: dict[str, dict[str, float]] = {}
    for part, (train, test) in {"inner": (inner_fit, inner_val), "test": (fold.train, fold.test)}.items():
        model = create("dlf", ranking="rating", verbose=False).fit(train)
        popularity = np.log1p(train.item_counts)
        out[part] = {}
        for w in WEIGHTS:
            score = (lambda u, i, w=w: model.score_indices(u, i) + w * popularity[i])
            out[part][str(w)] = evaluate_ranking(score, train, test, spec)["ndcg@10"]
            print(f"{part:<6} w={w:<6} NDCG@10 {out[part][str(w)]:.4f}", flush=True)
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"fold": args.fold, "ndcg@10": out}, handle, indent=2)


if __name__ == "__main__":
    main()

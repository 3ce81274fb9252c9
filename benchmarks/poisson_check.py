"""Counts from a known low-rank Poisson model: does the Poisson likelihood fit them as it should?

Generates counts y ~ Poisson(exp(c + p_uᵀq_i)) (``dlfm.datasets.synthetic``), holds out 20%,
fits ``dlf`` with ``--likelihood poisson`` and with ``gaussian``, and reports the held-out
negative log-likelihood per count of: the true model (the floor), the Poisson model, and the
Gaussian model (its density N(y; ŷ, σ²) with σ from its validation part; a density of a
continuous variable, so also reported is the Poisson NLL of the Gaussian model's predicted
mean used as the rate, which compares like with like).

    python benchmarks/poisson_check.py --json poisson.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

from dlfm.datasets import synthetic
from dlfm.models import create


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--ratings", type=int, default=150000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    data, truth = synthetic(args.users, args.items, args.ratings, rank=5, likelihood="poisson", seed=args.seed,
                            with_truth=True)
    rng = np.random.default_rng(args.seed)
    test_mask = rng.random(len(data)) < 0.2
    train, test = data.subset(~test_mask), data.subset(test_mask)
    true_rate = truth.mean[test_mask]
    y = test.ratings
    out = {"ratings": len(data), "mean_count": float(data.ratings.mean()),
           "true_nll": float(-np.mean(stats.poisson.logpmf(y, true_rate)))}
    common = dict(verbose=False, seed=args.seed)
    poisson = create("dlf", likelihood="poisson", **common).fit(train)
    rate = poisson.predict_indices(test.users, test.items)
    out["poisson_nll"] = float(-np.mean(stats.poisson.logpmf(y, np.maximum(rate, 1e-9))))
    gaussian = create("dlf", likelihood="gaussian", **common).fit(train)
    mean = gaussian.predict_indices(test.users, test.items)
    out["gaussian_nll"] = float(-np.mean(stats.norm.logpdf(y, mean, gaussian.noise_std_)))
    out["gaussian_mean_as_rate_nll"] = float(-np.mean(stats.poisson.logpmf(y, np.maximum(mean, 1e-3))))
    out["poisson_over_true"] = out["poisson_nll"] / out["true_nll"]
    out["torch_threads"] = torch.get_num_threads()
    report(out, args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Heavy-tailed counts from a known log-normal–Poisson model: how the count models fare.

    log λ_ui = log μ + a_u + b_i + p_u·q_i,   a_u, b_i ~ N(0, s²),   y_ui ~ Poisson(λ_ui)

With s = 1.2 the counts span 0 to tens of thousands (a play-count set's shape). Scored on a
held-out 10%: the held-out Poisson NLL per count of the true rates, of dlfm's ``baseline``
(Gaussian biases on the raw counts, its prediction used as a rate), of Poisson biases alone
(a log-rate offset per user and item, :mod:`dlfm.models.offsets`), of ``dlf --likelihood
poisson`` with its defaults (those offsets plus the network, encoders reading log(1 + count)),
with ``offsets=global`` (the model before the offsets), and of ``vdlf``; and the range of each
model's predicted rates beside the data's.

    python benchmarks/heavy_counts_check.py --json heavy.json
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
from scipy.special import gammaln

from dlfm.data.ratings import Ratings
from dlfm.data.splits import holdout
from dlfm.models import create
from dlfm.models.offsets import RowOffsets


def generate(n_users: int, n_items: int, n_counts: int, spread: float, seed: int) -> tuple[Ratings, np.ndarray]:
    """Counts from the model above, and the true rate of each count."""
    rng = np.random.default_rng(seed)
    keys = rng.choice(n_users * n_items, size=n_counts, replace=False)
    users, items = keys // n_items, keys % n_items
    a, b = rng.normal(0, spread, n_users), rng.normal(0, spread, n_items)
    p, q = rng.normal(0, 0.4, (n_users, 3)), rng.normal(0, 0.4, (n_items, 3))
    log_rate = math.log(50.0) + a[users] + b[items] + np.einsum("nk,nk->n", p[users], q[items])
    rate = np.exp(log_rate)
    counts = rng.poisson(rate).astype(np.float64)
    return Ratings.from_raw(users, items, counts, name="lognormal-poisson"), rate


def poisson_nll(y: np.ndarray, rate: np.ndarray) -> float:
    rate = np.maximum(rate, 1e-9)
    return float(np.mean(rate - y * np.log(rate) + gammaln(y + 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--counts", type=int, default=30000)
    parser.add_argument("--spread", type=float, default=1.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    data, rate = generate(args.users, args.items, args.counts, args.spread, args.seed)
    fold = holdout(data, 0.1, seed=args.seed)
    y = fold.test.ratings
    # the true rates of the test pairs, in the test container's order
    order = {k: n for n, k in enumerate((data.users * data.n_items + data.items).tolist())}
    true_rate = rate[[order[k] for k in (fold.test.users * data.n_items + fold.test.items).tolist()]]
    out: dict[str, dict[str, float]] = {}

    def record(name: str, predicted: np.ndarray, seconds: float) -> None:
        out[name] = {"nll": poisson_nll(y, predicted), "rate_min": float(predicted.min()),
                     "rate_q25": float(np.quantile(predicted, 0.25)), "rate_median": float(np.median(predicted)),
                     "rate_max": float(predicted.max()), "seconds": round(seconds, 1)}
        print(f"{name:<28} NLL {out[name]['nll']:9.4f}   rates {predicted.min():10.2f} .. {predicted.max():10.1f}"
              f"   (q25 {out[name]['rate_q25']:.1f}, median {out[name]['rate_median']:.1f})  {seconds:.1f}s", flush=True)

    print(f"data: {len(data)} counts, {data.n_users} users × {data.n_items} items; counts "
          f"min {y.min():.0f}, q25 {np.quantile(y, 0.25):.0f}, median {np.median(y):.0f}, q75 {np.quantile(y, 0.75):.0f}, "
          f"max {y.max():.0f} (test part)")
    record("truth", true_rate, 0.0)
    started = time.perf_counter()
    m = math.log(max(fold.train.ratings.mean(), 1e-3))
    offsets = RowOffsets.fit(fold.train, "poisson", m)
    record("poisson biases (offsets)", np.exp(m + offsets.pair(fold.test.users, fold.test.items).astype(np.float64)),
           time.perf_counter() - started)
    models = {"baseline (gaussian biases)": create("baseline"),
              "dlf poisson (defaults: per-row offsets, log inputs)": create(
                  "dlf", likelihood="poisson", max_epochs=args.max_epochs, verbose=False),
              "dlf poisson, offsets=global": create("dlf", likelihood="poisson", offsets="global",
                                                    max_epochs=args.max_epochs, verbose=False),
              "vdlf poisson (defaults)": create("vdlf", likelihood="poisson", max_epochs=args.max_epochs,
                                                verbose=False)}
    for name, model in models.items():
        started = time.perf_counter()
        model.fit(fold.train)
        predicted = model.predict_indices(fold.test.users, fold.test.items)
        record(name, predicted, time.perf_counter() - started)
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"args": vars(args), "results": out}, handle, indent=2)


if __name__ == "__main__":
    main()

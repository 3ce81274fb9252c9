"""Throughput of one ``dlf`` training epoch at growing sizes with ML-20M's proportions.

For each size (default 1M, 4M and 16M ratings; users and items scaled like ML-20M's 138,493 ×
26,744 for 20M ratings), in a fresh subprocess: synthetic ratings, one epoch of ``dlf`` at its
default configuration (no validation split), and the epoch's seconds, training ratings per
second, peak resident memory, and achieved GFLOP/s against the float32 matmul peak measured in
the same run.

Memory: the peak resident set of the subprocess (``VmHWM``), and the resident set after the
data is made or loaded (``rss_mb_data``). With ``--cache DIR`` the synthetic ratings are made
once per size and loaded from DIR (the cache of ``benchmarks/sparse_optim.py``), so the peak is
that of the fit, not of the generator (which needs more than training at 16M).

    python benchmarks/scale.py --json scale.json [--sizes 1000000,4000000,16000000] [--threads 2]
        [--cache /tmp/dlfm-synthetic]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def one(n: int, threads: int, cache: str | None) -> dict:
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import dlf_epoch_flops, matmul_peak_gflops
    from sparse_optim import memory_mb, synthetic_ratings

    from dlfm.models import create

    torch.set_num_threads(threads)
    data = synthetic_ratings(n, cache)
    users, items = data.n_users, data.n_items
    data_mb = memory_mb()["rss_mb"]
    model = create("dlf", max_epochs=1, validation_ratio=0.0, verbose=False).fit(data)
    seconds = model.history_[0]["seconds"]
    incidence = model.scorer_.incidence  # every training rating: here the ratings trained on
    flops = dlf_epoch_flops(model, incidence, model.make_sampler(incidence,
                                                                 input_dropout=model.regularisation_.input_dropout))
    return {"ratings": n, "users": users, "items": items, "ratings_per_second": n / seconds,
            "seconds_per_epoch": seconds, "peak_rss_mb": memory_mb()["peak_rss_mb"], "rss_mb_data": data_mb,
            "gflops": flops / seconds / 1e9,
            "peak_gflops": matmul_peak_gflops(), "torch_threads": torch.get_num_threads()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,4000000,16000000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", help="directory for the generated synthetic ratings (reused across runs)")
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import report

    if args.one:
        print(json.dumps(one(args.one, args.threads, args.cache)))
        return 0
    sizes = []
    for n in (int(x) for x in args.sizes.split(",")):
        command = [sys.executable, os.path.abspath(__file__), "--one", str(n), "--threads", str(args.threads)]
        proc = subprocess.run(command + (["--cache", args.cache] if args.cache else []), capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return proc.returncode
        sizes.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(sizes[-1]), flush=True)
    out = {"sizes": sizes}
    if len(sizes) > 1:
        cost = [1 / s["ratings_per_second"] for s in sizes]
        out["cost_ratio_largest_to_smallest"] = cost[-1] / cost[0]
    report(out, args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

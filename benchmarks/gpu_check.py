"""GPU check: CPU and GPU predictions of ``dlf`` agree, and GPU training throughput.

Trains ``dlf`` for a few epochs on synthetic data on the CPU, loads the same weights on the
GPU, compares the predictions, then times training epochs on the GPU. Finishes in well under
three minutes on one GPU. Exits 1 when no CUDA device is present.

    python benchmarks/gpu_check.py --json gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

from dlfm.datasets import synthetic
from dlfm.models import create
from dlfm.models.base import Recommender


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    users, items = max(1000, args.ratings // 145), max(500, args.ratings // 750)
    data = synthetic(users, items, args.ratings, rank=10, noise=0.8, seed=0)
    params = dict(max_epochs=args.epochs, validation_ratio=0.0, verbose=False)
    cpu = create("dlf", device="cpu", **{**params, "max_epochs": 1}).fit(data)
    with tempfile.TemporaryDirectory() as tmp:
        cpu.save(f"{tmp}/m.dlfm")
        gpu = Recommender.load(f"{tmp}/m.dlfm")
    gpu.set_params(device="cuda")
    gpu._set_state({f"net.{k}": v for k, v in cpu.network_.state_dict().items()}, cpu._extra_meta())
    sample = np.random.default_rng(0).choice(len(data), 20000, replace=False)
    a = cpu.predict_indices(data.users[sample], data.items[sample])
    b = gpu.predict_indices(data.users[sample], data.items[sample])
    started = time.perf_counter()
    trained = create("dlf", device="cuda", **params).fit(data)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    per_epoch = float(np.mean([h["seconds"] for h in trained.history_]))
    out = {"device": torch.cuda.get_device_name(0), "ratings": len(data), "max_abs_diff": float(np.max(np.abs(a - b))),
           "agree": bool(np.allclose(a, b, atol=1e-3)), "seconds_per_epoch": per_epoch,
           "ratings_per_second": len(data) / per_epoch, "train_seconds": seconds}
    report(out, args.json_path)
    return 0 if out["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())

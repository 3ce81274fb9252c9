"""GPU check: CPU and GPU predictions of ``dlf`` and ``vdlf`` agree, GPU training
throughput, and the command line with ``--device cuda``.

Trains each model for an epoch on synthetic data on the CPU, loads the same weights on the
GPU, compares the predictions, then times training epochs of ``dlf`` on the GPU, and runs
``dlfm train``/``predict``/``recommend`` with ``--device cuda`` on a rating file. Finishes in
well under three minutes on one GPU. Exits 1 when no CUDA device is present or a check fails.

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
from common import ml20m_shape, report  # noqa: E402

from dlfm.datasets import synthetic
from dlfm.models import create
from dlfm.models.base import Recommender


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=1_000_000, help="ratings of the throughput run")
    parser.add_argument("--check-ratings", type=int, default=100_000, help="ratings of the CPU/GPU agreement check")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    started = time.perf_counter()

    def stage(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {text}", flush=True)

    out: dict = {"device": torch.cuda.get_device_name(0)}
    small = synthetic(max(1000, args.check_ratings // 100), max(500, args.check_ratings // 200), args.check_ratings, rank=10, noise=0.8, seed=0)
    sample = np.random.default_rng(0).choice(len(small), min(20000, len(small)), replace=False)
    quick = dict(max_epochs=1, validation_ratio=0.0, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("dlf", "vdlf"):
            cpu = create(name, device="cpu", **quick).fit(small)
            cpu.save(f"{tmp}/{name}.dlfm")
            gpu = Recommender.load(f"{tmp}/{name}.dlfm", device="cuda")
            a = cpu.predict_indices(small.users[sample], small.items[sample])
            b = gpu.predict_indices(small.users[sample], small.items[sample])
            out[f"{name}_max_abs_diff"] = float(np.max(np.abs(a - b)))
            out[f"{name}_agree"] = bool(np.allclose(a, b, atol=1e-3))
            stage(f"{name}: CPU and GPU predictions differ by at most {out[f'{name}_max_abs_diff']:.2e}")
        data = synthetic(*ml20m_shape(args.ratings), args.ratings, rank=10, noise=0.8, seed=0)
        trained = create("dlf", device="cuda", max_epochs=args.epochs, validation_ratio=0.0, verbose=False).fit(data)
        torch.cuda.synchronize()
        per_epoch = float(np.mean([h["seconds"] for h in trained.history_]))
        out.update(ratings=len(data), seconds_per_epoch=per_epoch, ratings_per_second=len(data) / per_epoch)
        stage(f"dlf on the GPU: {per_epoch:.2f} s per epoch of {len(data):,} ratings")
        out["cli"] = cli_round_trip(tmp)
        stage(f"command line with --device cuda: {'ok' if out['cli']['ok'] else 'FAILED'}")
    out["seconds"] = time.perf_counter() - started
    out["ok"] = bool(out["dlf_agree"] and out["vdlf_agree"] and out["cli"]["ok"])
    report(out, args.json_path)
    return 0 if out["ok"] else 1


def cli_round_trip(tmp: str) -> dict:
    """``dlfm train/predict/recommend --device cuda`` on a small rating file."""
    import subprocess

    from dlfm.datasets import write_ratings

    path = f"{tmp}/ratings.csv"
    write_ratings(synthetic(300, 200, 6000, rank=4, noise=0.5, seed=1), path)
    dlfm = [sys.executable, "-m", "dlfm"]
    steps = [dlfm + ["train", path, "--model", "dlf", "--device", "cuda", "--quiet", "--param", "max_epochs=3",
                     "-o", f"{tmp}/cli.dlfm"],
             dlfm + ["predict", f"{tmp}/cli.dlfm", "--user", "1", "--item", "1", "--device", "cuda"],
             dlfm + ["recommend", f"{tmp}/cli.dlfm", "--ratings", "1:5,2:4", "-k", "5", "--device", "cuda",
                     "--json", f"{tmp}/rec.json"]]
    result = {"ok": True, "outputs": []}
    for command in steps:
        proc = subprocess.run(command, capture_output=True, text=True)
        result["outputs"].append((proc.stdout + proc.stderr)[-400:])
        result["ok"] = result["ok"] and proc.returncode == 0
    if result["ok"]:
        with open(f"{tmp}/rec.json") as handle:
            result["recommended"] = json.load(handle)
    return result


if __name__ == "__main__":
    sys.exit(main())

"""Distributed training: 2 CPU processes with gloo under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from dlfm.datasets import synthetic, write_ratings


def test_torchrun_two_processes_gloo(tmp_path):
    data = tmp_path / "r.csv"
    write_ratings(synthetic(100, 70, 3000, seed=6), data)
    common = ["cv", str(data), "--model", "dlf", "--folds", "kfold", "--k", "3", "--fold", "1", "--quiet",
              "--threads", "1", "--device", "cpu"]
    for p in ("hidden=24", "latent=6", "decoder_hidden=8", "batch_size=256", "max_epochs=4", "ema_decay=0"):
        common += ["--param", p]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DLFM_DIST_BACKEND": "gloo"}
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "-m", "dlfm", *common, "--json", str(tmp_path / "multi.json")],
                           capture_output=True, text=True, env=env, timeout=240)
    assert multi.returncode == 0, multi.stderr[-2000:]
    single = subprocess.run([sys.executable, "-m", "dlfm", *common, "--json", str(tmp_path / "single.json")],
                            capture_output=True, text=True, env=env, timeout=240)
    assert single.returncode == 0, single.stderr[-2000:]
    a = json.loads((tmp_path / "multi.json").read_text())["folds"][0]["rmse"]
    b = json.loads((tmp_path / "single.json").read_text())["folds"][0]["rmse"]
    assert np.isfinite(a) and abs(a - b) < 0.05
    # only process 0 printed the table
    assert multi.stdout.count("mean") == 1

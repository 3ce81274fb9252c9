"""Crash-safe training: a run killed with SIGKILL and resumed equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlfm.datasets import synthetic, write_ratings
from dlfm.models import create
from dlfm.models.base import Recommender

PARAMS = ["hidden=24", "latent=6", "decoder_hidden=8", "batch_size=128", "max_epochs=8", "patience=100", "ema_decay=0.9"]


def train_cmd(data: Path, out: Path, ckpt: Path | None, resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "dlfm", "train", str(data), "--model", "dlf", "-o", str(out), "--quiet",
           "--threads", "1", "--device", "cpu"]
    for p in PARAMS:
        cmd += ["--param", p]
    if ckpt is not None:
        cmd += ["--checkpoint-dir", str(ckpt)]
    if resume:
        cmd.append("--resume")
    return cmd


def test_resume_in_process_matches_uninterrupted(tmp_path):
    data = synthetic(80, 60, 2000, seed=4)
    kw = dict(hidden=24, latent=6, decoder_hidden=8, batch_size=128, max_epochs=6, patience=100, verbose=False,
              ema_decay=0.9)
    full = create("dlf", **kw).fit(data)
    # run 3 epochs with checkpoints, then resume to 6
    create("dlf", **{**kw, "max_epochs": 3}).fit(data, checkpoint_dir=tmp_path)
    # same fingerprint requires the same params: resume with max_epochs=6 is another run
    with pytest.raises(Exception, match="another run"):
        create("dlf", **kw).fit(data, checkpoint_dir=tmp_path, resume=True)
    ckpt = tmp_path / "b"

    def interrupt_after_epoch_3(record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt  # after the epoch-3 checkpoint was written

    with pytest.raises(KeyboardInterrupt):
        create("dlf", **kw).fit(data, checkpoint_dir=ckpt, on_epoch=interrupt_after_epoch_3)
    trained = []
    resumed = create("dlf", **kw).fit(data, checkpoint_dir=ckpt, resume=True,
                                      on_epoch=lambda record: trained.append(record["epoch"]))
    assert trained == [4, 5, 6]  # the loop really ran, from where the interrupted run stopped
    assert [r["epoch"] for r in resumed.history_] == [1, 2, 3, 4, 5, 6]
    assert np.array_equal(resumed.predict_indices(data.users, data.items), full.predict_indices(data.users, data.items))


def test_sigkill_then_resume_gives_identical_predictions(tmp_path):
    data_path = tmp_path / "r.csv"
    data = synthetic(150, 100, 6000, seed=5)
    write_ratings(data, data_path)
    reference = tmp_path / "ref.dlfm"
    subprocess.run(train_cmd(data_path, reference, None), check=True, capture_output=True)

    ckpt = tmp_path / "ckpt"
    killed = tmp_path / "killed.dlfm"
    proc = subprocess.Popen(train_cmd(data_path, killed, ckpt), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt / "checkpoint.dlfm").exists():
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere in the middle of a later epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (ckpt / "checkpoint.dlfm").exists() and not killed.exists()

    subprocess.run(train_cmd(data_path, killed, ckpt, resume=True), check=True, capture_output=True)
    a, b = Recommender.load(reference), Recommender.load(killed)
    assert np.array_equal(a.predict_indices(data.users, data.items), b.predict_indices(data.users, data.items))

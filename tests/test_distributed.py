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


def test_shards_partition_every_epoch_and_take_the_same_steps():
    """Two ranks over three epochs: each epoch their ratings are disjoint and cover the training
    set exactly, and both take the same number of steps (the groups come from a shared stream,
    the input-dropout masks from each rank's own)."""
    from dlfm.training.batching import BlockSampler, Incidence

    data = synthetic(120, 80, 3000, seed=2)
    inc = Incidence(data, data.global_mean)
    ranks = [BlockSampler(inc, 100, input_keep=0.5, max_neighbors=None, seed=7, shard=(r, 2)) for r in range(2)]
    for epoch in range(3):
        batches = [list(sampler) for sampler in ranks]
        assert len(batches[0]) == len(batches[1]) > 1, f"epoch {epoch + 1}: different numbers of steps"
        shares = [np.concatenate([b.ratings for b in rank]) for rank in batches]
        assert len(np.intersect1d(shares[0], shares[1])) == 0, f"epoch {epoch + 1}: a rating on both ranks"
        union = np.sort(np.concatenate(shares))
        assert np.array_equal(union, np.arange(len(data))), f"epoch {epoch + 1}: not every rating exactly once"
        # the masks are each rank's own: the same row is not dropped identically on both ranks
        masks = [np.concatenate([b.user_segments.weights.numpy() for b in rank]) for rank in batches]
        assert not (len(masks[0]) == len(masks[1]) and np.array_equal(masks[0], masks[1]))


def test_an_empty_share_still_takes_a_step():
    """A block with fewer ratings than processes gives some rank an empty batch; its loss is 0
    with gradients (not NaN), so that rank takes the step too."""
    from dlfm.models import create
    from dlfm.training.batching import Incidence, batch_codes
    from dlfm.training.trainer import StepContext

    data = synthetic(30, 20, 200, seed=1)
    model = create("dlf", hidden=8, latent=2, decoder_hidden=4, max_epochs=1, verbose=False, device="cpu").fit(data)
    inc = Incidence(data, data.global_mean)
    sampler = model.make_sampler(inc, shard=(1, 2))
    held = np.zeros(data.n_users, dtype=bool), np.zeros(data.n_items, dtype=bool)
    batch = sampler.make_batch(np.zeros(0, dtype=np.int64), *held)
    model.network_.train()
    context = StepContext(model.network_, model.likelihood_, inc, progress=1.0)
    loss = model.training_loss(batch, *batch_codes(model.network_, batch, model.device_), context)
    assert loss.item() == 0.0
    loss.backward()

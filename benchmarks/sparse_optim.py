"""Dense vs row-sparse optimizer and weight average: ``dlf`` training steps at growing sizes.

For each size (default 1M, 4M and 16M synthetic ratings shaped like ML-20M, as in
``benchmarks/scale.py``) and each optimizer (``dense``: fused AdamW and the dense EMA of every
weight; ``sparse``: :func:`dlfm.training.optim.make_optimizer` with ``sparse_tables=True`` and
the lazy :class:`~dlfm.training.optim.WeightAverage`), in a fresh subprocess: ``--steps``
training steps of ``dlf`` at its default configuration (no validation) on the network and
sampler of a :class:`~dlfm.training.trainer.Trainer`, driven here the way the training loop
drives them (batches gathered in the same thread, as the loop does when
PyTorch has every core), timed per phase: gathering the batch (NumPy), forward, backward,
optimizer step, weight average.

Memory: the peak resident set (``VmHWM`` of /proc/self/status, the same figure as
``getrusage``'s ``ru_maxrss``) of the subprocess, plus the resident set after each stage
(data, incidence, network and optimizer, training). With ``--cache DIR`` the synthetic ratings
are generated once per size and loaded from DIR by every subprocess (so the peak is that of
training, not of the generator, which needs more than training does at 16M).

    python benchmarks/sparse_optim.py --json docs/speed/sparse_optim.json [--sizes 1000000,16000000]
        [--steps 64] [--threads 2] [--modes dense,sparse] [--cache /tmp/dlfm-synthetic]

Against a checkout from before :mod:`dlfm.training.optim` (``PYTHONPATH=<it>/src``), ``--modes
dense`` runs that checkout's training loop's AdamW and EMA. ``--before DIR`` runs every size and
mode a second time, just before this tree's run, with ``PYTHONPATH=DIR`` (another checkout's
``src``): a before/after comparison in one run, the two alternating so that a change of the
machine's load falls on both (each run is labelled ``"tree": "before"`` or ``"this"``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time

PHASES = ("batch", "forward", "backward", "optimizer", "average")


def memory_mb() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident set of this process, MB."""
    out = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[{"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb"}[key]] = int(value.split()[0]) / 1024.0
    return out


def synthetic_ratings(n: int, cache: str | None):
    """``n`` synthetic ratings shaped like ML-20M (rank 10, noise 0.8, seed 0); with ``cache``
    generated once and loaded from ``cache/synthetic_<n>.pkl`` afterwards."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import ml20m_shape

    from dlfm.datasets import synthetic

    users, items = ml20m_shape(n)
    path = os.path.join(cache, f"synthetic_{n}.pkl") if cache else None
    if path and os.path.exists(path):
        with open(path, "rb") as handle:
            return pickle.load(handle)
    data = synthetic(users, items, n, rank=10, noise=0.8, seed=0)
    if path:
        os.makedirs(cache, exist_ok=True)
        with open(path + ".tmp", "wb") as handle:
            pickle.dump(data, handle, protocol=5)
        os.replace(path + ".tmp", path)
    return data


def _loop_optimizer(network, *, lr: float, weight_decay: float, sparse_tables: bool):
    from dlfm.training.optim import adamw

    return adamw(network.parameters(), lr=lr, weight_decay=weight_decay)


class _DenseAverage:
    """The training loop's EMA (``torch._foreach_lerp_`` of every weight after every step)."""

    def __init__(self, params, decay: float, optimizer=None):
        self.params, self.decay = params, decay
        self.average = [p.detach().clone() for p in params]

    def update(self) -> None:
        import torch

        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - self.decay)


def one(n: int, mode: str, steps: int, threads: int, cache: str | None) -> dict:
    import torch

    from dlfm.models import create
    from dlfm.training.trainer import Trainer

    try:
        from dlfm.training.optim import WeightAverage, make_optimizer
    except ImportError:  # a checkout from before dlfm.training.optim: the training loop's own
        if mode != "dense":
            raise
        make_optimizer, WeightAverage = _loop_optimizer, _DenseAverage

    torch.set_num_threads(threads)
    stages = {}
    data = synthetic_ratings(n, cache)
    stages["data"] = memory_mb()
    model = create("dlf", max_epochs=1, validation_ratio=0.0, verbose=False, device="cpu")
    # the trainer of a fit: network, incidence, sampler (and its own AdamW, replaced here)
    trainer = Trainer(model, data, None)
    stages["incidence"] = memory_mb()
    net, sampler = trainer.network, trainer.sampler
    decay = getattr(trainer, "regularisation", model).weight_decay  # the trainer's, scaled to the data (older trees: the setting)
    trainer.optimizer = optimizer = make_optimizer(net, lr=model.lr, weight_decay=decay,
                                                   sparse_tables=mode == "sparse")
    params = [p for p in net.parameters() if p.requires_grad]
    average = WeightAverage(params, model.ema_decay, optimizer)
    stages["network"] = memory_mb()
    net.train()
    seconds = dict.fromkeys(PHASES, 0.0)
    rated = touched = table_rows = 0
    batches = iter(sampler)
    done = 0
    cpu_started = time.process_time()
    while done < steps:
        started = time.perf_counter()
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(sampler)
            continue
        gathered = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = trainer.step_loss(batch)
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        optimizer.step()
        stepped = time.perf_counter()
        average.update()
        averaged = time.perf_counter()
        for phase, (a, b) in zip(PHASES, ((started, gathered), (gathered, forward), (forward, backward),
                                          (backward, stepped), (stepped, averaged))):
            seconds[phase] += b - a
        rated += len(batch.ratings)
        for encoder in (net.user_encoder, net.item_encoder):
            grad = encoder.weight.grad
            touched += grad.coalesce().indices().shape[1] if grad.is_sparse else int((grad != 0).any(1).sum())
            table_rows += len(encoder.weight)
        done += 1
    stages["trained"] = memory_mb()
    cpu_seconds = time.process_time() - cpu_started
    total = sum(seconds.values())
    return {"ratings": n, "users": data.n_users, "items": data.n_items, "mode": mode, "steps": steps,
            "groups": sampler.groups, "ratings_per_step": rated / steps,
            "share_of_table_rows_touched": touched / table_rows,
            "ratings_per_second": rated / total, "seconds_per_step": total / steps,
            "seconds_per_step_by_phase": {k: v / steps for k, v in seconds.items()},
            "share_by_phase": {k: v / total for k, v in seconds.items()},
            "memory_mb_after": stages, "peak_rss_mb": memory_mb()["peak_rss_mb"], "torch_threads": threads,
            # CPU time over wall time of the steps: near the thread count on a quiet machine
            "cpu_seconds_per_wall_second": cpu_seconds / total, "load_average_1m": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,4000000,16000000")
    parser.add_argument("--modes", default="dense,sparse")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", help="directory for the generated synthetic ratings (reused across runs)")
    parser.add_argument("--before", help="another checkout's src directory, run alternately with this one")
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        n, mode = args.one.split(":")
        print(json.dumps(one(int(n), mode, args.steps, args.threads, args.cache)))
        return 0
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import report

    runs = []
    trees = (["before"] if args.before else []) + ["this"]
    for n in (int(x) for x in args.sizes.split(",")):
        for mode in args.modes.split(","):
            for tree in trees:
                command = [sys.executable, os.path.abspath(__file__), "--one", f"{n}:{mode}", "--steps", str(args.steps),
                           "--threads", str(args.threads)] + (["--cache", args.cache] if args.cache else [])
                env = dict(os.environ, PYTHONPATH=os.path.abspath(args.before)) if tree == "before" else None
                proc = subprocess.run(command, capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    return proc.returncode
                runs.append({"tree": tree, **json.loads(proc.stdout.strip().splitlines()[-1])})
                print(json.dumps({k: runs[-1][k] for k in ("tree", "ratings", "mode", "ratings_per_second",
                                                           "peak_rss_mb")}), file=sys.stderr, flush=True)
    out: dict = {"runs": runs, "load_average": os.getloadavg()}
    for tree in trees:
        for mode in args.modes.split(","):
            mine = [r for r in runs if r["mode"] == mode and r["tree"] == tree]
            if len(mine) > 1:
                suffix = f"_{mode}" if tree == "this" else f"_{mode}_before"
                out[f"cost_ratio_largest_to_smallest{suffix}"] = mine[0]["ratings_per_second"] / mine[-1]["ratings_per_second"]
    report(out, args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

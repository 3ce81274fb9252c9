"""Accuracy of ``dlf`` with the dense and the row-sparse optimizer: ML-100k's official fold u1.

One full fit per optimizer at the default settings (early stopping on the default validation
part), test RMSE and MAE on u1.test, epochs and seconds. ``dense`` is the training loop as it
is (fused AdamW); ``sparse`` puts :func:`dlfm.training.optim.make_optimizer` with
``sparse_tables=True`` in place of the loop's ``adamw`` for the fit (a stand-in until the
trainer calls ``make_optimizer`` itself). The loop's dense EMA of every weight is kept in both:
under lazy updates it equals :class:`~dlfm.training.optim.WeightAverage`'s lazy average.

    DLFM_DATA_DIR=/work/shared/datasets python benchmarks/sparse_optim_accuracy.py \\
        --json docs/speed/sparse_optim_accuracy.json [--modes dense,sparse] [--threads 1]

Run with ``--modes dense`` against another checkout (``PYTHONPATH=<it>/src``) to compare
the dense figures with that checkout's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from unittest import mock


def fit_one(mode: str, threads: int) -> dict:
    import numpy as np
    import torch

    from dlfm.datasets import official_folds
    from dlfm.models import create
    from dlfm.training import optim

    torch.set_num_threads(threads)
    fold = next(official_folds("ml-100k", "u1"))
    model = create("dlf", verbose=False, device="cpu")
    patch: contextlib.AbstractContextManager = contextlib.nullcontext()
    if mode == "sparse":  # the trainer's optimizer, row-sparse on the tables (LazyAdamW)
        dense = optim.make_optimizer

        def sparse_optimizer(network, *, lr: float, weight_decay: float, sparse_tables: bool):
            return dense(network, lr=lr, weight_decay=weight_decay, sparse_tables=True)

        patch = mock.patch.object(optim, "make_optimizer", sparse_optimizer)
    started = time.perf_counter()
    with patch:
        model.fit(fold.train)
    seconds = time.perf_counter() - started
    predicted = model.predict_indices(fold.test.users, fold.test.items)
    error = predicted - fold.test.ratings
    return {"mode": mode, "fold": "ml-100k/u1", "test_rmse": float(np.sqrt(np.mean(error ** 2))),
            "test_mae": float(np.mean(np.abs(error))), "epochs": len(model.history_), "best_epoch": model.best_epoch_,
            "best_val_rmse": min(r["val_rmse"] for r in model.history_), "fit_seconds": seconds,
            "torch_threads": threads}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="dense,sparse")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import report

    report({"runs": [fit_one(mode, args.threads) for mode in args.modes.split(",")]}, args.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Distributed training with PyTorch's own engine: ``torch.distributed`` + DDP, launched by
``torchrun``.

Launch any dlfm command under torchrun and the neural models train data-parallel::

    torchrun --standalone --nproc_per_node=2 -m dlfm cv ml-100k --model dlf --fold 1
    torchrun --nnodes=2 --node_rank=0 --rdzv_backend=c10d --rdzv_endpoint=HOST:29400 \\
             --nproc_per_node=8 -m dlfm train ml-20m --model dlf -o model.dlfm   # on each node

(``dlfm train --distributed --nproc-per-node N`` starts the single-node form for you.)
torchrun sets ``WORLD_SIZE``/``RANK``; dlfm then joins the process group (``gloo`` on CPU,
``nccl`` on CUDA). Every process reads the same data and deals the same random blocks of
ratings; each block's ratings are sharded by rating across the processes, each process encodes
the rows its shard needs, and DDP averages the gradients — so one step of N processes follows
the same trajectory as one step of a single process, with the per-rating work split N ways.
Validation runs on every process (the weights are identical); only process 0 prints, writes
checkpoints, saves models and writes results.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size), joining the process group when launched by torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("DLFM_DIST_BACKEND", "") != "gloo" else "gloo"
        dist.init_process_group(backend=backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


class Objective(torch.nn.Module):
    """The training loss as a module, so that DDP can wrap it: ``forward(batch) -> loss``."""

    def __init__(self, network: torch.nn.Module, loss_fn):
        super().__init__()
        self.network = network
        self._loss_fn = loss_fn

    def forward(self, batch):  # noqa: D401 - DDP calls this
        return self._loss_fn(batch)


def wrap(network: torch.nn.Module, loss_fn, device: torch.device):
    """``loss_fn`` itself in one process; a DDP-wrapped objective under torchrun."""
    rank, size = world()
    if size <= 1:
        return loss_fn
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index or 0] if device.type == "cuda" else None
    return DistributedDataParallel(Objective(network, loss_fn), device_ids=ids, find_unused_parameters=True)


def launch(argv: list[str], nproc: int) -> int:
    """Re-run ``dlfm argv`` under torchrun with ``nproc`` processes on this machine."""
    from torch.distributed import run

    args = ["--standalone", f"--nproc_per_node={nproc}", "-m", "dlfm", *argv]
    run.main(args)
    return 0

"""Crash-safe training: a checkpoint after every epoch, and resuming from it.

A checkpoint is one file ``DIR/checkpoint.dlfm`` in the model-file format (weights plus JSON,
read with ``torch.load(weights_only=True)``), replaced atomically after every epoch (temporary
file, flush, fsync, rename): a run killed at any moment leaves the previous epoch's checkpoint
intact. It holds the network and optimizer state, the loop state (epoch, best score, best
weights, history), the batch sampler's and torch's random states, and a fingerprint of the
data and hyper-parameters so that ``--resume`` refuses a checkpoint of another run. Resuming
on CPU with the same seed gives the same predictions as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlfm.errors import ConfigError, ModelFileError, TrainingError
from dlfm.persistence import load_payload, save_payload
from dlfm.training.loop import LoopState

KIND = "dlfm-checkpoint"
FILENAME = "checkpoint.dlfm"


def check_directory(directory: str | Path) -> Path:
    """Make sure checkpoints can be written to ``directory`` (creating it), before training
    starts rather than after its first epoch.

    Raises:
        ConfigError: ``directory`` (or a folder above it) is a file, or it cannot be created
            or written.
    """
    path = Path(directory)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is a file" if folder == path else f"is inside {folder}, which is a file"
                raise ConfigError(f"checkpoint folder {path} {what}, not a folder")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"checkpoint folder {path} cannot be created: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"checkpoint folder {path} is not writable")
    return path


def fingerprint(params: dict[str, Any], users: np.ndarray, items: np.ndarray, ratings: np.ndarray) -> str:
    """Hash of the hyper-parameters and the training data."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for array in (users, items, ratings):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, slots in state["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, slots in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(slots)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(directory: str | Path, *, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    loop_state: LoopState, sampler_state: dict[str, Any], extra: dict[str, Any], key: str) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {f"net.{k}": v for k, v in network.state_dict().items()}
    if loop_state.best_weights is not None:
        tensors.update({f"best.{k}": v for k, v in loop_state.best_weights.items()})
    if loop_state.average is not None:
        tensors.update({f"ema.{k}": v for k, v in enumerate(loop_state.average)})
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    tensors.update(opt_tensors)
    tensors["torch_rng"] = torch.get_rng_state()
    meta = {
        "key": key, "optimizer": opt_meta, "sampler": sampler_state, "extra": extra,
        "loop": {"epoch": loop_state.epoch, "best_score": loop_state.best_score, "best_epoch": loop_state.best_epoch,
                 "bad_epochs": loop_state.bad_epochs, "history": loop_state.history},
    }
    path = directory / FILENAME
    save_payload(path, meta, tensors, kind=KIND)
    return path


def load_checkpoint(directory: str | Path, *, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    key: str) -> tuple[LoopState, dict[str, Any], dict[str, Any]] | None:
    """Restore network, optimizer and torch RNG; returns (loop state, sampler state, extra),
    or ``None`` when the directory holds no checkpoint yet."""
    path = Path(directory) / FILENAME
    if not path.exists():
        return None
    try:
        meta, tensors = load_payload(path, kind=KIND)
    except ModelFileError as exc:
        raise TrainingError(f"cannot resume: {exc}") from None
    if meta.get("key") != key:
        raise TrainingError(f"cannot resume: {path} belongs to another run (other data or hyper-parameters)")
    network.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    torch.set_rng_state(tensors["torch_rng"])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    ema = sorted(((int(k[4:]), v) for k, v in tensors.items() if k.startswith("ema.")), key=lambda kv: kv[0])
    average = [v for _, v in ema] or None
    loop = meta["loop"]
    state = LoopState(epoch=loop["epoch"], best_score=loop["best_score"], best_epoch=loop["best_epoch"],
                      bad_epochs=loop["bad_epochs"], best_weights=best, average=average,
                      history=loop["history"])
    return state, meta["sampler"], meta.get("extra", {})

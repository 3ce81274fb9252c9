"""The one training loop of every neural model: minibatches, early stopping, progress.

Reads top to bottom: for each epoch, a step per batch (loss, NaN check, backward, optional
gradient clipping, optimizer step), then validation under ``eval()`` and ``no_grad``, then
early stopping on the monitored validation metric. The best weights are restored at the end.
A model plugs in two hooks: ``step_loss(batch) -> loss`` and ``validate() -> metrics``; an
optional ``on_epoch_end(state)`` hook writes checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from dlfm.errors import TrainingError


@dataclass
class LoopState:
    """Everything that changes during training; a checkpoint is this plus the optimizer."""

    epoch: int = 0
    best_score: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_weights: dict[str, torch.Tensor] | None = None
    average: list[torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def train(
    network: nn.Module,
    batches: Callable[[], Iterable[Any]],
    step_loss: Callable[[Any], torch.Tensor],
    validate: Callable[[], dict[str, float]],
    optimizer: torch.optim.Optimizer,
    *,
    max_epochs: int,
    patience: int,
    monitor: str = "val_rmse",
    grad_clip: float | None = None,
    lr_decay: float = 1.0,
    ema_decay: float = 0.0,
    verbose: bool = True,
    description: str = "training",
    state: LoopState | None = None,
    on_epoch_end: Callable[[LoopState], None] | None = None,
    background_batches: bool | None = None,
) -> LoopState:
    """Train until ``max_epochs`` or ``patience`` epochs without a better ``monitor`` value.

    ``background_batches``: gather the next batches in a background thread (:func:`prefetch`);
    by default only where that thread has a core of its own — a GPU computes, or PyTorch uses
    fewer threads than the machine has cores (on a small machine a third busy thread slows
    every step down).
    """
    from tqdm import tqdm

    state = state or LoopState()
    if background_batches is None:
        on_gpu = any(p.is_cuda for p in network.parameters())
        background_batches = on_gpu or torch.get_num_threads() < (os.cpu_count() or 1)
    params = [p for p in network.parameters() if p.requires_grad]
    # exponential moving average of the weights (Polyak averaging): validated and kept instead
    # of the raw weights when ema_decay > 0
    if ema_decay > 0 and state.average is None:
        state.average = [p.detach().clone() for p in params]
    average = state.average if ema_decay > 0 else None
    # a bar on a terminal; redirected to a file, a plain line per epoch instead of `\r` updates
    interactive = verbose and _is_terminal(sys.stderr)
    bar = tqdm(total=max_epochs, initial=state.epoch, desc=description, disable=not interactive, unit="epoch",
               dynamic_ncols=True, leave=True, file=sys.stderr)
    try:
        while state.epoch < max_epochs and state.bad_epochs < patience:
            started = time.perf_counter()
            network.train()
            total, count = 0.0, 0
            # the background thread is closed as soon as a step fails (a NaN loss, Ctrl-C), not
            # when the garbage collector gets to it
            source = contextlib.closing(prefetch(batches())) if background_batches else contextlib.nullcontext(batches())
            with source as epoch_batches:
                for number, batch in enumerate(epoch_batches, start=1):
                    optimizer.zero_grad(set_to_none=True)
                    loss = step_loss(batch)
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"the training loss became {loss.item()} at epoch {state.epoch + 1}, batch {number}; "
                            "try a smaller learning rate or --param grad_clip=1"
                        )
                    loss.backward()
                    if grad_clip:
                        nn.utils.clip_grad_norm_(network.parameters(), grad_clip)
                    optimizer.step()
                    if average is not None:
                        with torch.no_grad():
                            torch._foreach_lerp_(average, [p.detach() for p in params], 1.0 - ema_decay)
                    total += loss.item()
                    count += 1
            for group in optimizer.param_groups:
                group["lr"] *= lr_decay
            network.eval()
            with torch.no_grad():
                raw = _swap(params, average)
                metrics = validate()
            state.epoch += 1
            record = {"epoch": state.epoch, "train_loss": total / max(count, 1), **metrics,
                      "seconds": time.perf_counter() - started}
            state.history.append(record)
            score = metrics.get(monitor, -state.epoch)
            if score < state.best_score - 1e-6:
                state.best_score, state.best_epoch, state.bad_epochs = score, state.epoch, 0
                # without a validation metric the last epoch is the best: no copy to keep
                state.best_weights = copy.deepcopy(network.state_dict()) if monitor in metrics else None
            else:
                state.bad_epochs += 1
            with torch.no_grad():
                _swap(params, raw)
            bar.update(1)
            bar.set_postfix(loss=f"{record['train_loss']:.4f}", **{monitor: f"{score:.4f}"}, best=state.best_epoch)
            if verbose and not interactive:
                shown = f"  {monitor} {score:.4f}" if monitor in metrics else ""
                print(f"{description}: epoch {state.epoch}/{max_epochs}  loss {record['train_loss']:.4f}{shown}  "
                      f"best {state.best_epoch}", file=sys.stderr, flush=True)
            if on_epoch_end is not None:
                on_epoch_end(state)
        if interactive and state.epoch < max_epochs:  # stopped early: the bar ends full, not at 60%
            bar.total = state.epoch
            bar.refresh()
    finally:
        bar.close()
    if verbose:
        print(_stop_line(state, max_epochs, patience, monitor), file=sys.stderr, flush=True)
    if state.best_weights is not None:
        network.load_state_dict(state.best_weights)
    elif average is not None:  # no validation: the last averaged weights
        with torch.no_grad():
            for p, v in zip(params, average):
                p.copy_(v)
    return state


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _stop_line(state: LoopState, max_epochs: int, patience: int, monitor: str) -> str:
    """How training ended, e.g. ``stopped at epoch 60 (best 55, val RMSE 0.9012)``."""
    has_score = bool(state.history) and monitor in state.history[-1] and math.isfinite(state.best_score)
    label = {"val_rmse": "val RMSE", "val_nll": "val NLL", "val_loss": "val loss"}.get(monitor, monitor)
    how = "stopped" if state.epoch < max_epochs and state.bad_epochs >= patience else "finished"
    if not has_score:
        return f"{how} at epoch {state.epoch} (no validation part: the last weights kept)"
    return f"{how} at epoch {state.epoch} (best {state.best_epoch}, {label} {state.best_score:.4f})"


def prefetch(iterable: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``iterable`` in a background thread, ``depth`` items ahead: the next batch is
    gathered (NumPy, which releases the GIL) while the current step computes. Errors of the
    producer are raised here; the order of the items is unchanged.

    Every hand-over of the producer (an item, the end, an error) waits for room in the queue
    only while the consumer still listens: once the consumer stops (a NaN loss, Ctrl-C, a
    ``break``) and closes this iterator, the producer gives up at its next hand-over, so the
    close waits at most for the batch being gathered.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def hand_over(item: Any) -> bool:
        """Put ``item`` in the queue unless the consumer has stopped; whether it was put."""
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterable:
                if not hand_over(item):
                    return
            hand_over(done)
        except BaseException as exc:  # handed to the consumer
            hand_over(exc)

    worker = threading.Thread(target=produce, daemon=True, name="dlfm-prefetch")
    worker.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def _swap(params: list[torch.Tensor], values: list[torch.Tensor] | None) -> list[torch.Tensor] | None:
    """Put ``values`` into ``params`` and return what was there (no-op for ``None``). Only the
    storages are exchanged, nothing is copied: ``values`` must not be written to meanwhile."""
    if values is None:
        return None
    previous = [p.data for p in params]
    for p, v in zip(params, values):
        p.data = v
    return previous

"""The training loop itself (:func:`dlfm.training.loop.train`) on a toy with known answers.

The toy network is one weight w, trained by plain SGD with learning rate 1 on the loss
``-w · x`` for each batch x: every step adds exactly lr · x to w. Validation reads its score
from a script, so early stopping, patience, the restored weights and the learning-rate decay
all have answers known exactly in advance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from dlfm.errors import TrainingError
from dlfm.training.loop import LoopState, train


class Weight(nn.Module):
    """One trainable weight, starting at 0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    @property
    def value(self) -> float:
        return float(self.w.detach())


@dataclass
class Toy:
    """A scripted run: ``scores[e]`` is the validation score after epoch e + 1; the hooks
    record the weight that validation saw and the learning rate of every step."""

    scores: list[float]
    batches: list[float] = field(default_factory=lambda: [1.0])
    monitor: bool = True
    network: Weight = field(default_factory=Weight)
    validated: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.SGD(self.network.parameters(), lr=1.0)

    def step_loss(self, x: float) -> torch.Tensor:
        self.rates.append(self.optimizer.param_groups[0]["lr"])
        return -self.network.w.sum() * x

    def validate(self) -> dict[str, float]:
        self.validated.append(self.network.value)
        return {"val_rmse": self.scores[len(self.validated) - 1]} if self.monitor else {}

    def run(self, *, max_epochs: int = 20, patience: int = 100, **options) -> LoopState:
        options.setdefault("background_batches", False)
        return train(self.network, lambda: iter(self.batches), self.step_loss, self.validate, self.optimizer,
                     max_epochs=max_epochs, patience=patience, verbose=False, **options)


@pytest.mark.parametrize("scores, max_epochs, patience, epochs, best", [
    ([5, 4, 3, 3.5, 3.2, 3.0, 2.0], 20, 3, 6, 3),  # an equal score is no improvement
    ([5, 4, 4.5, 4.5, 3, 3.5, 3.5, 3.5, 1], 20, 3, 8, 5),  # an improvement resets the count
    ([1.0, 1.0 - 1e-7, 0.5], 20, 1, 2, 1),  # nor is one smaller than 1e-6
    ([3, 2, 1, 0.5, 0.1], 4, 100, 4, 4),  # max_epochs ends it
], ids=["equal-is-no-better", "better-resets-patience", "below-1e-6-is-no-better", "max-epochs"])
def test_early_stopping_and_the_best_weights(scores: list[float], max_epochs: int, patience: int, epochs: int,
                                             best: int) -> None:
    toy = Toy(scores)
    state = toy.run(max_epochs=max_epochs, patience=patience)
    assert (state.epoch, state.best_epoch, state.best_score) == (epochs, best, scores[best - 1])
    assert [r["epoch"] for r in state.history] == list(range(1, epochs + 1))
    assert [r["val_rmse"] for r in state.history] == scores[:epochs]
    assert toy.validated == [float(e) for e in range(1, epochs + 1)]  # one step of +1 per epoch
    assert toy.network.value == float(best)  # the best epoch's weights, restored


def test_train_loss_is_the_mean_over_the_epochs_batches() -> None:
    toy = Toy([3, 2, 1], batches=[1.0, 3.0])
    state = toy.run(max_epochs=3)
    # epoch 1: w = 0 then 1 → losses 0, -3; epoch 2: w = 4, 5 → -4, -15; epoch 3: w = 8, 9 → -8, -27
    assert [r["train_loss"] for r in state.history] == [-1.5, -9.5, -17.5]
    assert all(r["seconds"] >= 0 for r in state.history)


def test_learning_rate_decays_once_per_epoch() -> None:
    toy = Toy([3, 2, 1], batches=[1.0, 1.0])
    toy.run(max_epochs=3, lr_decay=0.5)
    assert toy.rates == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert toy.network.value == 3.5  # Σ lr over the steps
    assert toy.optimizer.param_groups[0]["lr"] == 0.125


def test_averaged_weights_are_validated_and_kept_while_training_goes_on_raw() -> None:
    toy = Toy([4, 3, 5, 6])
    toy.run(max_epochs=4, patience=10, ema_decay=0.5)
    # raw w after step t is t; the average a_t = a_(t-1) + ½ (t − a_(t-1)), a_0 = 0
    assert toy.validated == [0.5, 1.25, 2.125, 3.0625]
    assert toy.network.value == 1.25  # the average of the best epoch (2)


@pytest.mark.parametrize("ema_decay, final", [(0.5, 3.0625), (0.0, 4.0)])
def test_without_a_validation_metric_the_last_weights_are_kept(ema_decay: float, final: float) -> None:
    toy = Toy([], monitor=False)
    state = toy.run(max_epochs=4, patience=2, ema_decay=ema_decay)
    assert state.epoch == 4  # no metric: every epoch counts as an improvement
    assert state.best_weights is None and toy.network.value == final  # the last average, or the last raw


def test_gradient_clipping_bounds_each_step() -> None:
    toy = Toy([3, 2, 1], batches=[1000.0])
    toy.run(max_epochs=3, grad_clip=1.0)
    assert toy.network.value == pytest.approx(3.0, abs=1e-5)  # |grad| 1000 clipped to 1
    unclipped = Toy([3, 2, 1], batches=[1000.0])
    unclipped.run(max_epochs=3)
    assert unclipped.network.value == 3000.0


def test_a_non_finite_loss_stops_with_a_message() -> None:
    toy = Toy([3, 2, 1], batches=[1.0, float("nan")])
    with pytest.raises(TrainingError, match="epoch 1, batch 2"):
        toy.run(max_epochs=3)


def test_on_epoch_end_sees_every_epoch_and_a_resumed_state_continues() -> None:
    seen: list[tuple[int, int]] = []
    toy = Toy([5, 4, 3, 2])
    state = toy.run(max_epochs=2, on_epoch_end=lambda s: seen.append((s.epoch, s.best_epoch)))
    assert seen == [(1, 1), (2, 2)]
    # the same state, resumed with a larger budget, runs epochs 3 and 4 only
    state = toy.run(max_epochs=4, state=state)
    assert state.epoch == 4 and [r["epoch"] for r in state.history] == [1, 2, 3, 4]
    assert toy.validated == [1.0, 2.0, 3.0, 4.0] and toy.network.value == 4.0


def test_background_batches_give_the_same_run() -> None:
    runs = []
    for background in (False, True):
        toy = Toy([5, 4, 4.5, 3, 6, 7], batches=[1.0, 2.0, 0.5])
        state = toy.run(max_epochs=6, patience=2, background_batches=background)
        runs.append((toy.validated, toy.network.value, [r["train_loss"] for r in state.history]))
    assert runs[0] == runs[1]

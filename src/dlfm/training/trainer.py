"""The trainer of every neural model: one object per fit, dropped when the fit returns.

:class:`Trainer` owns everything that exists only while a network learns — the fitting part
of the training ratings and the validation part carved from it, the ratings the encoders read
in training (:class:`~dlfm.training.batching.Incidence` of the fitting part), the batch
sampler, the optimizer, the loop's state and hooks (``on_epoch``, checkpoint and resume), and
the calibration of the predictive noise. :meth:`Trainer.run` returns a
:class:`TrainedNetwork`: what prediction needs and nothing else. The estimator
(:class:`~dlfm.models.neural.NeuralFactorModel`) supplies only its configuration and the
model-specific pieces: the network it builds, the training loss, the validation metrics and
the noise estimate.

A fit, in order (the order fixes the random streams, so the same seed gives the same model):

1. split off the validation part (``validation_ratio``, seeded by ``seed``) unless one is given;
2. scale the regularisation to the size of the fitting part (:mod:`dlfm.training.sizing`; nothing
   changes up to 100,000 ratings); choose the likelihood's offset, the centre μ of the
   encoders' inputs and the per-row offsets of η (:mod:`dlfm.models.offsets`) on the fitting part;
3. build the network under ``torch.manual_seed(seed)``;
4. train with :func:`dlfm.training.loop.train` under ``torch.manual_seed(seed + 1 + rank)``:
   batches from the :class:`~dlfm.training.batching.BlockSampler`, validation after every
   epoch through a scorer over the fitting part, early stopping, best or averaged weights;
5. calibrate σ on the validation ratings while the encoders still read the fitting part only
   (without a validation part: on the training ratings themselves, which is optimistic), and
   the ranking's popularity weight on the same ratings (0 without a validation part).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch

from dlfm.data.ratings import Ratings
from dlfm.data.splits import validation_split
from dlfm.errors import ConfigError
from dlfm.nn.encoders import DeepLatentFactorNet
from dlfm.nn.likelihoods import Likelihood, make_likelihood
from dlfm.training import distributed, loop, optim
from dlfm.training.batching import Batch, Incidence, batch_codes
from dlfm.training.loop import LoopState
from dlfm.training.sizing import Regularisation

if TYPE_CHECKING:
    from dlfm.models.neural import NeuralFactorModel


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when there is a GPU) as a torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available (use cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu, cuda or auto, not {name!r}")
    return torch.device(name)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator inside the block only (no global seeding leaks out)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class StepContext:
    """What a model's training loss reads besides the batch and its codes."""

    network: DeepLatentFactorNet
    likelihood: Likelihood
    incidence: Incidence   #: the ratings the encoders read in training (the fitting part)
    progress: float        #: epochs done, counting this step: 1.25 = a quarter into the second epoch
    offset: torch.Tensor | float = 0.0  #: a_i + b_j of each rating (per-row offsets), else 0


@dataclass(frozen=True)
class TrainedNetwork:
    """The outcome of a fit: what a fitted neural model predicts with."""

    network: DeepLatentFactorNet
    likelihood: Likelihood
    center: float               #: μ of the fitting part, by which the encoders' inputs are centred
    spread: float               #: s, by which the encoders' inputs of counts are divided (else 1)
    noise_std: float            #: σ of the predictive distribution (0 for Poisson and Bernoulli)
    popularity_weight: float    #: w of the ranking score r̂ + w log(1 + n_j), chosen on validation
    regularisation: Regularisation  #: weight decay and dropouts as trained (scaled to the data)
    history: list[dict[str, float]]
    best_epoch: int


class Trainer:
    """Fits the network of ``model`` on ``train`` (see the module docstring for the steps).

    Args:
        model: the estimator, read for its hyper-parameters and model-specific pieces only.
        train: the training ratings.
        validation: the ratings early stopping and calibration use; ``None``: carved from
            ``train`` by ``model.validation_ratio``.
        checkpoint_dir: write a checkpoint there atomically after every epoch
            (:mod:`dlfm.training.checkpoint`).
        resume: continue from the checkpoint found in ``checkpoint_dir``.
        on_epoch: called with each epoch's record (``epoch``, ``train_loss``, validation
            metrics); an exception it raises stops training (a tuner's pruning).
    """

    def __init__(self, model: "NeuralFactorModel", train: Ratings, validation: Ratings | None = None, *,
                 checkpoint_dir: Any = None, resume: bool = False,
                 on_epoch: Callable[[dict[str, float]], None] | None = None) -> None:
        self.model = model
        self.train = train
        self.device = resolve_device(model.device)
        if validation is None and model.validation_ratio > 0 and len(train) >= 20:
            self.fit_part, self.validation = validation_split(train, model.validation_ratio, seed=model.seed)
        else:
            self.fit_part, self.validation = train, validation
        #: weight decay and dropout rates scaled to the training ratings (:mod:`dlfm.training.sizing`)
        self.regularisation = model.regularisation(len(self.fit_part))
        self.likelihood = make_likelihood(model.likelihood, self.fit_part.ratings)
        self.center, self.spread = model.input_scale(self.fit_part)
        self.offsets = model.fit_offsets(self.fit_part, self.likelihood)
        with seeded(model.seed):
            self.network = model.build_network(train.n_users, train.n_items,
                                               dropout=self.regularisation.dropout).to(self.device)
        self.incidence = model.make_incidence(self.fit_part, self.center, self.spread)
        self.rank, world_size = distributed.world()
        self.sampler = model.make_sampler(self.incidence, shard=(self.rank, world_size),
                                          input_dropout=self.regularisation.input_dropout)
        #: the learning rate scaled to the training ratings (:func:`dlfm.training.sizing.lr_ratio`)
        self.lr = model.learning_rate(len(self.fit_part))
        self.optimizer = optim.make_optimizer(self.network, lr=self.lr, weight_decay=self.regularisation.weight_decay,
                                              sparse_tables=False)
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.on_epoch = on_epoch
        self.state = LoopState()

    # ------------------------------------------------------------------ the loop's hooks
    def step_loss(self, batch: Batch) -> torch.Tensor:
        """The model's training loss of one batch, its ratings kept out of their own encoders."""
        user_codes, item_codes = batch_codes(self.network, batch, self.device)
        progress = self.state.epoch + (batch.step + 1) / batch.epoch_steps
        offset = 0.0 if self.offsets is None else torch.from_numpy(
            self.offsets.pair(batch.users.numpy(), batch.items.numpy())).to(self.device)
        context = StepContext(self.network, self.likelihood, self.incidence, progress, offset)
        return self.model.training_loss(batch, user_codes, item_codes, context)

    def fitting_scorer(self) -> Any:
        """A scorer of the current weights over the fitting part (never the validation part)."""
        return self.model.make_scorer(self.network, self.likelihood, self.incidence, self.device, self.offsets,
                                      input_dropout=self.regularisation.input_dropout)

    def validate(self) -> dict[str, float]:
        if self.validation is None:
            return {}
        return self.model.validation_metrics(self.fitting_scorer(), self.validation, mc=False)

    # ------------------------------------------------------------------ checkpoints
    def _checkpointing(self) -> Callable[[LoopState], None] | None:
        """Restore the checkpoint to resume from (with ``resume``), and return the per-epoch
        hook that writes one (``None`` without ``checkpoint_dir``, and on processes other
        than the first)."""
        if self.checkpoint_dir is None:
            return None
        from dlfm.training.checkpoint import check_directory, fingerprint, load_checkpoint, save_checkpoint

        directory = self.checkpoint_dir
        check_directory(directory)
        params = {k: v for k, v in self.model.get_params().items() if k not in ("verbose", "device")}
        train = self.train
        # the regularisation and the learning rate too: a checkpoint trained under another size
        # rule does not resume
        key = fingerprint({**params, "regularisation": self.regularisation.to_json(), "lr_scaled": self.lr},
                          train.users, train.items, train.ratings)
        if self.resume:
            restored = load_checkpoint(directory, network=self.network, optimizer=self.optimizer, key=key)
            if restored is not None:
                self.state, sampler_state, _ = restored
                self.sampler.set_state(sampler_state)
        if self.rank != 0:
            return None

        def save(state: LoopState) -> None:
            save_checkpoint(directory, network=self.network, optimizer=self.optimizer, loop_state=state,
                            sampler_state=self.sampler.state(), extra={}, key=key)

        return save

    # ------------------------------------------------------------------ the fit
    def run(self) -> TrainedNetwork:
        model = self.model
        monitor = "val_rmse" if model.likelihood == "gaussian" else "val_nll"
        objective = distributed.wrap(self.network, self.step_loss, self.device)
        with seeded(model.seed + 1 + self.rank):
            checkpoint = self._checkpointing()

            def on_epoch_end(state: LoopState) -> None:
                if checkpoint is not None:
                    checkpoint(state)
                if self.on_epoch is not None:
                    self.on_epoch(dict(state.history[-1]))

            self.state = loop.train(
                self.network, lambda: iter(self.sampler), objective, self.validate, self.optimizer,
                max_epochs=model.max_epochs,
                patience=model.patience if self.validation is not None else model.max_epochs,
                monitor=monitor, grad_clip=model.grad_clip or None, lr_decay=model.lr_decay,
                ema_decay=model.ema_decay, verbose=model.verbose and self.rank == 0,
                description=f"{model.name} {self.train.name}", state=self.state, on_epoch_end=on_epoch_end)
        self.network.eval()
        calibration = self.validation if self.validation is not None else self.train
        scorer = self.fitting_scorer()
        noise_std = model.estimate_noise(scorer, model.calibration_part(calibration))
        popularity_weight = model.calibrate_ranking(scorer, self.fit_part, self.validation)
        return TrainedNetwork(self.network, self.likelihood, self.center, self.spread, noise_std, popularity_weight,
                              self.regularisation, self.state.history, self.state.best_epoch)

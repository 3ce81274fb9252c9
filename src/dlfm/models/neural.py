"""What ``dlf`` and ``vdlf`` share: the estimator around :class:`DeepLatentFactorNet`.

Owns the data (the sparse structure of the training matrix), the optimizer, the one training
loop (:func:`dlfm.training.loop.train`), prediction through cached codes, folding in new
users and items, predictive distributions, and save/load. A subclass writes only what differs:
how codes become latent vectors (:meth:`_latent`), its training loss (:meth:`_loss`), and how
it samples predictive distributions (:meth:`_distribution_indices`).

Prediction and fallback: at prediction time the encoders read all training ratings (no
dropout). A pair whose user or item has no training rating — or is not in the vocabulary — is
predicted by every model's fallback, μ + b_u + b_i with the biases of the training ratings
(the unknown side's bias 0), not by the encoders' learned "nothing known" code (the encoding
of an empty row), which sits near the mean of the rarely rated items. The result is clipped to
the rating scale like every model's.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import norm, poisson

from dlfm.data.ratings import Ratings
from dlfm.data.splits import validation_split
from dlfm.errors import ConfigError
from dlfm.evaluation.metrics import interval_coverage, log_loss, roc_auc
from dlfm.models.base import Recommender, UnknownPolicy
from dlfm.models.params import Param, seed_param, size_param
from dlfm.models.space import Choice, LogUniform, Uniform
from dlfm.nn.encoders import ACTIVATIONS, INTERACTIONS, DeepLatentFactorNet
from dlfm.nn.likelihoods import LIKELIHOODS, Likelihood, from_state, make_likelihood
from dlfm.training.batching import REMOVALS, Batch, BlockSampler, Incidence, SideStructure, gather_rows, row_scale
from dlfm.training import distributed, loop

QUANTILES = {"q05": 0.05, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q95": 0.95}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available (use cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu, cuda or auto, not {name!r}")
    return torch.device(name)


def _check_weights(build: Any, weights: Mapping[str, torch.Tensor]) -> None:
    """Raise ``ValueError`` unless ``weights`` have exactly the names, shapes and types of the
    network ``build()`` makes, checked on PyTorch's "meta" device: nothing is allocated, so
    parameters edited to ask for a huge network cost nothing."""
    with torch.device("meta"):
        skeleton = build()
    expected = {k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()}
    found = {k: (tuple(v.shape), v.dtype) for k, v in weights.items()}
    if expected == found:
        return
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise ValueError(f"its weights do not fit its parameters (missing {missing[:3]}, unexpected {extra[:3]})")
    name = next(k for k in expected if expected[k] != found[k])
    raise ValueError(f"its weights do not fit its parameters ({name}: {found[name][0]} {found[name][1]} in the "
                     f"file, {expected[name][0]} {expected[name][1]} for its parameters)")


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator inside the block only (no global seeding leaks out)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def batch_mean(losses: torch.Tensor) -> torch.Tensor:
    """Mean loss of a batch; 0 (with gradients of 0) for the empty share a distributed process
    may get of a small block, so that every process still takes the step."""
    return losses.sum() / max(losses.numel(), 1)


class NeuralFactorModel(Recommender):
    """Shared hyper-parameters of the deep latent factor models.

    Args:
        hidden: width of the encoders' hidden layer (g and h).
        latent: size of the user and item vectors u, v.
        decoder_hidden: width of f's hidden layer.
        interaction: ``hadamard`` (u ⊙ v, the report's), ``concat`` or ``both``.
        activation: ``tanh`` (default), ``relu``, ``gelu``, ``elu``, ``sigmoid``.
        dropout: dropout on the encoders' hidden layer.
        input_dropout: share of a row's other entries hidden from the encoder at each step.
        likelihood: ``gaussian``, ``poisson`` or ``bernoulli``.
        lr, weight_decay: AdamW's learning rate and decoupled weight decay.
        lr_decay: the learning rate is multiplied by this after every epoch.
        ema_decay: keep an exponential moving average of the weights with this decay per step
            and use it (``0`` = off).
        batch_size: ratings per step (about; see :class:`~dlfm.training.batching.BlockSampler`).
        mc_samples: predictions average the likelihood mean over this many random input-dropout
            masks of the encoders' rows (Monte Carlo dropout at the input, as in training;
            ``0`` = one pass over the full rows). The training-time validation uses one pass.
        max_epochs, patience: early stopping on the validation part.
        validation_ratio: share of the training ratings carved out for early stopping.
        max_neighbors: cap on the entries read per row in training (``0`` = no cap).
        removal: how a rating is kept out of its own encoders in training: ``block`` (rows
            encoded without the whole batch's block; one code per distinct row) or ``rating``
            (r_ij alone subtracted, per rating); see :mod:`dlfm.training.batching`.
        max_groups: most user (item) groups of the block grid; on large data the batches
            grow instead, which bounds the cost per rating of reading rows.
        row_cap: the entries of a row (column) longer than this are weighted by
            ``row_cap / length``, so that very long rows (popular items) keep the encoders'
            inputs in the activation's range (``0`` = off).
        grad_clip: clip the gradient norm to this value (``0`` = off).
        device: ``cpu``, ``cuda`` or ``auto``.
        verbose: show a progress bar.
        seed: seeds initialisation, dropout, batches and the validation split.

    Provenance of the defaults: they were chosen in earlier rounds on validation parts carved
    from ML-100k's official training files u1.base and u2.base. Those files hold the test
    ratings of the other official folds (u1.base is u2–u5's test ratings), so the defaults'
    figure on u1–u5 is *not* a clean test figure. The clean figure is the nested one, in which
    each fold's settings are searched on that fold's training ratings only
    (``dlfm cv ml-100k --model dlf --folds official --tune 20``; see the README).
    """

    supports_new_users = True
    hyper_parameters = (
        size_param("hidden", "width of the encoders' hidden layer (g and h)"),
        size_param("latent", "size of the user and item vectors u, v"),
        size_param("decoder_hidden", "width of the decoder f's hidden layer"),
        Param("interaction", str, "how f combines u and v: u ⊙ v, [u, v], or both", choices=INTERACTIONS),
        Param("activation", str, "activation of every hidden layer", choices=tuple(ACTIVATIONS)),
        Param("dropout", float, "dropout on the encoders' hidden layer", low=0, high=1, high_open=True),
        Param("input_dropout", float, "share of a row's other entries hidden from the encoder at each step",
              low=0, high=1, high_open=True),
        Param("likelihood", str, "observation model of the ratings", choices=LIKELIHOODS),
        Param("lr", float, "AdamW's learning rate", low=0, low_open=True),
        Param("lr_decay", float, "the learning rate is multiplied by this after every epoch",
              low=0, high=1, low_open=True),
        Param("ema_decay", float, "decay per step of the averaged weights used for prediction (0: off)",
              low=0, high=1, high_open=True),
        Param("weight_decay", float, "AdamW's decoupled weight decay", low=0),
        size_param("batch_size", "ratings per training step (about)", high=2**31),
        size_param("mc_samples", "input-dropout masks averaged into a prediction (0: one full pass)", low=0,
                   high=10_000),
        size_param("max_epochs", "most training epochs", high=10**6),
        size_param("patience", "epochs without a better validation score before stopping", high=10**6),
        Param("validation_ratio", float, "share of the training ratings held out for early stopping",
              low=0, high=1, high_open=True),
        size_param("max_neighbors", "cap on the entries read per row in training (0: no cap)", low=0, high=2**31),
        Param("removal", str, "how a rating is kept out of its own encoders: the batch's block, or itself",
              choices=REMOVALS),
        size_param("max_groups", "most user (item) groups of the block grid", low=2, high=2**20),
        size_param("row_cap", "rows longer than this are down-weighted to it (0: off)", low=0, high=2**31),
        Param("grad_clip", float, "clip the gradient norm to this (0: off)", low=0),
        Param("device", str, "where the network computes", choices=("cpu", "cuda", "auto")),
        Param("verbose", bool, "show a progress bar"),
        seed_param("seed of initialisation, dropout, batches and the validation split"),
    )
    #: what ``dlfm tune`` searches (the shared settings of dlf and vdlf)
    search_space = {
        "lr": LogUniform(1e-3, 2e-2),
        "weight_decay": LogUniform(0.02, 2.0),
        "input_dropout": Uniform(0.1, 0.7),
        "dropout": Uniform(0.1, 0.7),
        "hidden": Choice((100, 200, 300)),
        "latent": Choice((20, 50, 100)),
        "lr_decay": Uniform(0.9, 1.0),
    }

    def __init__(self, hidden: int = 200, latent: int = 50, decoder_hidden: int = 64, interaction: str = "both",
                 activation: str = "tanh", dropout: float = 0.5, input_dropout: float = 0.5,
                 likelihood: str = "gaussian", lr: float = 5e-3, lr_decay: float = 0.95, ema_decay: float = 0.995,
                 weight_decay: float = 0.5, batch_size: int = 2048, mc_samples: int = 16,
                 max_epochs: int = 100, patience: int = 5, validation_ratio: float = 0.05, max_neighbors: int = 0,
                 removal: str = "block", max_groups: int = 16, row_cap: int = 0, grad_clip: float = 0.0,
                 device: str = "auto",
                 verbose: bool = True, seed: int = 0) -> None:
        self.hidden = hidden
        self.latent = latent
        self.decoder_hidden = decoder_hidden
        self.interaction = interaction
        self.activation = activation
        self.dropout = dropout
        self.input_dropout = input_dropout
        self.likelihood = likelihood
        self.lr = lr
        self.lr_decay = lr_decay
        self.ema_decay = ema_decay
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.mc_samples = mc_samples
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_ratio = validation_ratio
        self.max_neighbors = max_neighbors
        self.removal = removal
        self.max_groups = max_groups
        self.row_cap = row_cap
        self.grad_clip = grad_clip
        self.device = device
        self.verbose = verbose
        self.seed = seed

    # ------------------------------------------------------------------ to be written by subclasses
    variational = False

    def _n_outputs(self) -> int:
        return 1

    def _latent(self, codes: torch.Tensor, sample: bool) -> torch.Tensor:
        """Codes → latent vectors (a variational model samples here when ``sample``)."""
        return codes

    def _loss(self, batch: Batch, user_codes: torch.Tensor, item_codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _distribution_indices(self, users: np.ndarray, items: np.ndarray, n_samples: int, seed: int) -> torch.Tensor:
        """Samples of the predictive distribution, shape (n_pairs, n_samples); a pair's samples
        are keyed by (``seed``, user, item) (:mod:`dlfm.nn.keyed`), whatever else is asked."""
        raise NotImplementedError

    # ------------------------------------------------------------------ validation of parameters
    def _validate_params(self) -> None:
        """The declared types and ranges (:attr:`hyper_parameters`), then whether the device exists."""
        super()._validate_params()
        resolve_device(self.device)

    # ------------------------------------------------------------------ fitting
    def _build_network(self, n_users: int, n_items: int) -> DeepLatentFactorNet:
        return DeepLatentFactorNet(
            n_users, n_items, hidden=self.hidden, latent=self.latent, decoder_hidden=self.decoder_hidden,
            variational=self.variational, interaction=self.interaction, activation_name=self.activation,
            dropout=self.dropout, n_outputs=self._n_outputs())

    def fit(self, train: Ratings, *, validation: Ratings | None = None, checkpoint_dir: Any = None,
            resume: bool = False, on_epoch: Callable[[dict[str, float]], None] | None = None) -> "NeuralFactorModel":
        """Fit; with ``checkpoint_dir`` a checkpoint is written atomically after every epoch,
        and ``resume=True`` continues from the one found there (see
        :mod:`dlfm.training.checkpoint`). ``on_epoch(record)`` is called with each epoch's
        record (``epoch``, ``train_loss``, validation metrics); an exception it raises stops
        training (a tuner's pruning)."""
        self._checkpoint_dir = checkpoint_dir
        self._resume = resume
        self._on_epoch = on_epoch
        try:
            return super().fit(train, validation=validation)  # type: ignore[return-value]
        finally:
            self._checkpoint_dir, self._resume, self._on_epoch = None, False, None

    def _fit(self, train: Ratings, validation: Ratings | None) -> None:
        self.device_ = resolve_device(self.device)
        if validation is None and self.validation_ratio > 0 and len(train) >= 20:
            fit_part, validation = validation_split(train, self.validation_ratio, seed=self.seed)
        else:
            fit_part = train
        self.likelihood_: Likelihood = make_likelihood(self.likelihood, fit_part.ratings)
        self.center_ = fit_part.global_mean
        with seeded(self.seed):
            self.network_ = self._build_network(train.n_users, train.n_items).to(self.device_)
        self._use_incidence(Incidence(fit_part, self.center_))
        rank, world_size = distributed.world()
        sampler = self.make_sampler(self.incidence_, shard=(rank, world_size))
        optimizer = loop.adamw(self.network_.parameters(), lr=self.lr, weight_decay=self.weight_decay)

        def validate() -> dict[str, float]:
            self._use_incidence(self.incidence_)
            if validation is None:
                return {}
            return self._validation_metrics(validation, mc=False)

        def step_loss(batch: Batch) -> torch.Tensor:
            user_codes, item_codes = self._batch_codes(batch)
            return self._loss(batch, user_codes, item_codes)

        monitor = "val_rmse" if self.likelihood == "gaussian" else "val_nll"
        objective = distributed.wrap(self.network_, step_loss, self.device_)
        with seeded(self.seed + 1 + rank):
            start_state, checkpoint = self._checkpointing(train, optimizer, sampler)
            if rank != 0:
                checkpoint = None
            callback = getattr(self, "_on_epoch", None)

            def on_epoch_end(state: Any) -> None:
                if checkpoint is not None:
                    checkpoint(state)
                if callback is not None:
                    callback(dict(state.history[-1]))
            state = loop.train(self.network_, lambda: iter(sampler), objective, validate, optimizer,
                               max_epochs=self.max_epochs,
                               patience=self.patience if validation is not None else self.max_epochs,
                               monitor=monitor, grad_clip=self.grad_clip or None, lr_decay=self.lr_decay,
                               ema_decay=self.ema_decay,
                               verbose=self.verbose and rank == 0, description=f"{self.name} {train.name}",
                               state=start_state, on_epoch_end=on_epoch_end)
        self.history_ = state.history
        self.best_epoch_ = state.best_epoch
        self.network_.eval()
        # σ is calibrated on the validation ratings while the encoders still read the fitting
        # part only (the validation ratings are held out); without a validation part, on the
        # training ratings themselves (optimistic, and said so in the docstring)
        self._use_incidence(self.incidence_)
        self.noise_std_ = self._estimate_noise(self._calibration_part(validation if validation is not None else train))
        # predictions read every training rating (the validation part included)
        if fit_part is not train:
            self._use_incidence(Incidence(train, self.center_))

    def make_sampler(self, incidence: Incidence, shard: tuple[int, int] = (0, 1)) -> BlockSampler:
        """The training batches of this configuration over ``incidence``."""
        return BlockSampler(incidence, self.batch_size, input_keep=1.0 - self.input_dropout,
                            max_neighbors=self.max_neighbors or None, seed=self.seed, shard=shard,
                            removal=self.removal, max_groups=self.max_groups, row_cap=self.row_cap or None)

    #: most ratings the predictive σ is estimated on (a seeded sample of larger data)
    calibration_size = 100_000

    def _calibration_part(self, data: Ratings) -> Ratings:
        if len(data) <= self.calibration_size:
            return data
        chosen = np.random.default_rng(self.seed).choice(len(data), self.calibration_size, replace=False)
        return data.subset(np.sort(chosen))

    def _checkpoint_extra(self) -> dict[str, Any]:
        """Model state outside the network that a resumed run needs (e.g. vdlf's step count)."""
        return {}

    def _restore_checkpoint_extra(self, extra: dict[str, Any]) -> None:
        pass

    def _checkpointing(self, train: Ratings, optimizer: torch.optim.Optimizer, sampler: BlockSampler) -> tuple[Any, Any]:
        """(state to start from, per-epoch hook) for ``checkpoint_dir`` / ``resume``."""
        directory = getattr(self, "_checkpoint_dir", None)
        if directory is None:
            return None, None
        from dlfm.training.checkpoint import check_directory, fingerprint, load_checkpoint, save_checkpoint

        check_directory(directory)
        params = {k: v for k, v in self.get_params().items() if k not in ("verbose", "device")}
        key = fingerprint(params, train.users, train.items, train.ratings)
        start = None
        if getattr(self, "_resume", False):
            restored = load_checkpoint(directory, network=self.network_, optimizer=optimizer, key=key)
            if restored is not None:
                start, sampler_state, extra = restored
                sampler.set_state(sampler_state)
                self._restore_checkpoint_extra(extra)

        def on_epoch_end(state: Any) -> None:
            save_checkpoint(directory, network=self.network_, optimizer=optimizer, loop_state=state,
                            sampler_state=sampler.state(), extra=self._checkpoint_extra(), key=key)

        return start, on_epoch_end

    def _use_incidence(self, incidence: Incidence) -> None:
        self.incidence_ = incidence
        self._codes: tuple[torch.Tensor, torch.Tensor] | None = None
        self._mc_codes: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def _estimate_noise(self, data: Ratings) -> float:
        """σ of the Gaussian observation noise: the RMSE on held-out (validation) ratings."""
        if self.likelihood != "gaussian":
            return 0.0
        residual = data.ratings - self._mean_indices(data.users, data.items)
        return float(np.sqrt(np.mean(residual ** 2)))

    def _validation_metrics(self, validation: Ratings, mc: bool = True) -> dict[str, float]:
        mean = self._mean_indices(validation.users, validation.items, mc=mc)
        out = {"val_rmse": float(np.sqrt(np.mean((mean - validation.ratings) ** 2)))}
        if self.likelihood != "gaussian":
            eta = self._eta_indices(validation.users, validation.items)
            y = torch.tensor(validation.ratings, dtype=torch.float32)
            out["val_nll"] = float(self.likelihood_.nll(eta, y).mean())
        return out

    # ------------------------------------------------------------------ encoding
    def _batch_codes(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes of each rating's user and item, from rows that do not hold the rating: with
        block removal the rows were gathered without the block (one code per distinct row);
        with per-rating removal r_ij's own term is subtracted from the pre-activation."""
        net, dev = self.network_, self.device_
        user_sums = net.user_encoder.segment_sums(batch.user_segments)
        item_sums = net.item_encoder.segment_sums(batch.item_segments)
        user_of, item_of = batch.user_of.to(dev), batch.item_of.to(dev)
        if batch.own_user_value is None:
            return (net.user_encoder.finish(user_sums).index_select(0, user_of),
                    net.item_encoder.finish(item_sums).index_select(0, item_of))
        value = batch.own_user_value.to(dev)
        user_pre = user_sums.index_select(0, user_of) - net.user_encoder.entry_terms(
            batch.items.to(dev), value, batch.own_user_weight.to(dev))
        item_pre = item_sums.index_select(0, item_of) - net.item_encoder.entry_terms(
            batch.users.to(dev), value, batch.own_item_weight.to(dev))
        return net.user_encoder.finish(user_pre), net.item_encoder.finish(item_pre)

    def _encode_side(self, encoder: torch.nn.Module, side: SideStructure, n_rows: int, chunk: int = 4096,
                     rng: np.random.Generator | None = None) -> torch.Tensor:
        """Codes of every row from all its training entries (with ``rng``: through a random
        input-dropout mask, as in training), plus a last row for "unknown"."""
        keep = 1.0 - self.input_dropout if rng is not None else 1.0
        parts = []
        for start in range(0, n_rows, chunk):
            rows = np.arange(start, min(n_rows, start + chunk))
            seg = gather_rows(side, rows, keep=keep, generator=rng, row_cap=self.row_cap or None)
            parts.append(encoder.finish(encoder.segment_sums(seg)))
        parts.append(encoder.finish(encoder.bias.unsqueeze(0)))
        return torch.cat(parts)

    def codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user codes, item codes) from the training ratings, cached; the last row of each is
        the code of an unknown user (item)."""
        self._check_fitted()
        if self._codes is None:
            self.network_.eval()
            with torch.no_grad():
                inc = self.incidence_
                self._codes = (self._encode_side(self.network_.user_encoder, inc.by_user, inc.n_users),
                               self._encode_side(self.network_.item_encoder, inc.by_item, inc.n_items))
        return self._codes

    def mc_codes(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``mc_samples`` pairs of (user codes, item codes), each through its own random
        input-dropout mask; cached and seeded, so predictions are deterministic."""
        self._check_fitted()
        if self._mc_codes is None:
            rng = np.random.default_rng(self.seed + 7)
            inc, net = self.incidence_, self.network_
            net.eval()
            with torch.no_grad():
                self._mc_codes = [(self._encode_side(net.user_encoder, inc.by_user, inc.n_users, rng=rng),
                                   self._encode_side(net.item_encoder, inc.by_item, inc.n_items, rng=rng))
                                  for _ in range(self.mc_samples)]
        return self._mc_codes

    def _code_rows(self, users: np.ndarray, items: np.ndarray,
                   codes: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        user_codes, item_codes = codes if codes is not None else self.codes()
        u = np.where(users < 0, len(user_codes) - 1, users)
        i = np.where(items < 0, len(item_codes) - 1, items)
        return user_codes[torch.from_numpy(u).to(self.device_)], item_codes[torch.from_numpy(i).to(self.device_)]

    def _decode(self, user_codes: torch.Tensor, item_codes: torch.Tensor) -> torch.Tensor:
        """Decoder output at the codes' point estimates (a variational model's posterior means)."""
        return self.network_.decoder.predict(self._latent(user_codes, False), self._latent(item_codes, False))

    def _eta_indices(self, users: np.ndarray, items: np.ndarray, chunk: int = 65536,
                     codes: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        with torch.no_grad():
            parts = []
            for start in range(0, len(users), chunk):
                uc, ic = self._code_rows(users[start:start + chunk], items[start:start + chunk], codes)
                parts.append(self._decode(uc, ic)[:, 0])
            return torch.cat(parts).cpu() if parts else torch.empty(0)

    def _mean_indices(self, users: np.ndarray, items: np.ndarray, mc: bool = True) -> np.ndarray:
        """E[r] per pair: the likelihood mean, averaged over the Monte Carlo input masks."""
        if not mc or self.mc_samples == 0 or self.input_dropout == 0:
            return self.likelihood_.mean(self._eta_indices(users, items)).double().numpy()
        total = np.zeros(len(users))
        for codes in self.mc_codes():
            total += self.likelihood_.mean(self._eta_indices(users, items, codes=codes)).double().numpy()
        return total / self.mc_samples

    def _predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The likelihood mean; a pair whose user or item has no training rating gets the
        biases' fallback μ + b_u + b_i instead (see :meth:`_fallback_biases`)."""
        out = self._mean_indices(users, items)
        counts_u, counts_i = self.train_.user_counts, self.train_.item_counts
        unknown = (users < 0) | (items < 0)
        unknown[~unknown] = (counts_u[users[~unknown]] == 0) | (counts_i[items[~unknown]] == 0)
        if unknown.any():
            from dlfm.models.baselines import take_or_zero

            b_u, b_i = self._fallback_biases()
            out[unknown] = self.global_mean_ + take_or_zero(b_u, users[unknown]) + take_or_zero(b_i, items[unknown])
        return out

    def _fallback_biases(self) -> tuple[np.ndarray, np.ndarray]:
        """(b_u, b_i) of the training ratings by ``baseline``'s ALS and default penalties
        (λ_u = 15, λ_i = 10, 10 sweeps), computed once per fitted model: the fallback of every
        dlfm model for an unknown user or item, r̂ = μ + b_u + b_i with the unknown side's bias 0.
        The encoders' own "nothing known" code is not used there: trained only on the rarely
        rated items and users whose rows come out empty, it predicts about their mean (2.4-2.9 on
        ML-100k), far below μ (see the README, "Recommendation quality")."""
        cached = getattr(self, "_biases", None)
        if cached is None or cached[0] is not self.train_:
            from dlfm.models.baselines import als_biases

            cached = (self.train_, *als_biases(self.train_, 15.0, 10.0, 10))
            self._biases = cached
        return cached[1], cached[2]

    # ------------------------------------------------------------------ new users and items
    def _encode_new(self, encoder: torch.nn.Module, columns: np.ndarray, values: np.ndarray) -> torch.Tensor:
        dev = self.device_
        centred = torch.as_tensor(values - self.center_, dtype=torch.float32, device=dev)
        cols = torch.as_tensor(columns, dtype=torch.int64, device=dev)
        weights = torch.full_like(centred, float(row_scale(len(values), self.row_cap or None)))
        with torch.no_grad():
            sums = encoder.row_sums(cols, centred, weights, torch.zeros(1, dtype=torch.int64, device=dev))
            return encoder.finish(sums)

    def predict_new_user(self, ratings: Mapping[Any, float], items: Sequence[Any]) -> np.ndarray:
        """Predictions for a user the model never saw, encoded from ``{item: rating}`` by g —
        no retraining. Unknown target items get the fallback."""
        self._check_fitted()
        idx, values = self._new_user_row(ratings)
        user_code = self._encode_new(self.network_.user_encoder, idx, values)
        target = self.item_vocab_.lookup(items)
        _, item_codes = self._code_rows(np.zeros(len(target), dtype=np.int64), target)
        with torch.no_grad():
            eta = self._decode(user_code.expand(len(target), -1), item_codes)[:, 0].cpu()
        return np.clip(self.likelihood_.mean(eta).double().numpy(), *self.scale_)

    def predict_new_item(self, ratings: Mapping[Any, float], users: Sequence[Any]) -> np.ndarray:
        """Predictions for an item the model never saw, encoded from ``{user: rating}`` by h."""
        self._check_fitted()
        idx, values = self._new_item_column(ratings)
        item_code = self._encode_new(self.network_.item_encoder, idx, values)
        target = self.user_vocab_.lookup(users)
        user_codes, _ = self._code_rows(target, np.zeros(len(target), dtype=np.int64))
        with torch.no_grad():
            eta = self._decode(user_codes, item_code.expand(len(target), -1))[:, 0].cpu()
        return np.clip(self.likelihood_.mean(eta).double().numpy(), *self.scale_)

    # ------------------------------------------------------------------ distributions
    def predict_distribution(self, users: Sequence[Any], items: Sequence[Any], *, n_samples: int = 1000,
                             seed: int = 0, unknown: UnknownPolicy = "fallback") -> dict[str, np.ndarray]:
        """The predictive distribution of each rating: ``mean``, ``std``, quantiles ``q05``,
        ``q25``, ``q50``, ``q75``, ``q95`` and the raw ``samples`` (n_pairs × n_samples).
        ``unknown``: ``fallback`` or ``error`` for ids the model never saw, as in :meth:`predict`."""
        self._check_fitted()
        u, i = self._lookup(list(users), list(items), unknown)
        return self.distribution_indices(u, i, n_samples=n_samples, seed=seed)

    def distribution_indices(self, users: np.ndarray, items: np.ndarray, *, n_samples: int = 1000,
                             seed: int = 0) -> dict[str, np.ndarray]:
        """See :meth:`predict_distribution`. ``mean`` is the model's point prediction (what
        :meth:`predict` returns); ``std`` and the quantiles are those of the draws, clipped to the
        rating scale for a Gaussian. Every draw is keyed by (``seed``, user, item)."""
        if n_samples < 2:
            raise ConfigError("n_samples must be at least 2")
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        with torch.no_grad():
            samples = self._distribution_indices(users, items, n_samples, seed)
        samples = samples.double().cpu().numpy()
        if self.likelihood == "gaussian":
            samples = np.clip(samples, *self.scale_)
        mean = np.clip(self._mean_indices(users, items), *self.scale_)
        out = {"mean": mean, "std": samples.std(axis=1), "samples": samples}
        qs = np.quantile(samples, list(QUANTILES.values()), axis=1)
        out.update({name: q for name, q in zip(QUANTILES, qs)})
        return out

    def evaluate_extra(self, test: Ratings, predictions: np.ndarray, n_samples: int = 200) -> dict[str, float]:
        """Likelihood-specific test metrics: Gaussian NLL and 50%/90% interval coverage;
        Poisson NLL; Bernoulli AUC and log-loss."""
        if self.likelihood == "bernoulli":
            return {"auc": roc_auc(test.ratings, predictions), "log_loss": log_loss(test.ratings, predictions)}
        if self.likelihood == "poisson":
            rate = np.maximum(self._mean_indices(test.users, test.items), 1e-9)
            return {"nll": float(-np.mean(poisson.logpmf(test.ratings, rate)))}
        dist = self.distribution_indices(test.users, test.items, n_samples=n_samples)
        return {
            "nll": self._gaussian_nll(test.ratings, dist),
            "coverage50": interval_coverage(test.ratings, dist["q25"], dist["q75"]),
            "coverage90": interval_coverage(test.ratings, dist["q05"], dist["q95"]),
        }

    @staticmethod
    def _gaussian_nll(y: np.ndarray, dist: Mapping[str, np.ndarray]) -> float:
        """NLL per rating of a Gaussian with the predictive mean and standard deviation."""
        std = np.maximum(dist["std"], 1e-3)
        return float(-np.mean(norm.logpdf(y, loc=dist["mean"], scale=std)))

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, Any]:
        return {f"net.{k}": v for k, v in self.network_.state_dict().items()}

    def _extra_meta(self) -> dict[str, Any]:
        return {"center": self.center_, "likelihood_offset": self.likelihood_.offset, "noise_std": self.noise_std_,
                "best_epoch": self.best_epoch_}

    def _set_state(self, tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        self.device_ = resolve_device(self.device)
        self.center_ = float(meta["center"])
        self.likelihood_ = from_state(self.likelihood, float(meta["likelihood_offset"]))
        self.noise_std_ = float(meta["noise_std"])
        self.best_epoch_ = int(meta.get("best_epoch", 0))
        weights = {k[len("net."):]: v for k, v in tensors.items() if k.startswith("net.")}
        _check_weights(lambda: self._build_network(self.train_.n_users, self.train_.n_items), weights)
        self.network_ = self._build_network(self.train_.n_users, self.train_.n_items)
        self.network_.load_state_dict(weights)
        self.network_.to(self.device_).eval()
        self._use_incidence(Incidence(self.train_, self.center_))

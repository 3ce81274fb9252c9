"""What a prediction of ``dlf`` or ``vdlf`` reads: a network, its likelihood, and the ratings
its encoders read.

A :class:`Scorer` is one trained network looking at one set of ratings. The fitted model
holds the scorer over *all* its training ratings (``model.scorer_``); while training, the
:class:`~dlfm.training.trainer.Trainer` validates and calibrates through scorers over the
fitting part only, so that the held-out validation ratings never reach an encoder. There is
no switching of what a model reads: each set of ratings is its own scorer.

Codes. The code of user i is g(row i), read from every training rating of the row at
prediction time (no dropout), and likewise h(column j) for item j:

    a_i = b + Σ_{j ∈ row i} w_i (c_ij A[j] + B[j]),   code_i = W₂ tanh(a_i) + b₂,

with c_ij = r_ij − μ and w_i the row weight of ``row_cap`` and ``row_norm`` (:func:`~dlfm.training.batching.row_scale`).
:meth:`Scorer.codes` computes all of them once and keeps them; one extra last row is the code
of the empty row, g(∅), used for index ``-1``. :meth:`Scorer.mc_codes` draws ``mc_samples``
sets of codes through random input-dropout masks (Monte Carlo dropout at the input, as in
training), from a generator seeded by the model's seed, so they too are a pure function of
(weights, ratings, seed). The caches are memoisation only: a scorer must not outlive a change
of its network's weights (the trainer makes a new one at every validation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dlfm.nn.encoders import DeepLatentFactorNet, RowEncoder
from dlfm.models.offsets import RowOffsets
from dlfm.nn.likelihoods import Likelihood
from dlfm.training.batching import Incidence, SideStructure, gather_rows, row_scale

Codes = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Scorer:
    """A trained network reading ``incidence``: the codes of every user and item.

    Args:
        network: the trained g, h and f.
        likelihood: the observation model (its mean maps the decoder output η to E[r]).
        incidence: the ratings the encoders read, centred by ``incidence.center``.
        device: where the network computes.
        input_dropout: the rate of the Monte Carlo input masks, the one the network was trained
            with (the model's ``regularisation_.input_dropout``).
        row_cap, mc_samples, seed, row_norm: the model's settings of the same names.
        offsets: per-user and per-item offsets of η (``None``: the likelihood's global one only).
    """

    network: DeepLatentFactorNet
    likelihood: Likelihood
    incidence: Incidence
    device: torch.device
    input_dropout: float
    row_cap: int
    mc_samples: int
    seed: int
    offsets: RowOffsets | None = None
    row_norm: float = 0.0
    _codes: Codes | None = field(default=None, repr=False)
    _mc_codes: list[Codes] | None = field(default=None, repr=False)

    @property
    def center(self) -> float:
        """μ, the value the encoders' inputs are centred by."""
        return self.incidence.center

    def _encode_side(self, encoder: RowEncoder, side: SideStructure, n_rows: int, chunk: int = 4096,
                     rng: np.random.Generator | None = None) -> torch.Tensor:
        """Codes of every row from all its entries (with ``rng``: through a random
        input-dropout mask, as in training), plus a last row for "unknown"."""
        keep = 1.0 - self.input_dropout if rng is not None else 1.0
        parts = []
        for start in range(0, n_rows, chunk):
            rows = np.arange(start, min(n_rows, start + chunk))
            seg = gather_rows(side, rows, keep=keep, generator=rng, row_cap=self.row_cap or None,
                              row_norm=self.row_norm)
            parts.append(encoder.finish(encoder.segment_sums(seg)))
        parts.append(encoder.finish(encoder.bias.unsqueeze(0)))
        return torch.cat(parts)

    def codes(self) -> Codes:
        """(user codes, item codes) from every rating of :attr:`incidence`; the last row of
        each is the code of an unknown user (item)."""
        if self._codes is None:
            self.network.eval()
            with torch.no_grad():
                inc = self.incidence
                self._codes = (self._encode_side(self.network.user_encoder, inc.by_user, inc.n_users),
                               self._encode_side(self.network.item_encoder, inc.by_item, inc.n_items))
        return self._codes

    def mc_codes(self) -> list[Codes]:
        """``mc_samples`` pairs of (user codes, item codes), each through its own random
        input-dropout mask, from a generator seeded by ``seed + 7``."""
        if self._mc_codes is None:
            rng = np.random.default_rng(self.seed + 7)
            inc, net = self.incidence, self.network
            net.eval()
            with torch.no_grad():
                self._mc_codes = [(self._encode_side(net.user_encoder, inc.by_user, inc.n_users, rng=rng),
                                   self._encode_side(net.item_encoder, inc.by_item, inc.n_items, rng=rng))
                                  for _ in range(self.mc_samples)]
        return self._mc_codes

    def code_rows(self, users: np.ndarray, items: np.ndarray, codes: Codes | None = None) -> Codes:
        """The codes of each pair's user and item (index ``-1``: the unknown row)."""
        user_codes, item_codes = codes if codes is not None else self.codes()
        u = np.where(users < 0, len(user_codes) - 1, users)
        i = np.where(items < 0, len(item_codes) - 1, items)
        return user_codes[torch.from_numpy(u).to(self.device)], item_codes[torch.from_numpy(i).to(self.device)]

    def pair_offset(self, users: np.ndarray, items: np.ndarray) -> torch.Tensor | float:
        """a_i + b_j of each pair (0 for index ``-1``); ``0.0`` without per-row offsets."""
        if self.offsets is None:
            return 0.0
        return torch.from_numpy(self.offsets.pair(users, items)).to(self.device)

    def encode_new(self, encoder: RowEncoder, columns: np.ndarray, values: np.ndarray) -> torch.Tensor:
        """The code of a row the network never saw (a new user's ratings for g, a new item's
        for h), weighted as a training row of that length is (``row_cap``, ``row_norm``)."""
        dev = self.device
        centred = torch.as_tensor(self.incidence.inputs(values), dtype=torch.float32, device=dev)
        cols = torch.as_tensor(columns, dtype=torch.int64, device=dev)
        weights = torch.full_like(centred, float(row_scale(len(values), self.row_cap or None, self.row_norm)))
        with torch.no_grad():
            sums = encoder.row_sums(cols, centred, weights, torch.zeros(1, dtype=torch.int64, device=dev))
            return encoder.finish(sums)

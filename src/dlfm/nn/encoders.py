"""The encoders g (rows → user codes) and h (columns → item codes), and the decoder f.

A row encoder reads one sparse row of the rating matrix — for a user, the centred ratings
c_j = r_ij − μ of the items j they rated — through an input layer that sees two channels per
item, the centred value and an "observed" indicator:

    a_i = b + Σ_{j ∈ row i} w_ij (c_j A[j] + B[j])          (sparse first layer)
    z_i = W₂ · dropout(tanh(a_i)) + b₂                       (code, or mean and log-variance)

A and B are n_columns × hidden tables, so the first layer is an embedding bag over the row's
entries and never a dense n_items-wide input. w_ij is 1 at prediction time; in training it is
the input-dropout mask divided by its keep probability (so E[w] = 1), optionally combined with
a bounded neighbourhood sample for very long rows. Exact removal of the rating being
predicted is done on the pre-activation: for rating (i, j),

    a_i^(−j) = a_i − w_ij (c_j A[j] + B[j]),

which costs one row of A and B per rating instead of a second pass over the row.

The gradient of the tables is the transposed sum, ∂L/∂A[j] = Σ_{rows i ∋ j} w_ij c_ij ∂L/∂a_i
(and the same without c_ij for B): with the entries grouped by column beforehand
(:class:`dlfm.training.batching.Transpose`) it is one more embedding bag over the rows'
gradients, instead of PyTorch's generic backward, which sorts the entries at every step.

With ``sparse_gradients`` set on an encoder (:func:`dlfm.training.optim.make_optimizer` sets
it for a row-sparse optimizer) the table's gradient is a sparse COO tensor of the rows the
step read, instead of a dense n_columns × hidden tensor that is zero elsewhere: the same
values, without materialising (and then updating) the rows no entry touched.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlfm.errors import ConfigError

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "elu": nn.ELU, "sigmoid": nn.Sigmoid}


class FastDropout(nn.Module):
    """Inverted dropout drawn with one uniform draw per element (PyTorch's CPU
    ``bernoulli_`` is several times slower); identical in expectation to ``nn.Dropout``."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep * (1.0 / (1.0 - self.p))


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {name!r}") from None


class _RowSums(torch.autograd.Function):
    """Σ_entries per_entry · table[index] per segment, with the backward pass read from the
    entries grouped by column (``t_*``): see the module docstring."""

    @staticmethod
    def forward(ctx, table, index, per_entry, offsets, t_segment, t_value, t_weight, t_offsets, t_rows, sparse):
        ctx.save_for_backward(t_segment, t_value, t_weight, t_offsets, t_rows)
        ctx.table_shape = table.shape
        ctx.sparse = sparse
        return F.embedding_bag(index, table, offsets, mode="sum", per_sample_weights=per_entry)

    @staticmethod
    def backward(ctx, grad):
        t_segment, t_value, t_weight, t_offsets, t_rows = ctx.saved_tensors
        n_rows, width = ctx.table_shape
        n_columns, n_entries = n_rows // 2, len(t_segment)
        grad = grad.contiguous()
        segments = torch.cat([t_segment, t_segment])
        per_entry = torch.cat([t_value, t_weight])
        if ctx.sparse:
            # a bag per column read: the gradient's rows, and which rows they are
            touched = F.embedding_bag(segments, grad, torch.cat([t_offsets, t_offsets + n_entries]), mode="sum",
                                      per_sample_weights=per_entry)
            rows = torch.cat([t_rows, t_rows + n_columns]).unsqueeze(0)
            table_grad = torch.sparse_coo_tensor(rows, touched, (n_rows, width), is_coalesced=True,
                                                 check_invariants=False)
        else:
            # a bag per table row, empty for the columns no entry reads: the dense gradient in
            # one pass, without zeroing a table and copying the read rows into it
            counts = torch.zeros(n_columns, dtype=torch.int64, device=grad.device)
            counts[t_rows] = torch.diff(t_offsets, append=t_offsets.new_tensor([n_entries]))
            starts = torch.cumsum(counts, 0) - counts
            table_grad = F.embedding_bag(segments, grad, torch.cat([starts, starts + n_entries]), mode="sum",
                                         per_sample_weights=per_entry)
        return (table_grad,) + (None,) * 9


class RowEncoder(nn.Module):
    """g or h: a sparse row in, a code (``out_dim`` numbers) out. See the module docstring."""

    def __init__(self, n_columns: int, hidden: int, out_dim: int, *, activation_name: str = "tanh",
                 dropout: float = 0.5, init_std: float | None = None):
        super().__init__()
        std = init_std if init_std is not None else 1.0 / math.sqrt(hidden)
        self.n_columns = n_columns
        #: the table's gradient as a sparse COO tensor of the rows read (see the module docstring)
        self.sparse_gradients = False
        # rows 0..n-1 are A (value channel), rows n..2n-1 are B (observed channel): one table,
        # so a row's first layer is a single embedding bag over 2 × (its entries)
        self.weight = nn.Parameter(torch.randn(2 * n_columns, hidden) * std)
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.act = activation(activation_name)
        self.dropout = FastDropout(dropout)
        self.head = nn.Linear(hidden, out_dim)

    def row_sums(self, columns: torch.Tensor, values: torch.Tensor, weights: torch.Tensor,
                 offsets: torch.Tensor, transpose: Any = None) -> torch.Tensor:
        """a = b + Σ w (c A[j] + B[j]) for each segment (one row each), shape (segments, hidden).

        ``columns``, ``values``, ``weights``: the rows' entries, concatenated; ``offsets``:
        where each row starts in them; ``transpose``: the same entries grouped by column
        (:class:`dlfm.training.batching.Transpose`), for a faster backward pass.
        """
        index = torch.stack([columns, columns + self.n_columns], dim=1).reshape(-1)
        weighted = values * weights
        per_entry = torch.stack([weighted, weights], dim=1).reshape(-1)
        if transpose is None or not torch.is_grad_enabled():
            sums = F.embedding_bag(index, self.weight, offsets * 2, mode="sum", per_sample_weights=per_entry,
                                   sparse=self.sparse_gradients)
        else:
            order = transpose.order.to(columns.device)
            sums = _RowSums.apply(self.weight, index, per_entry, offsets * 2, transpose.segment.to(columns.device),
                                  weighted[order], weights[order], transpose.offsets.to(columns.device),
                                  transpose.columns.to(columns.device), self.sparse_gradients)
        return sums + self.bias

    def segment_sums(self, segments: Any) -> torch.Tensor:
        """:meth:`row_sums` of gathered rows (:class:`dlfm.training.batching.Segments`), moved
        to this encoder's device."""
        device = self.weight.device
        return self.row_sums(segments.columns.to(device), segments.values.to(device), segments.weights.to(device),
                             segments.offsets.to(device), segments.transpose)

    def entry_terms(self, columns: torch.Tensor, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """w (c A[j] + B[j]) for single entries, shape (n, hidden): what removal subtracts."""
        offsets = torch.arange(0, len(columns), device=columns.device)
        return self.row_sums(columns, values, weights, offsets) - self.bias

    def finish(self, pre_activation: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.act(pre_activation)))


INTERACTIONS = ("hadamard", "concat", "both")


class Decoder(nn.Module):
    """f: the interaction of the user and item codes → η (and optionally a log σ).

    ``hadamard`` (the report's): x = u ⊙ v; ``concat``: x = [u, v]; ``both``: x = [u ⊙ v, u, v].
    Then η = W₂ tanh(W₁ x + b₁) + b₂.
    """

    def __init__(self, latent: int, hidden: int, *, interaction: str = "hadamard", activation_name: str = "tanh",
                 n_outputs: int = 1, dropout: float = 0.0):
        super().__init__()
        if interaction not in INTERACTIONS:
            raise ConfigError(f"interaction must be one of {', '.join(INTERACTIONS)}, not {interaction!r}")
        self.interaction = interaction
        width = {"hadamard": latent, "concat": 2 * latent, "both": 3 * latent}[interaction]
        self.net = nn.Sequential(nn.Linear(width, hidden), activation(activation_name), FastDropout(dropout),
                                 nn.Linear(hidden, n_outputs))

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.interaction == "hadamard":
            x = u * v
        elif self.interaction == "concat":
            x = torch.cat([u, v], dim=-1)
        else:
            x = torch.cat([u * v, u, v], dim=-1)
        return self.net(x)

    @torch.no_grad()
    def predict(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The forward pass for predictions: in float64, rounded to float32 at the end.

        A float32 matrix product rounds differently for different batch shapes (the kernel
        and its blocking change), so a pair's η would depend on the rest of the request. In
        float64 the batch-shape differences are ~1e-16 relative, below float32's resolution,
        so a pair's output is the same in any batch (unless a float64 difference straddles a
        float32 rounding boundary: probability ~1e-8 per value)."""
        params = {name: p.double() for name, p in self.named_parameters()}
        out = torch.func.functional_call(self, params, (u.double(), v.double()))
        return out.float()


class DeepLatentFactorNet(nn.Module):
    """g, h and f together. ``code_dim`` is the latent size, doubled for a variational model
    (mean and log-variance); ``n_outputs`` is 2 when the decoder also predicts log σ."""

    def __init__(self, n_users: int, n_items: int, *, hidden: int, latent: int, decoder_hidden: int,
                 variational: bool, interaction: str, activation_name: str, dropout: float, n_outputs: int = 1,
                 initial_log_variance: float = -6.0):
        super().__init__()
        code = 2 * latent if variational else latent
        self.latent = latent
        self.variational = variational
        self.user_encoder = RowEncoder(n_items, hidden, code, activation_name=activation_name, dropout=dropout)
        self.item_encoder = RowEncoder(n_users, hidden, code, activation_name=activation_name, dropout=dropout)
        if variational:
            # start the posteriors nearly deterministic (variance e^-6): with unit variance at
            # initialisation the sampled codes are pure noise, the decoder learns nothing, and
            # the KL term pulls every posterior onto the prior (posterior collapse)
            for encoder in (self.user_encoder, self.item_encoder):
                with torch.no_grad():
                    encoder.head.bias[latent:] = initial_log_variance
        self.decoder = Decoder(latent, decoder_hidden, interaction=interaction, activation_name=activation_name,
                               n_outputs=n_outputs)
        #: global log σ of a Gaussian observation model with learned noise (unused otherwise)
        self.log_noise = nn.Parameter(torch.zeros(1))

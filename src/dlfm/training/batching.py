"""Feeding the encoders: the sparse structure of the training matrix, built once, and
minibatches whose rows and columns are each encoded once per step.

:class:`Incidence` holds the training ratings by rows (users) and by columns (items) as flat
arrays — built once; only the dropout weights change between steps.

:class:`BlockSampler` makes the batches. Each epoch users are dealt at random into P groups
and items into Q groups, and a batch is the set of training ratings in one (user group, item
group) block, the blocks visited in random order. Each distinct user and item of a batch is
encoded once, and all the batch's ratings share these encodings.

How the rating being predicted is kept out of its own encoders (``removal``):

* ``"block"`` (default): a user's row is encoded *without every entry of the block's item
  group* — which holds all of that user's ratings in the batch — and an item's column without
  the block's user group. No target of the batch reaches an encoder, and the encoder heads
  run once per distinct row instead of once per rating. The held-out share (1/Q of a row on
  average) counts towards the input dropout: the other entries are kept with probability
  min(1, keep / (1 − 1/Q)) and every kept entry is weighted so that E[w] = 1, as at
  prediction time.
* ``"rating"``: the rows are encoded whole and r_ij alone is subtracted from the first-layer
  pre-activation of its own user and item (``a_i − w_ij (c_ij A[j] + B[j])``), so the
  nonlinearity and the heads run once per rating.

Per epoch the encoders read the matrix P + Q times. The number of groups grows as
√(ratings / batch_size), but never beyond ``max_groups``: on large data the blocks — and the
steps — grow instead, so the cost per rating of reading rows stays bounded by
(P + Q) · 2 · hidden whatever the size. With ``max_neighbors = K`` a row longer than K is
subsampled (each entry kept with probability K/n, weighted n/K, so the sum stays unbiased).
Random streams. The dealing of groups and the order of the blocks come from one stream that
every process of a distributed run shares (seeded by ``seed`` alone); the input-dropout masks
come from a stream of the process's own (seeded by ``seed`` and the rank). Under distributed
training every process therefore deals the same blocks, keeps every N-th rating of each
(``shard``) — the shards of an epoch are disjoint and cover the training set exactly — and
takes one step per non-empty block, an empty share included, so the processes always take the
same number of steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from dlfm.data.ratings import Ratings


@dataclass
class SideStructure:
    """One side (rows or columns) of the training matrix, compressed: the training ratings
    sorted by (row, column), each entry holding the other side's index and the centred value.
    ``rows`` and ``cols`` are the ratings' own index arrays (references, not copies)."""

    indptr: np.ndarray          # (n_rows + 1,)
    columns: np.ndarray         # (nnz,) the other side's index of each entry (int32 below 2**30 columns)
    values: np.ndarray          # (nnz,) centred values
    counts: np.ndarray          # (n_rows,)
    rows: np.ndarray            # (nnz,) this side's index of each training rating, in rating order
    cols: np.ndarray            # (nnz,) the other side's index of each training rating, in rating order
    _position: np.ndarray | None = None

    @property
    def position(self) -> np.ndarray:
        """(nnz,) entry position of each training rating, in rating order (built on first use:
        only per-rating removal needs it, so the sort is not kept otherwise)."""
        if self._position is None:
            order = np.lexsort((self.cols, self.rows))
            self._position = np.empty(len(order), dtype=index_dtype(len(order)))
            self._position[order] = np.arange(len(order))
        return self._position


def index_dtype(largest: int) -> type:
    """The narrowest index type of this module's arrays that holds ``largest``: int32 (half the
    memory of int64; ``embedding_bag`` reads int32 indices as they are) or int64 beyond 2**31."""
    return np.int32 if largest < 2**31 else np.int64


def stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` of non-negative integer keys, the same permutation
    faster: NumPy's stable sort of 16-bit keys is a radix sort, of wider ones a timsort
    (several times slower), so keys below 2**32 are sorted as two 16-bit digits, low digit
    first (a least-significant-digit radix sort; each pass stable, so equal keys keep their
    order)."""
    largest = int(keys.max()) if len(keys) else 0
    if largest < 2**16:
        return np.argsort(keys.astype(np.uint16, copy=False), kind="stable")
    if largest >= 2**32:
        return np.argsort(keys, kind="stable")
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    return order[np.argsort((keys[order] >> 16).astype(np.uint16), kind="stable")]


def _side(rows: np.ndarray, cols: np.ndarray, centred: np.ndarray, n_rows: int, n_cols: int) -> SideStructure:
    order = np.lexsort((cols, rows))
    counts = np.bincount(rows, minlength=n_rows)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    # the encoders index a table of 2 · n_cols rows (A then B) with these columns
    columns = cols[order].astype(index_dtype(2 * n_cols), copy=False)
    values = centred[order].astype(np.float32, copy=False)
    return SideStructure(indptr, columns, values, counts, rows, cols)


class Incidence:
    """The training ratings by user (rows) and by item (columns), as the encoders read them:
    c = r − ``center``, or with ``log_inputs`` c = (log(1 + r) − ``center``) / ``spread``
    (counts, whose raw values span orders of magnitude and would saturate the encoders, on the
    log scale and standardised)."""

    def __init__(self, ratings: Ratings, center: float, log_inputs: bool = False, spread: float = 1.0):
        self.n_users, self.n_items = ratings.n_users, ratings.n_items
        self.center = center
        self.log_inputs = log_inputs
        self.spread = spread
        centred = self.inputs(ratings.ratings)
        self.users = ratings.users
        self.items = ratings.items
        #: the ratings' values (the container's own array: each batch casts its targets to float32)
        self.rating_values = ratings.ratings
        self.by_user = _side(ratings.users, ratings.items, centred, self.n_users, self.n_items)
        self.by_item = _side(ratings.items, ratings.users, centred, self.n_items, self.n_users)

    def __len__(self) -> int:
        return len(self.users)

    def inputs(self, values: np.ndarray) -> np.ndarray:
        """What an encoder reads of ratings ``values`` (also a new user's or item's)."""
        values = np.asarray(values, dtype=np.float64)
        if not self.log_inputs:
            return values - self.center
        return (np.log1p(values) - self.center) / self.spread


@dataclass
class Transpose:
    """The entries of some :class:`Segments` grouped by column: what the backward pass of an
    encoder's first layer reads (:class:`dlfm.nn.encoders.RowEncoder`), built with the batch —
    in the background thread when batches are prefetched — so no step sorts entries."""

    order: torch.Tensor         # (n_entries,) entries sorted by column
    segment: torch.Tensor       # (n_entries,) the segment of each sorted entry
    columns: torch.Tensor       # (n_distinct,) the distinct columns
    offsets: torch.Tensor       # (n_distinct,) where each column's entries start in ``order``


@dataclass
class Segments:
    """The entries of some rows, concatenated: what an encoder's embedding bag reads."""

    columns: torch.Tensor       # (n_entries,)
    values: torch.Tensor        # (n_entries,)
    weights: torch.Tensor       # (n_entries,)
    offsets: torch.Tensor       # (n_seg,) start of each segment in the concatenation
    transpose: Transpose | None = None

    def compact(self) -> "Segments":
        """The same sums without the entries of weight 0 (dropped by the masks), with the
        transposed structure for the backward pass."""
        weights = self.weights.numpy()
        kept = np.flatnonzero(weights)
        starts = self.offsets.numpy()
        n_segments = len(starts)
        counts = np.diff(np.append(starts, len(weights)))
        segment_of_kept = np.repeat(np.arange(n_segments), counts)[kept]
        kept_per_segment = np.bincount(segment_of_kept, minlength=n_segments)
        offsets = np.zeros(n_segments, dtype=np.int64)
        if n_segments > 1:
            np.cumsum(kept_per_segment[:-1], out=offsets[1:])
        columns = self.columns.numpy()[kept]
        order = stable_order(columns)
        sorted_columns = columns[order]
        distinct = np.flatnonzero(np.diff(sorted_columns, prepend=-1)) if len(order) else np.zeros(0, dtype=np.int64)
        segment = segment_of_kept[order]
        # the distinct columns as int64: they index the table's rows (sparse gradients, index_copy_)
        transpose = Transpose(torch.from_numpy(order), torch.from_numpy(segment),
                              torch.from_numpy(sorted_columns[distinct].astype(np.int64)), torch.from_numpy(distinct))
        return Segments(torch.from_numpy(columns), self.values[torch.from_numpy(kept)],
                        self.weights[torch.from_numpy(kept)], torch.from_numpy(offsets), transpose)


def gather_rows(side: SideStructure, rows: np.ndarray, *, keep: float = 1.0, max_neighbors: int | None = None,
                generator: np.random.Generator | None = None, held_out: np.ndarray | None = None,
                held_share: float = 0.0, row_cap: int | None = None, row_norm: float = 0.0) -> Segments:
    """Entries of ``rows``; with ``keep < 1`` or a neighbour cap, random weights 0 or 1/p.

    ``held_out`` (a boolean per column of the other side) zeroes the entries of those columns
    and weights the rest by 1 / (1 − ``held_share``), the share held out on average.
    ``row_cap``, ``row_norm``: the entries of a row are weighted by :func:`row_scale` of its length.
    """
    starts = side.indptr[rows]
    counts = side.indptr[rows + 1] - starts
    offsets = np.zeros(len(rows), dtype=np.int64)
    if len(rows) > 1:
        np.cumsum(counts[:-1], out=offsets[1:])
    total = int(counts.sum())
    flat = np.repeat(starts - offsets, counts) + np.arange(total)
    columns = side.columns[flat]
    probability = np.full(len(rows), keep)
    if max_neighbors is not None:
        probability = probability * np.minimum(1.0, max_neighbors / np.maximum(counts, 1))
    if np.all(probability >= 1.0) or generator is None:
        weights = np.ones(total, dtype=np.float32)
    else:
        p_entry = np.repeat(probability.astype(np.float32), counts)
        weights = (generator.random(total, dtype=np.float32) < p_entry) / p_entry
    if held_out is not None:
        weights = weights * (~held_out[columns] * np.float32(1.0 / (1.0 - held_share)))
    if row_cap or row_norm:
        weights = weights * np.repeat(row_scale(counts, row_cap, row_norm), counts)
    return Segments(torch.from_numpy(columns), torch.from_numpy(side.values[flat]),
                    torch.from_numpy(weights.astype(np.float32, copy=False)), torch.from_numpy(offsets))


#: the row length whose entries keep weight 1 under ``row_norm`` (see :func:`row_scale`)
ROW_NORM_LENGTH = 30


def row_scale(lengths: np.ndarray, row_cap: int | None, row_norm: float = 0.0) -> np.ndarray:
    """Weight of each entry of rows of these lengths n:

        w(n) = min(1, row_cap / n) · (L / n)^row_norm,   L = :data:`ROW_NORM_LENGTH`,

    the first factor 1 without a cap, the second 1 at ``row_norm = 0``. ``row_norm = 0.5`` is
    SVD++'s |N(u)|^(−1/2) up to the constant: the first layer's sum over a row of n entries
    grows like √n instead of n, so that long rows (popular items with thousands of ratings) stay
    in the activation's range, and a row of L entries reads as it does without it."""
    lengths = np.asarray(lengths)
    out = np.ones(lengths.shape, dtype=np.float64)
    if row_cap:
        out = np.minimum(1.0, row_cap / np.maximum(lengths, 1))
    if row_norm:
        out = out * (ROW_NORM_LENGTH / np.maximum(lengths, 1)) ** row_norm
    return out.astype(np.float32)


@dataclass
class Batch:
    """One training step: ratings, and the rows/columns to encode for them.

    With block removal the ``own_*`` fields are ``None``: no rating of the batch is in the
    encoded rows. With per-rating removal they give r_ij's weight and value in its rows.
    """

    ratings: np.ndarray          # indices into the Incidence's training ratings
    user_segments: Segments
    item_segments: Segments
    user_of: torch.Tensor        # (B,) segment of each rating's user
    item_of: torch.Tensor        # (B,) segment of each rating's item
    items: torch.Tensor
    users: torch.Tensor
    targets: torch.Tensor
    own_user_weight: torch.Tensor | None = None  # (B,) weight r_ij had in its user's row (0 if dropped)
    own_item_weight: torch.Tensor | None = None
    own_user_value: torch.Tensor | None = None   # centred r_ij
    step: int = 0                # this batch's place in its epoch (0-based) ...
    epoch_steps: int = 1         # ... of this many steps


def batch_codes(network: Any, batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes of each rating's user and item, from rows that do not hold the rating — the
    second half of removal (the first is :meth:`BlockSampler.make_batch`).

    With block removal the rows were gathered without the block, and each distinct row's code
    is computed once and shared by its ratings. With per-rating removal r_ij's own term is
    subtracted from the pre-activation of its user and its item:
    a_i^(−j) = a_i − w_ij (c_ij A[j] + B[j]).
    """
    user_sums = network.user_encoder.segment_sums(batch.user_segments)
    item_sums = network.item_encoder.segment_sums(batch.item_segments)
    user_of, item_of = batch.user_of.to(device), batch.item_of.to(device)
    if batch.own_user_value is None:
        return (network.user_encoder.finish(user_sums).index_select(0, user_of),
                network.item_encoder.finish(item_sums).index_select(0, item_of))
    value = batch.own_user_value.to(device)
    user_pre = user_sums.index_select(0, user_of) - network.user_encoder.entry_terms(
        batch.items.to(device), value, batch.own_user_weight.to(device))
    item_pre = item_sums.index_select(0, item_of) - network.item_encoder.entry_terms(
        batch.users.to(device), value, batch.own_item_weight.to(device))
    return network.user_encoder.finish(user_pre), network.item_encoder.finish(item_pre)


REMOVALS = ("block", "rating")


def block_groups(n_ratings: int, batch_size: int, max_groups: int, removal: str = "block") -> int:
    """The groups per side of :class:`BlockSampler`'s grid over ``n_ratings`` ratings:
    round(√(n / batch_size)) capped at ``max_groups`` (an epoch is groups² steps)."""
    n_blocks = max(1.0, n_ratings / batch_size)
    # block removal holds out 1/groups of every row, so it needs at least 2 groups
    least = 2 if removal == "block" else 1
    return min(max(least, int(round(np.sqrt(n_blocks)))), max(least, max_groups))


class BlockSampler:
    """Random (user group × item group) blocks of about ``batch_size`` ratings each (more when
    ``max_groups`` caps the grid); see the module docstring for ``removal``."""

    def __init__(self, incidence: Incidence, batch_size: int, *, input_keep: float, max_neighbors: int | None,
                 seed: int, shard: tuple[int, int] = (0, 1), removal: str = "block", max_groups: int = 16,
                 row_cap: int | None = None, row_norm: float = 0.0):
        if removal not in REMOVALS:
            raise ValueError(f"removal must be one of {REMOVALS}, not {removal!r}")
        self.incidence = incidence
        self.batch_size = batch_size
        self.input_keep = input_keep
        self.max_neighbors = max_neighbors
        rank, _ = shard
        #: groups and block order: the same stream on every process
        self.group_rng = np.random.default_rng(np.random.SeedSequence(seed))
        #: input-dropout masks: this process's own stream
        self.mask_rng = np.random.default_rng(np.random.SeedSequence([seed, 1 + rank]))
        self.shard = shard
        self.removal = removal
        self.row_cap = row_cap
        self.row_norm = row_norm
        self.groups = block_groups(len(incidence), batch_size, max_groups, removal)

    @property
    def held_share(self) -> float:
        """Average share of a row held out by block removal (0 with per-rating removal)."""
        return 1.0 / self.groups if self.removal == "block" else 0.0

    @property
    def random_keep(self) -> float:
        """Keep probability of the random input mask, the block hold-out counted in."""
        return min(1.0, self.input_keep / (1.0 - self.held_share))

    def state(self) -> dict[str, dict]:
        """Both random streams' states (for checkpoints)."""
        return {"group": self.group_rng.bit_generator.state, "mask": self.mask_rng.bit_generator.state}

    def set_state(self, state: dict[str, dict]) -> None:
        self.group_rng.bit_generator.state = state["group"]
        self.mask_rng.bit_generator.state = state["mask"]

    def __iter__(self) -> Iterator[Batch]:
        inc = self.incidence
        g = self.groups
        user_group = self.group_rng.integers(0, g, inc.n_users)
        item_group = self.group_rng.integers(0, g, inc.n_items)
        order, bounds = self._blocks(user_group, item_group)
        rank, size = self.shard
        # an empty block is skipped by every process alike
        blocks = [b for b in self.group_rng.permutation(g * g) if bounds[b + 1] > bounds[b]]
        for step, b in enumerate(blocks):
            members = order[bounds[b] : bounds[b + 1]][rank::size]  # distributed: this process's share
            batch = self.make_batch(members, user_group == b // g, item_group == b % g)
            batch.step, batch.epoch_steps = step, len(blocks)
            yield batch

    def _blocks(self, user_group: np.ndarray, item_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The training ratings sorted by block (stably: by rating within a block), and where
        each block starts: ``order[bounds[b] : bounds[b + 1]]`` are block b's ratings, with
        b = user group · P + item group.

        The block key is uint16 when the P² blocks fit (an eighth of the memory of int64 keys,
        sorted by radix: :func:`stable_order`), and the bounds are the cumulative block sizes,
        not a search of the sorted keys: the same order and bounds as a stable argsort of int64
        keys, without its memory. The order is int32 below 2**31 ratings."""
        inc, g = self.incidence, self.groups
        key = np.uint16 if g * g <= 2**16 else np.int64
        block = (user_group * g).astype(key)[inc.users]
        block += item_group.astype(key)[inc.items]
        order = stable_order(block).astype(index_dtype(len(block)), copy=False)
        bounds = np.zeros(g * g + 1, dtype=np.int64)
        np.cumsum(np.bincount(block, minlength=g * g), out=bounds[1:])
        return order, bounds

    def make_batch(self, members: np.ndarray, held_users: np.ndarray | None = None,
                   held_items: np.ndarray | None = None) -> Batch:
        """The batch of ratings ``members``; with block removal, ``held_users`` / ``held_items``
        (booleans) are the block's groups, whose entries the columns / rows are encoded without
        (they must cover every rating of ``members``)."""
        inc = self.incidence
        users = inc.users[members]
        items = inc.items[members]
        distinct_u, user_of = np.unique(users, return_inverse=True)
        distinct_i, item_of = np.unique(items, return_inverse=True)
        block = self.removal == "block"
        if block and (held_users is None or held_items is None):
            raise ValueError("block removal needs the block's user and item groups")
        keep = self.random_keep
        useg = gather_rows(inc.by_user, distinct_u, keep=keep, max_neighbors=self.max_neighbors,
                           generator=self.mask_rng, held_out=held_items if block else None, held_share=self.held_share,
                           row_cap=self.row_cap, row_norm=self.row_norm)
        iseg = gather_rows(inc.by_item, distinct_i, keep=keep, max_neighbors=self.max_neighbors,
                           generator=self.mask_rng, held_out=held_users if block else None, held_share=self.held_share,
                           row_cap=self.row_cap, row_norm=self.row_norm)
        batch = Batch(ratings=members, user_segments=useg, item_segments=iseg,
                      user_of=torch.from_numpy(user_of.reshape(-1)), item_of=torch.from_numpy(item_of.reshape(-1)),
                      items=torch.from_numpy(items), users=torch.from_numpy(users),
                      targets=torch.from_numpy(inc.rating_values[members].astype(np.float32)))
        if not block:
            # where each rating sits inside its user's (item's) gathered segment
            u_flat = useg.offsets.numpy()[user_of] + (inc.by_user.position[members] - inc.by_user.indptr[users])
            i_flat = iseg.offsets.numpy()[item_of] + (inc.by_item.position[members] - inc.by_item.indptr[items])
            batch.own_user_weight = useg.weights[torch.from_numpy(u_flat.reshape(-1))]
            batch.own_item_weight = iseg.weights[torch.from_numpy(i_flat.reshape(-1))]
            batch.own_user_value = useg.values[torch.from_numpy(u_flat.reshape(-1))]
        batch.user_segments, batch.item_segments = useg.compact(), iseg.compact()
        return batch

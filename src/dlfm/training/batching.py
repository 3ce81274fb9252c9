"""Feeding the encoders: the sparse structure of the training matrix, built once, and
minibatches whose rows and columns are each encoded once per step.

:class:`Incidence` holds the training ratings by rows (users) and by columns (items) as flat
torch tensors — built once; only the dropout weights change between steps.

:class:`BlockSampler` makes the batches. Each epoch users are dealt at random into P groups
and items into Q groups, and a batch is the set of training ratings in one (user group, item
group) block, the blocks visited in random order. Each distinct user and item of a batch is
encoded once (from its whole row/column), and all the batch's ratings share these encodings:
per epoch the encoders read the matrix P + Q times instead of once per batch. With
``max_neighbors = K`` a row longer than K is subsampled (each entry kept with probability
K/n, weighted n/K, so the sum stays unbiased): the cost of a step is then bounded by
K × (distinct rows + columns), whatever the popularity of an item. Under distributed training
every process deals the same blocks and keeps every N-th rating of each (``shard``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from dlfm.data.ratings import Ratings


@dataclass
class SideStructure:
    """One side (rows or columns) of the training matrix, compressed."""

    indptr: np.ndarray          # (n_rows + 1,)
    columns: np.ndarray         # (nnz,) the other side's index of each entry
    values: np.ndarray          # (nnz,) centred values
    position: np.ndarray        # (nnz,) entry position of each training rating, in rating order
    counts: np.ndarray          # (n_rows,)


def _side(rows: np.ndarray, cols: np.ndarray, centred: np.ndarray, n_rows: int) -> SideStructure:
    order = np.lexsort((cols, rows))
    counts = np.bincount(rows, minlength=n_rows)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    position = np.empty(len(rows), dtype=np.int64)
    position[order] = np.arange(len(rows))
    return SideStructure(indptr, cols[order].astype(np.int64), centred[order].astype(np.float32), position, counts)


class Incidence:
    """The training ratings by user (rows) and by item (columns), centred by ``center``."""

    def __init__(self, ratings: Ratings, center: float):
        self.n_users, self.n_items = ratings.n_users, ratings.n_items
        self.center = center
        centred = ratings.ratings - center
        self.users = ratings.users
        self.items = ratings.items
        self.targets = torch.from_numpy(ratings.ratings.astype(np.float32))
        self.by_user = _side(ratings.users, ratings.items, centred, self.n_users)
        self.by_item = _side(ratings.items, ratings.users, centred, self.n_items)

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class Segments:
    """The entries of some rows, concatenated: what an encoder's embedding bag reads."""

    columns: torch.Tensor       # (n_entries,)
    values: torch.Tensor        # (n_entries,)
    weights: torch.Tensor       # (n_entries,)
    offsets: torch.Tensor       # (n_seg,)
    flat_start: np.ndarray      # (n_seg,) start of each segment in the concatenation


def gather_rows(side: SideStructure, rows: np.ndarray, *, keep: float = 1.0, max_neighbors: int | None = None,
                generator: np.random.Generator | None = None) -> Segments:
    """Entries of ``rows``; with ``keep < 1`` or a neighbour cap, random weights 0 or 1/p."""
    starts = side.indptr[rows]
    counts = side.indptr[rows + 1] - starts
    offsets = np.zeros(len(rows), dtype=np.int64)
    if len(rows) > 1:
        np.cumsum(counts[:-1], out=offsets[1:])
    total = int(counts.sum())
    flat = np.repeat(starts - offsets, counts) + np.arange(total)
    probability = np.full(len(rows), keep)
    if max_neighbors is not None:
        probability = probability * np.minimum(1.0, max_neighbors / np.maximum(counts, 1))
    if np.all(probability >= 1.0) or generator is None:
        weights = np.ones(total, dtype=np.float32)
    else:
        p_entry = np.repeat(probability.astype(np.float32), counts)
        weights = (generator.random(total, dtype=np.float32) < p_entry) / p_entry
    return Segments(torch.from_numpy(side.columns[flat]), torch.from_numpy(side.values[flat]),
                    torch.from_numpy(weights.astype(np.float32, copy=False)), torch.from_numpy(offsets), offsets)


@dataclass
class Batch:
    """One training step: ratings, and the rows/columns to encode for them."""

    ratings: np.ndarray          # indices into the Incidence's training ratings
    user_segments: Segments
    item_segments: Segments
    user_of: torch.Tensor        # (B,) segment of each rating's user
    item_of: torch.Tensor        # (B,) segment of each rating's item
    own_user_weight: torch.Tensor  # (B,) weight r_ij had in its user's row (0 if dropped)
    own_item_weight: torch.Tensor
    own_user_value: torch.Tensor   # centred r_ij
    items: torch.Tensor
    users: torch.Tensor
    targets: torch.Tensor


class BlockSampler:
    """Random (user group × item group) blocks of about ``batch_size`` ratings each."""

    def __init__(self, incidence: Incidence, batch_size: int, *, input_keep: float, max_neighbors: int | None,
                 seed: int, shard: tuple[int, int] = (0, 1)):
        self.incidence = incidence
        self.batch_size = batch_size
        self.input_keep = input_keep
        self.max_neighbors = max_neighbors
        self.rng = np.random.default_rng(seed)
        self.shard = shard
        n_blocks = max(1.0, len(incidence) / batch_size)
        self.groups = max(1, int(round(np.sqrt(n_blocks))))

    def __iter__(self) -> Iterator[Batch]:
        inc = self.incidence
        g = self.groups
        user_group = self.rng.integers(0, g, inc.n_users)
        item_group = self.rng.integers(0, g, inc.n_items)
        block = user_group[inc.users] * g + item_group[inc.items]
        order = np.argsort(block, kind="stable")
        bounds = np.searchsorted(block[order], np.arange(g * g + 1))
        rank, size = self.shard
        for b in self.rng.permutation(g * g):
            members = order[bounds[b] : bounds[b + 1]][rank::size]  # distributed: this process's share
            if len(members):
                yield self.make_batch(members)

    def make_batch(self, members: np.ndarray) -> Batch:
        inc = self.incidence
        users = inc.users[members]
        items = inc.items[members]
        distinct_u, user_of = np.unique(users, return_inverse=True)
        distinct_i, item_of = np.unique(items, return_inverse=True)
        useg = gather_rows(inc.by_user, distinct_u, keep=self.input_keep, max_neighbors=self.max_neighbors,
                           generator=self.rng)
        iseg = gather_rows(inc.by_item, distinct_i, keep=self.input_keep, max_neighbors=self.max_neighbors,
                           generator=self.rng)
        # where each rating sits inside its user's (item's) gathered segment
        u_flat = useg.flat_start[user_of] + (inc.by_user.position[members] - inc.by_user.indptr[users])
        i_flat = iseg.flat_start[item_of] + (inc.by_item.position[members] - inc.by_item.indptr[items])
        return Batch(
            ratings=members, user_segments=useg, item_segments=iseg,
            user_of=torch.from_numpy(user_of.reshape(-1)), item_of=torch.from_numpy(item_of.reshape(-1)),
            own_user_weight=useg.weights[torch.from_numpy(u_flat.reshape(-1))],
            own_item_weight=iseg.weights[torch.from_numpy(i_flat.reshape(-1))],
            own_user_value=useg.values[torch.from_numpy(u_flat.reshape(-1))],
            items=torch.from_numpy(items), users=torch.from_numpy(users), targets=inc.targets[torch.from_numpy(members)],
        )

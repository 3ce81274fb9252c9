"""The training loop's helpers: background prefetching and the optimizer."""

from __future__ import annotations

import pytest
import torch

from dlfm.training.loop import prefetch
from dlfm.training.optim import adamw


def test_prefetch_keeps_order_and_items():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))


def test_prefetch_raises_the_producers_error():
    def broken():
        yield 1
        raise ValueError("bad batch")

    got = []
    with pytest.raises(ValueError, match="bad batch"):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1]


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    import threading

    before = threading.active_count()
    for item in prefetch(iter(range(10**6)), depth=1):
        if item == 3:
            break
    assert threading.active_count() == before


def _closes_within(consume, seconds: float = 5.0) -> bool:
    """Run ``consume`` in a thread; whether it returned within ``seconds`` (never hangs the suite)."""
    import threading

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    worker.join(seconds)
    return not worker.is_alive()


def test_prefetch_closes_when_the_producer_waits_to_hand_over_the_end():
    """The producer has gathered everything and waits for room to say "done" (the queue is full)
    when the consumer stops, as on a NaN loss at the last batch: closing must not wait for it."""
    import time

    def consume() -> None:
        batches = prefetch(iter([1, 2]), depth=1)
        assert next(batches) == 1
        time.sleep(0.3)  # the producer puts 2, then waits to hand over the end
        batches.close()

    assert _closes_within(consume)


def test_prefetch_closes_when_the_producer_waits_to_hand_over_an_error():
    import time

    def broken():
        yield 1
        yield 2
        raise ValueError("bad batch")

    def consume() -> None:
        batches = prefetch(broken(), depth=1)
        assert next(batches) == 1
        time.sleep(0.3)
        batches.close()

    assert _closes_within(consume)


def test_training_stops_on_a_nan_loss_with_background_batches_every_time():
    """The loop closes its background thread when a step fails, and does not hang."""
    from dlfm.errors import TrainingError
    from dlfm.training.loop import train

    net = torch.nn.Linear(2, 1)
    optimizer = adamw(net.parameters(), lr=0.1, weight_decay=0.0)

    def run() -> None:
        for _ in range(20):
            with pytest.raises(TrainingError, match="nan"):
                train(net, lambda: iter(range(3)), lambda batch: torch.tensor(float("nan")), dict, optimizer,
                      max_epochs=2, patience=2, verbose=False, background_batches=True)

    assert _closes_within(run, 20.0)


def test_adamw_matches_the_reference_update():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 3))
    b = torch.nn.Parameter(a.detach().clone())
    fast = adamw([a], lr=0.1, weight_decay=0.5)
    reference = torch.optim.AdamW([b], lr=0.1, weight_decay=0.5, foreach=False)
    for _ in range(3):
        for p, opt in ((a, fast), (b, reference)):
            opt.zero_grad()
            (p ** 2).sum().backward()
            opt.step()
    assert torch.allclose(a, b, atol=1e-6)


def _ratings(n_users: int, n_items: int, n: int, seed: int = 0):
    import numpy as np

    from dlfm.data.ratings import Ratings, Vocabulary

    rng = np.random.default_rng(seed)
    cells = rng.choice(n_users * n_items, n, replace=False)
    return Ratings.from_indices(cells // n_items, cells % n_items, rng.integers(1, 6, n).astype(float),
                                Vocabulary(np.arange(n_users)), Vocabulary(np.arange(n_items)))


@pytest.mark.parametrize("max_groups", [4, 300])  # uint16 keys (16 blocks); int64 keys (265² blocks)
def test_blocks_are_those_of_a_stable_sort_of_int64_keys(max_groups):
    import numpy as np

    from dlfm.training.batching import BlockSampler, Incidence

    data = _ratings(400, 350, 70_000)  # √70,000 ≈ 265 groups without a cap: 70,225 blocks
    sampler = BlockSampler(Incidence(data, 3.0), 1, input_keep=1.0, max_neighbors=None, seed=0,
                           max_groups=max_groups)
    g = sampler.groups
    rng = np.random.default_rng(1)
    user_group, item_group = rng.integers(0, g, data.n_users), rng.integers(0, g, data.n_items)
    order, bounds = sampler._blocks(user_group, item_group)
    key = user_group[data.users] * g + item_group[data.items]
    expected = np.argsort(key, kind="stable")
    assert np.array_equal(order, expected)
    assert np.array_equal(bounds, np.searchsorted(key[expected], np.arange(g * g + 1)))
    assert order.dtype == np.int32


def test_incidence_entries_are_the_ratings_by_row_and_column_with_int32_indices():
    import numpy as np

    from dlfm.training.batching import Incidence

    data = _ratings(50, 40, 600)
    inc = Incidence(data, 3.0)
    for side, rows, cols in ((inc.by_user, data.users, data.items), (inc.by_item, data.items, data.users)):
        assert side.columns.dtype == np.int32 and side.position.dtype == np.int32
        assert np.array_equal(side.columns[side.position], cols)
        assert np.array_equal(np.repeat(np.arange(len(side.counts)), side.counts)[side.position], rows)
        assert np.allclose(side.values[side.position], data.ratings - 3.0)
        entry_rating = np.argsort(side.position)  # the rating of each entry
        assert np.all(np.diff(rows[entry_rating] * (cols.max() + 1) + cols[entry_rating]) > 0)  # by (row, column)


@pytest.mark.parametrize("largest", [0, 70, 2**16 - 1, 2**16, 110_793, 2**31 - 1, 2**40])
def test_stable_order_is_a_stable_argsort(largest):
    import numpy as np

    from dlfm.training.batching import stable_order

    keys = np.random.default_rng(largest).integers(0, largest + 1, 5_000)
    keys[:3] = largest  # the widest key present, and ties
    for typed in (keys, keys.astype(np.int32) if largest < 2**31 else keys):
        assert np.array_equal(stable_order(typed), np.argsort(typed, kind="stable"))
    assert len(stable_order(keys[:0])) == 0

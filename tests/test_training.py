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

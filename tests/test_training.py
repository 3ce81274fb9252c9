"""The training loop's helpers: background prefetching and the optimizer."""

from __future__ import annotations

import pytest
import torch

from dlfm.training.loop import adamw, prefetch


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

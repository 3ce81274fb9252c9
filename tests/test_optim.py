"""Row-sparse optimizer and weight average (dlfm.training.optim): known answers against the
dense AdamW and the dense EMA."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dlfm.datasets import synthetic
from dlfm.nn.encoders import DeepLatentFactorNet
from dlfm.training.batching import BlockSampler, Incidence
from dlfm.training.optim import LazyAdamW, WeightAverage, clip_grad_norm, make_optimizer

LR, DECAY = 0.01, 0.3


def _pair(rows: int = 6, width: int = 3, seed: int = 0) -> tuple[torch.nn.Parameter, torch.nn.Parameter]:
    torch.manual_seed(seed)
    start = torch.randn(rows, width)
    return torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())


def _sparse(rows: list[int], values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    return torch.sparse_coo_tensor(torch.tensor([rows]), values, shape, check_invariants=True)


def test_rows_touched_every_step_follow_dense_adamw_and_the_rest_stay():
    dense, lazy = _pair()
    reference = torch.optim.AdamW([dense], lr=LR, weight_decay=DECAY)
    optimizer = LazyAdamW([{"params": [lazy], "sparse": True}], lr=LR, weight_decay=DECAY)
    untouched = lazy.detach()[[1, 4]].clone()
    generator = torch.Generator().manual_seed(1)
    for _ in range(25):
        values = torch.randn(4, 3, generator=generator)
        full = torch.zeros(6, 3)
        full[[0, 2, 3, 5]] = values
        dense.grad = full
        lazy.grad = _sparse([0, 2, 3, 5], values, (6, 3))
        reference.step()
        optimizer.step()
    torch.testing.assert_close(lazy.detach()[[0, 2, 3, 5]], dense.detach()[[0, 2, 3, 5]], rtol=1e-6, atol=1e-7)
    assert torch.equal(lazy.detach()[[1, 4]], untouched)
    # dense AdamW does move the untouched rows (weight decay): the two differ there
    assert not torch.allclose(dense.detach()[[1, 4]], untouched)


def test_dense_group_and_dense_gradient_of_a_sparse_group_are_dense_adamw():
    dense, lazy = _pair()
    other_dense, other_lazy = _pair(seed=3)
    reference = torch.optim.AdamW([dense, other_dense], lr=LR, weight_decay=DECAY)
    optimizer = LazyAdamW([{"params": [other_lazy], "sparse": False}, {"params": [lazy], "sparse": True}],
                          lr=LR, weight_decay=DECAY)
    for step in range(10):
        grad = torch.randn(6, 3, generator=torch.Generator().manual_seed(step))
        dense.grad, lazy.grad = grad.clone(), grad.clone()
        other_dense.grad, other_lazy.grad = 2 * grad, 2 * grad
        reference.step()
        optimizer.step()
    torch.testing.assert_close(lazy.detach(), dense.detach(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(other_lazy.detach(), other_dense.detach(), rtol=1e-6, atol=1e-7)


def _lazy_run(steps: int, decay: float, seed: int = 0):
    """A lazy trajectory over random row subsets; returns (param, optimizer, average, the
    dense EMA of the same trajectory)."""
    torch.manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(8, 2))
    optimizer = LazyAdamW([{"params": [p], "sparse": True}], lr=0.05, weight_decay=0.1)
    average = WeightAverage([p], decay, optimizer)
    dense_ema = p.detach().clone()
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rows = sorted(rng.choice(8, size=int(rng.integers(0, 4)), replace=False).tolist())
        p.grad = _sparse(rows, torch.randn(len(rows), 2), (8, 2)) if rows else None
        optimizer.step()
        average.update()
        dense_ema.lerp_(p.detach(), 1.0 - decay)
    return p, optimizer, average, dense_ema


def test_lazy_average_equals_the_dense_ema_of_the_same_trajectory():
    p, _, average, dense_ema = _lazy_run(60, 0.9)
    torch.testing.assert_close(average.averaged()[0], dense_ema, rtol=1e-5, atol=1e-6)
    # and reading it twice (rows already caught up) gives the same
    torch.testing.assert_close(average.averaged()[0], dense_ema, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(dense_ema, p.detach())


def test_swap_in_puts_the_average_in_and_swap_out_restores_the_raw_weights():
    p, _, average, dense_ema = _lazy_run(20, 0.8)
    raw = p.detach().clone()
    average.swap_in()
    torch.testing.assert_close(p.detach(), dense_ema, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="already"):
        average.swap_in()
    average.swap_out()
    assert torch.equal(p.detach(), raw)


def test_update_without_a_step_is_refused():
    _, _, average, _ = _lazy_run(3, 0.9)
    with pytest.raises(RuntimeError, match="once after every"):
        average.update()


def test_state_dicts_round_trip_and_training_continues_identically():
    p, optimizer, average, _ = _lazy_run(15, 0.9)
    # deep copies, as a checkpoint file gives (a state_dict holds the optimizer's own tensors)
    saved_opt, saved_avg = copy.deepcopy(optimizer.state_dict()), average.state_dict()
    q = torch.nn.Parameter(p.detach().clone())
    optimizer2 = LazyAdamW([{"params": [q], "sparse": True}], lr=0.05, weight_decay=0.1)
    optimizer2.load_state_dict(saved_opt)
    average2 = WeightAverage([q], 0.5, optimizer2)
    average2.load_state_dict(saved_avg)
    assert optimizer2.steps_taken == 15 and average2.steps == 15 and average2.decay == 0.9
    for step in range(5):
        grad = _sparse([1, 6], torch.randn(2, 2, generator=torch.Generator().manual_seed(step)), (8, 2))
        for param, opt, avg in ((p, optimizer, average), (q, optimizer2, average2)):
            param.grad = grad.clone()
            opt.step()
            avg.update()
    assert torch.equal(p.detach(), q.detach())
    torch.testing.assert_close(average.averaged()[0], average2.averaged()[0], rtol=1e-6, atol=1e-7)


def test_load_state_dict_rejects_averages_of_other_shapes():
    _, _, average, _ = _lazy_run(2, 0.9)
    with pytest.raises(ValueError, match="do not fit"):
        average.load_state_dict({"decay": 0.9, "steps": 2, "average": [torch.zeros(3, 2)]})


def test_clip_grad_norm_of_sparse_and_dense_gradients():
    a = torch.nn.Parameter(torch.zeros(4, 2))
    b = torch.nn.Parameter(torch.zeros(2))
    a.grad = _sparse([1, 3], torch.tensor([[3.0, 0.0], [0.0, 0.0]]), (4, 2))
    b.grad = torch.tensor([0.0, 4.0])
    assert clip_grad_norm([a, b], 1.0) == pytest.approx(5.0)
    assert float(a.grad.to_dense().pow(2).sum() + b.grad.pow(2).sum()) == pytest.approx(1.0, rel=1e-5)


def _network_and_batch():
    data = synthetic(60, 40, 900, seed=2)
    incidence = Incidence(data, data.global_mean)
    sampler = BlockSampler(incidence, 128, input_keep=0.5, max_neighbors=None, seed=0)
    torch.manual_seed(0)
    net = DeepLatentFactorNet(data.n_users, data.n_items, hidden=8, latent=4, decoder_hidden=6, variational=False,
                              interaction="both", activation_name="tanh", dropout=0.0)
    return net, next(iter(sampler))


def _loss(net: DeepLatentFactorNet, batch) -> torch.Tensor:
    u = net.user_encoder.finish(net.user_encoder.segment_sums(batch.user_segments)).index_select(0, batch.user_of)
    v = net.item_encoder.finish(net.item_encoder.segment_sums(batch.item_segments)).index_select(0, batch.item_of)
    return ((net.decoder(u, v)[:, 0] - batch.targets) ** 2).mean()


def test_sparse_table_gradients_have_the_dense_values_and_hold_only_the_rows_read():
    net, batch = _network_and_batch()
    make_optimizer(net, lr=LR, weight_decay=DECAY, sparse_tables=False)
    dense_loss = _loss(net, batch)
    dense_loss.backward()
    dense = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    optimizer = make_optimizer(net, lr=LR, weight_decay=DECAY, sparse_tables=True)
    assert isinstance(optimizer, LazyAdamW)
    sparse_loss = _loss(net, batch)
    assert torch.equal(sparse_loss, dense_loss)
    sparse_loss.backward()
    assert {name for name, p in net.named_parameters() if p.grad is not None} == set(dense)
    for name, p in net.named_parameters():
        if p.grad is None:
            continue
        if name.endswith("encoder.weight"):
            assert p.grad.is_sparse
            assert torch.equal(p.grad.to_dense(), dense[name])
            read = set(batch.user_segments.columns.tolist() if name.startswith("user") else
                       batch.item_segments.columns.tolist())
            n = len(p) // 2
            assert set(p.grad.coalesce().indices()[0].tolist()) == read | {j + n for j in read}
        else:
            assert torch.equal(p.grad, dense[name])


def test_make_optimizer_dense_is_fused_adamw_with_dense_gradients():
    net, batch = _network_and_batch()
    make_optimizer(net, lr=LR, weight_decay=DECAY, sparse_tables=True)
    optimizer = make_optimizer(net, lr=LR, weight_decay=DECAY, sparse_tables=False)
    assert type(optimizer) is torch.optim.AdamW
    _loss(net, batch).backward()
    assert not net.user_encoder.weight.grad.is_sparse


def test_dense_table_gradient_is_bit_identical_to_zeros_plus_the_read_rows():
    """The one-bag dense backward (a bag per table row, empty where nothing was read) gives
    exactly the gradient of the former two passes: a zero table, the read rows' bags copied in."""
    import torch.nn.functional as F

    net, batch = _network_and_batch()
    make_optimizer(net, lr=LR, weight_decay=DECAY, sparse_tables=False)
    _loss(net, batch).backward()
    grads = {encoder: encoder.weight.grad.clone() for encoder in (net.user_encoder, net.item_encoder)}
    for encoder, segments in ((net.user_encoder, batch.user_segments), (net.item_encoder, batch.item_segments)):
        grad = grads[encoder]
        # ∂L/∂(row sums) by a second pass, then the former backward's two steps
        sums = encoder.segment_sums(segments).detach().requires_grad_()
        other = net.item_encoder if encoder is net.user_encoder else net.user_encoder
        other_sums = other.segment_sums(batch.item_segments if encoder is net.user_encoder else batch.user_segments)
        u, v = ((sums, other_sums) if encoder is net.user_encoder else (other_sums, sums))
        codes_u = net.user_encoder.finish(u).index_select(0, batch.user_of)
        codes_v = net.item_encoder.finish(v).index_select(0, batch.item_of)
        ((net.decoder(codes_u, codes_v)[:, 0] - batch.targets) ** 2).mean().backward()
        t = segments.transpose
        weighted = segments.values * segments.weights
        both = F.embedding_bag(torch.cat([t.segment, t.segment]), sums.grad,
                               torch.cat([t.offsets, t.offsets + len(t.segment)]), mode="sum",
                               per_sample_weights=torch.cat([weighted[t.order], segments.weights[t.order]]))
        former = torch.zeros_like(grad)
        former.index_copy_(0, torch.cat([t.columns, t.columns + encoder.n_columns]), both)
        assert torch.equal(grad, former)


def test_average_with_a_dense_optimizer_is_the_loops_lerp_bit_for_bit():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(4))]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=DECAY)
    average = WeightAverage(params, 0.95, optimizer)
    expected = [p.detach().clone() for p in params]
    for step in range(8):
        for p in params:
            p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(step))
        optimizer.step()
        average.update()
        torch._foreach_lerp_(expected, [p.detach() for p in params], 1.0 - 0.95)
    assert all(torch.equal(a, e) for a, e in zip(average.averaged(), expected))

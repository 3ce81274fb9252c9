"""Optimizers and weight averaging of the neural models, with row-sparse updates of the tables.

The encoders' first layers are n_columns × hidden tables (:class:`dlfm.nn.encoders.RowEncoder`)
of which a step reads only the rows of the columns its batch holds. Dense AdamW and a dense
exponential moving average (EMA) pass over every row at every step, so their cost grows with
the number of users and items instead of with the batch. :func:`make_optimizer` with
``sparse_tables=True`` switches the encoders to row-sparse table gradients (a sparse COO
tensor holding only the touched rows, with the same values as the dense gradient's rows) and
returns a :class:`LazyAdamW`, which updates only those rows; :class:`WeightAverage` averages
them lazily. With ``sparse_tables=False`` the optimizer is the fused dense AdamW of
:func:`adamw` and the average is the dense EMA, bit for bit what training did before.

AdamW (Loshchilov & Hutter; PyTorch's form), for a parameter p with gradient g at step t,
learning rate η, decoupled weight decay λ, β₁ = 0.9, β₂ = 0.999, ε = 1e-8:

    p ← p (1 − η λ)
    m ← β₁ m + (1 − β₁) g,          v ← β₂ v + (1 − β₂) g²
    p ← p − η / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)

Lazy AdamW applies exactly these equations to the rows r of a table whose gradient row was
produced at step t (the rows the batch read), with t the *global* step count (the bias
corrections are those of the step, as in ``torch.optim.SparseAdam``); every other row keeps
p, m and v unchanged. A row read at every step therefore follows dense AdamW exactly. A row
that a step does not read differs from dense AdamW, where g = 0 still moves it: dense AdamW
decays its m and v, keeps moving it along its old momentum, and shrinks it by (1 − η λ). Under
lazy updates a row's weight decay is applied once per step that reads it (a regulariser in
proportion to how often the row is read), and its momentum waits for its next read.

The averaged weights, EMA with decay d per step:  p̄ ← d p̄ + (1 − d) p  after every step.
Under lazy updates a table row that no step touched since step s keeps p constant, and k
steps of the EMA over a constant p give in closed form

    p̄(s + k) = p + (p̄(s) − p) dᵏ,

so :class:`WeightAverage` updates a table row only when a step touches it (first catching up
from its last update with the row's value before the step, then the step's own EMA update)
and catches every row up when the average is read. The averaged weights read are the dense
EMA of the same (lazy) parameter trajectory, to float rounding.

When it pays: the row-wise path gathers and scatters p, m, v and the average of every touched
row, several passes where fused dense AdamW makes one over contiguous memory. It is cheaper
only when a step reads a small share of the rows. With dlf's default block sampler (16 × 16
groups, input dropout 0.5) a step reads 85-90% of every table's rows at 1M-16M ratings, and
the row-wise optimizer and average cost 13-17 times the dense ones
(``benchmarks/sparse_optim.py``, docs/speed/sparse_optim.json): train with
``sparse_tables=False`` there. Accuracy is about the same: on ML-100k's u1 at the defaults,
test RMSE 0.8937 with lazy updates against 0.8930 dense
(``benchmarks/sparse_optim_accuracy.py``). The trainer therefore builds the dense optimizer
(:class:`~dlfm.training.trainer.Trainer`); :class:`LazyAdamW` and :class:`WeightAverage` are
the tested pieces for a sampler whose steps read few rows, not yet wired into the loop.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn
from torch.optim.adamw import adamw as functional_adamw

BETAS = (0.9, 0.999)
EPS = 1e-8


def adamw(params: Iterable[torch.Tensor], *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel where this PyTorch has it (several times faster on CPU)."""
    params = list(params)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)


def table_parameters(network: nn.Module) -> list[nn.Parameter]:
    """The row tables of ``network``: the ``weight`` of each of its
    :class:`~dlfm.nn.encoders.RowEncoder` modules, in module order."""
    from dlfm.nn.encoders import RowEncoder

    return [module.weight for module in network.modules() if isinstance(module, RowEncoder)]


def make_optimizer(network: nn.Module, *, lr: float, weight_decay: float,
                   sparse_tables: bool) -> torch.optim.Optimizer:
    """The optimizer of ``network``'s trainable parameters.

    ``sparse_tables=False``: fused dense AdamW over all of them (:func:`adamw`).
    ``sparse_tables=True``: :class:`LazyAdamW`, row-sparse on the encoders' tables.

    It also sets each encoder's ``sparse_gradients`` to ``sparse_tables``, since the two must
    agree (fused dense AdamW cannot take a sparse gradient): the forward pass and the
    gradient's values are the same either way, only the gradient's layout changes.
    """
    from dlfm.nn.encoders import RowEncoder

    for module in network.modules():
        if isinstance(module, RowEncoder):
            module.sparse_gradients = sparse_tables
    params = [p for p in network.parameters() if p.requires_grad]
    if not sparse_tables:
        return adamw(params, lr=lr, weight_decay=weight_decay)
    tables = {id(p) for p in table_parameters(network)}
    return LazyAdamW([{"params": [p for p in params if id(p) not in tables], "sparse": False},
                      {"params": [p for p in params if id(p) in tables], "sparse": True}],
                     lr=lr, weight_decay=weight_decay)


class LazyAdamW(torch.optim.Optimizer):
    """AdamW whose ``sparse`` parameter groups are updated row by row (see the module docstring).

    A parameter of a ``sparse`` group may get a sparse COO gradient (only its rows are
    updated) or a dense one (every row is); a dense group's parameters go through PyTorch's
    fused (or foreach) AdamW kernel. ``last_update`` holds, for each sparse-group parameter
    the last step touched, ``(rows, values of those rows before the step)``: what
    :class:`WeightAverage` catches up from. ``steps_taken`` counts the calls of :meth:`step`.
    """

    def __init__(self, params: Any, *, lr: float, weight_decay: float,
                 betas: tuple[float, float] = BETAS, eps: float = EPS):
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"LazyAdamW: lr must be > 0 and weight_decay >= 0, not {lr} and {weight_decay}")
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "betas": betas, "eps": eps,
                                  "sparse": False})
        self.steps_taken = 0
        self.last_update: dict[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] = {}

    def _state_of(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("LazyAdamW.step takes no closure")
        self.steps_taken += 1
        self.last_update = {}
        for group in self.param_groups:
            with_grad = [p for p in group["params"] if p.grad is not None]
            if group["sparse"]:
                for p in with_grad:
                    self._row_step(p, group)
            elif with_grad:
                self._dense_step(with_grad, group)

    def _dense_step(self, params: list[torch.Tensor], group: dict[str, Any]) -> None:
        states = [self._state_of(p) for p in params]
        beta1, beta2 = group["betas"]
        kwargs = dict(amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
                      eps=group["eps"], maximize=False)
        grads = [p.grad for p in params]
        moments = ([s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
                   [s["step"] for s in states])
        try:
            functional_adamw(params, grads, *moments, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            functional_adamw(params, grads, *moments, foreach=True, **kwargs)

    def _row_step(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """The AdamW equations on the rows of ``p`` its gradient holds."""
        state = self._state_of(p)
        grad = p.grad
        if grad.is_sparse:
            rows, values = grad._indices()[0], grad._values()
            if len(rows) > 1 and not bool((rows[1:] > rows[:-1]).all()):
                # rows repeated or unsorted (gradients of several reads summed): coalesce.
                # Autograd drops the "coalesced" flag of the encoders' sparse gradients, whose
                # rows are sorted and distinct; coalescing them anyway would copy every value.
                grad = grad.coalesce()
                rows, values = grad.indices()[0], grad.values()
        else:
            rows, values = torch.arange(len(p), device=p.device), grad
        state["step"] += 1
        t = float(state["step"])
        beta1, beta2 = group["betas"]
        lr, decay, eps = group["lr"], group["weight_decay"], group["eps"]
        previous = p.index_select(0, rows)
        m = state["exp_avg"].index_select(0, rows).mul_(beta1).add_(values, alpha=1 - beta1)
        v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
        denom = v.sqrt().div_(math.sqrt(1 - beta2 ** t)).add_(eps)
        new = previous.mul(1 - lr * decay).addcdiv_(m, denom, value=-lr / (1 - beta1 ** t))
        p.index_copy_(0, rows, new)
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        self.last_update[p] = (rows, previous)

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out["steps_taken"] = self.steps_taken
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        steps = int(state_dict.pop("steps_taken", 0))
        super().load_state_dict(state_dict)
        self.steps_taken = steps
        self.last_update = {}


def clip_grad_norm(params: Iterable[torch.Tensor], max_norm: float) -> float:
    """Scale the gradients so that their joint L2 norm is at most ``max_norm``; the norm before.
    Like ``nn.utils.clip_grad_norm_``, but also for sparse gradients (which it rejects): a
    sparse gradient's norm is that of its coalesced values."""
    params = [p for p in params if p.grad is not None]
    grads = [p.grad.coalesce() if p.grad.is_sparse else p.grad for p in params]
    squares = [(g.values() if g.is_sparse else g).pow(2).sum() for g in grads]
    total = float(torch.stack(squares).sum().sqrt()) if squares else 0.0
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p, g in zip(params, grads):
            p.grad = g * scale
    return total


class WeightAverage:
    """Exponential moving average of ``params``, p̄ ← d p̄ + (1 − d) p, lazy on the rows of
    :class:`LazyAdamW`'s sparse parameters (see the module docstring).

    Call :meth:`update` once after every ``optimizer.step()``; read the averaged weights with
    :meth:`averaged` (or put them in the parameters with :meth:`swap_in` and take them out
    with :meth:`swap_out`). With another optimizer every parameter is averaged densely, every
    step (``torch._foreach_lerp_``), as the training loop always did.
    """

    def __init__(self, params: Iterable[torch.Tensor], decay: float, optimizer: torch.optim.Optimizer | None = None):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"WeightAverage: decay must be in (0, 1), not {decay}")
        self.params = list(params)
        self.decay = float(decay)
        self.average = [p.detach().clone() for p in self.params]
        self.steps = 0
        self._optimizer = optimizer if isinstance(optimizer, LazyAdamW) else None
        lazy: set[int] = set()
        if self._optimizer is not None:
            lazy = {id(p) for g in self._optimizer.param_groups if g["sparse"] for p in g["params"]}
            self.steps = self._optimizer.steps_taken
        self._lazy = [i for i, p in enumerate(self.params) if id(p) in lazy]
        self._dense = [i for i in range(len(self.params)) if id(self.params[i]) not in lazy]
        #: per lazy parameter, the step up to which each row's average is current
        self._current = {i: torch.full((len(self.params[i]),), self.steps, dtype=torch.int64) for i in self._lazy}
        self._raw: list[torch.Tensor] | None = None

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step of every parameter, after an optimizer step."""
        self.steps += 1
        if self._optimizer is not None and self._optimizer.steps_taken != self.steps:
            raise RuntimeError(f"WeightAverage.update: the optimizer has taken {self._optimizer.steps_taken} steps "
                               f"and the average {self.steps}; call update() once after every optimizer.step()")
        if self._dense:
            torch._foreach_lerp_([self.average[i] for i in self._dense],
                                 [self.params[i].detach() for i in self._dense], 1.0 - self.decay)
        for i in self._lazy:
            touched = self._optimizer.last_update.get(self.params[i])  # type: ignore[union-attr]
            if touched is None:
                continue
            rows, previous = touched
            behind = (self.steps - 1 - self._current[i].index_select(0, rows)).to(previous.dtype)
            caught_up = previous + (self.average[i].index_select(0, rows) - previous) * self._powers(behind)
            caught_up.lerp_(self.params[i].detach().index_select(0, rows), 1.0 - self.decay)
            self.average[i].index_copy_(0, rows, caught_up)
            self._current[i].index_fill_(0, rows, self.steps)

    def _powers(self, behind: torch.Tensor) -> torch.Tensor:
        """dᵏ per row, shaped to broadcast over the row's columns."""
        return torch.pow(self.decay, behind).unsqueeze(1)

    @torch.no_grad()
    def _catch_up(self) -> None:
        """Bring every lazy row's average up to the current step (p constant since its last)."""
        for i in self._lazy:
            behind = (self.steps - self._current[i]).to(self.average[i].dtype)
            if bool((behind > 0).any()):
                p = self.params[i].detach()
                self.average[i].sub_(p).mul_(self._powers(behind)).add_(p)
            self._current[i].fill_(self.steps)

    def averaged(self) -> list[torch.Tensor]:
        """The averaged weights, one tensor per parameter (not copies: do not write to them)."""
        if self._raw is None:
            self._catch_up()
        return self.average

    @torch.no_grad()
    def swap_in(self) -> None:
        """Put the averaged weights in the parameters (the raw ones kept aside); only the
        storages are exchanged. Take no optimizer step until :meth:`swap_out`."""
        if self._raw is not None:
            raise RuntimeError("WeightAverage.swap_in: the averaged weights are in already")
        self._catch_up()
        self._raw = [p.data for p in self.params]
        for p, v in zip(self.params, self.average):
            p.data = v

    @torch.no_grad()
    def swap_out(self) -> None:
        """Put the raw weights back after :meth:`swap_in`."""
        if self._raw is None:
            raise RuntimeError("WeightAverage.swap_out: swap_in was not called")
        for p, v in zip(self.params, self._raw):
            p.data = v
        self._raw = None

    def state_dict(self) -> dict[str, Any]:
        """``decay``, ``steps`` and the averaged weights (caught up: no per-row bookkeeping)."""
        return {"decay": self.decay, "steps": self.steps, "average": [a.clone() for a in self.averaged()]}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        average = state["average"]
        if len(average) != len(self.params) or any(a.shape != p.shape for a, p in zip(average, self.params)):
            raise ValueError("WeightAverage.load_state_dict: the saved averages do not fit these parameters")
        self.decay = float(state["decay"])
        self.steps = int(state["steps"])
        for mine, saved in zip(self.average, average):
            mine.copy_(saved)
        for i in self._lazy:
            self._current[i].fill_(self.steps)

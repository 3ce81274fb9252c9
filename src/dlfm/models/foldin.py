"""Semi-amortized fold-in: refine the encoder's guess of a new user's (item's) latent vector.

``dlf`` and ``vdlf`` fold in a new user from its given ratings {(j, r_j)} through the user
encoder alone: u₀ = g(given), r̂_j' = f(u₀, v_j'). The encoders are trained on long rows (half
of them dropped) and never see rows of 5–20 entries, so u₀ is a poor summary of a short row.
The decoder f and the item vectors v_j are fixed and good, so the given ratings themselves can
correct u₀: the fold-in is the maximum a posteriori latent vector

    u* = argmin_u  Σ_{j ∈ given} ℓ(r_j, f(u, v_j))  +  (λ/2) Σ_d (u_d − c_d)² / s_d²,

with ℓ the likelihood's negative log-likelihood — for a Gaussian ℓ = (r − μ − η)² / 2σ², σ the
model's calibrated noise (``noise_std_``, the RMSE on the held-out validation part); for
Poisson and Bernoulli the NLL itself; per-row offsets a_i + b_j are added to η — and a
Gaussian prior N(c, diag s²/λ), where s_d is the spread (standard deviation) of dimension d
over the known users' latent vectors. The prior is the product of two: a share ρ
(``foldin_anchor``) of λ around the encoder's guess u₀ and the rest around the known users'
mean ū — the population prior of a Bayesian factor model's fold-in —

    N(u₀, s²/(ρλ)) · N(ū, s²/((1 − ρ)λ))  ∝  N(c, s²/λ),   c = ρ u₀ + (1 − ρ) ū.

λ = 1 would say the new user's vector lies as far from the centre as users' vectors lie from
each other. A new item is the same with users and items swapped.

With Gaussian per-row offsets (``dlf``'s default) the new row's own offset a is refined with u
(``foldin_offset_prior`` = k > 0): the objective gains the term κ a²/2σ², the prior N(0, σ²/κ)
with κ = k × the offsets' ALS penalty (15 for a user, 10 for an item), and (u*, a*) are found
together. k = 1 would be the offsets' own prior; with it, part of the user's level moves into u
(the decoder can express a level too), which is worse; a weaker prior lets a carry the level.
``k = 0`` keeps a at its closed form, the ALS mean Σ(r − μ − b_j)/(15 + n), and refines u alone.

For ``vdlf``, u is the posterior mean (the log-variance of q(u | given) is left as the encoder
gives it, and unused by the point prediction).

The minimisation is ``steps`` iterations of L-BFGS (full-batch, a strong-Wolfe line search) in
float64 from c: deterministic, and for ``steps = 0`` u* = u₀ exactly, the encoder fold-in.

How the earlier defaults (λ = 0.3, ρ = 0.5, 20 steps) were chosen — without any test rating of a
reported fold: ``benchmarks/foldin_select.py`` scores them on simulated new users and items
carved from the *training* part of the cold-start protocol's fold 1 (a sixth of its users and
of its items held out, dlf fitted on the rest; ``docs/coldstart/foldin_select.json``). RMSE of
the new users at given 5 / 10 / 20 (items in brackets):

* the encoder alone (0 steps): 1.006 / 0.966 / 0.935 (1.048 / 0.993 / 0.941);
* prior around u₀ only (ρ = 1): λ = 0.3 gave 0.994 / 0.948 / 0.923 (1.028 / 0.979 / 0.932) and
  λ = 1 0.994 / 0.949 / 0.922; λ = 0.1 and 3 were worse;
* ρ = 0.5, λ = 0.3: 0.986 / 0.944 / 0.919 (1.014 / 0.976 / 0.936) — better for users at every n
  and for items at 5 and 10; ρ ∈ {0, 0.33, 0.67} and λ = 0.6 were within 0.002 of it for users
  (items at 5: 1.008–1.018);
* 20 steps is converged (50 agree to 1e-4); 5 steps, stopped early, were 0.002 better for users
  at 10 — an implicit regulariser, not taken.

For comparison on the same split: ``mf``'s fold-in 0.975 / 0.943 / 0.919 (1.031 / 0.986 /
0.941) and ``baseline``'s 1.020 / 0.986 / 0.961 (1.011 / 0.987 / 0.963).

The offset's refinement (k = 0.25) and λ = 0.6 were chosen later, with ``dlf``'s current
defaults (``row_norm`` 0.5), on the same kind of inner split for three seeds (``--seed 1, 2, 3``:
three disjoint draws of simulated users and items; ``docs/coldstart/select/offset/``). New users
at given 10, against the previous fold-in (λ = 0.3, offset closed form) and ``mf``'s fold-in:

* seed 1: 0.9305 against 0.9431 and 0.9425; seed 2: 0.9609 against 0.9731 and 0.9668; seed 3:
  0.9144 against 0.9231 and 0.9172; at given 5 and 20 and for items it is better too;
* k ∈ {0.15, 0.25, 0.35} and λ ∈ {0.6, 1} are within 0.002 of each other; k = 1 (the offsets'
  own penalty) is worse than not refining (0.9565 at seed 1), k = 0 (a free offset) too (0.9412);
* a full-covariance prior instead of the spreads s_d was worse (seed 3: 0.9259).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from dlfm.nn.likelihoods import Likelihood

#: η = decode(u, v) for rows of u and v (the decoder's first output)
Decode = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: per-rating negative log-likelihood ℓ(r, η)
RatingLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def latent_spread(latents: torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """s_d: the standard deviation of each dimension over ``latents`` (rows: known users or
    items), floored at ``floor`` so that a dead dimension keeps a finite prior precision."""
    if len(latents) < 2:
        return torch.ones(latents.shape[-1], dtype=latents.dtype, device=latents.device)
    return latents.std(dim=0).clamp(min=floor)


def map_objective(u: torch.Tensor, prior_mean: torch.Tensor, prior_std: torch.Tensor, strength: float,
                  others: torch.Tensor, targets: torch.Tensor, decode: Decode, loss: RatingLoss,
                  bias: torch.Tensor | float = 0.0, bias_penalty: float = 0.0) -> torch.Tensor:
    """Σ_j ℓ(r_j, β + f(u, v_j)) + (λ/2) Σ_d (u_d − u₀_d)² / s_d² + (κ/2) β² for one latent vector
    ``u`` (shape (d,)) against the fixed vectors ``others`` (n × d) of its given ratings
    ``targets``; β = ``bias`` is the new row's own offset and κ = ``bias_penalty`` (in the units
    of ℓ) its prior's weight."""
    eta = decode(u.unsqueeze(0).expand(len(others), -1), others) + bias
    prior = 0.5 * strength * (((u - prior_mean) / prior_std) ** 2).sum()
    return loss(targets, eta).sum() + prior + 0.5 * bias_penalty * bias ** 2


class Refined(NamedTuple):
    """The fold-in's result: the latent vector u* and the new row's own offset β*."""

    latent: torch.Tensor
    bias: float


def refine_latent(prior_mean: torch.Tensor, others: torch.Tensor, targets: torch.Tensor, decode: Decode,
                  loss: RatingLoss, *, prior_std: torch.Tensor, strength: float = 1.0, steps: int = 20,
                  bias: float = 0.0, bias_penalty: float | None = None) -> Refined:
    """u* (and β*) of the module docstring, by ``steps`` L-BFGS iterations from u₀ = ``prior_mean``.

    Args:
        prior_mean: u₀, the encoder's latent vector of the given ratings, shape (d,).
        others: the fixed latent vectors of the rated items (users), shape (n, d).
        targets: the given ratings r_j, shape (n,).
        decode: η = f(u, v) row by row (differentiable).
        loss: ℓ(r, η) per rating.
        prior_std: s, shape (d,) (see :func:`latent_spread`).
        strength: λ, the prior's weight (λ ≥ 0; λ = 0 is maximum likelihood).
        steps: L-BFGS iterations; 0 returns ``prior_mean`` itself.
        bias: β, the new row's own offset, added to η (its starting value when refined).
        bias_penalty: κ, the weight of β's prior N(0, 1/κ) when β is refined with u (κ > 0);
            ``None``: β stays as given.

    Returns (u*, β*): u* of shape (d,) in the dtype and on the device of ``prior_mean``.
    """
    if steps <= 0 or len(targets) == 0:
        return Refined(prior_mean, float(bias))
    dtype = prior_mean.dtype
    u0 = prior_mean.detach().double()
    s, v, r = prior_std.detach().double(), others.detach().double(), targets.detach().double()
    refined = bias_penalty is not None
    u = u0.clone().requires_grad_(True)
    beta = u0.new_tensor(float(bias)).requires_grad_(refined)  # a constant unless refined
    penalty = bias_penalty if refined else 0.0
    optimizer = torch.optim.LBFGS([u, beta] if refined else [u], lr=1.0, max_iter=steps, history_size=10,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = map_objective(u, u0, s, strength, v, r, decode, loss, beta, penalty)
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(closure)
    return Refined(u.detach().to(dtype), float(beta.detach()))


def prior_centre(code: torch.Tensor, population: torch.Tensor, anchor: float) -> torch.Tensor:
    """c = ρ u₀ + (1 − ρ) ū: the centre of the product of the two priors N(u₀, s²/(ρλ)) and
    N(ū, s²/((1 − ρ)λ)), ū the mean of ``population`` (ρ = ``anchor`` = 1: u₀ itself, bit for bit)."""
    if anchor >= 1.0 or len(population) == 0:
        return code
    mean = population.mean(dim=0).to(code.dtype)
    return anchor * code + (1.0 - anchor) * mean


def fold_in(decoder: torch.nn.Module, likelihood: Likelihood, noise_std: float, prior_mean: torch.Tensor,
            others: torch.Tensor, targets: torch.Tensor, population: torch.Tensor, *, strength: float,
            steps: int, swap: bool = False, offset: torch.Tensor | float = 0.0, own: float = 0.0,
            own_prior: float | None = None, anchor: float = 1.0) -> Refined:
    """:func:`refine_latent` with a trained model's pieces: η = ``decoder``(u, v)[:, 0] in
    float64 (eval mode, as :meth:`~dlfm.nn.encoders.Decoder.predict`), ℓ = the likelihood's NLL
    — for a Gaussian ½(r − μ − η)²/σ² with σ = ``noise_std`` (1 if it is 0) — and s the spread
    of ``population``, the latent vectors of the known users (items) of the new one's side.
    ``swap``: the vector refined is an item's, f's second argument (``others`` are users).
    ``offset``: the other side's per-row offsets of the given ratings (b_j,
    :mod:`dlfm.models.offsets`), added to the decoder's output; 0 without offsets.
    ``own``: the new row's own offset a (its closed form); ``own_prior``: κ in pseudo-ratings —
    a is refined with u under the prior N(0, σ²/κ) (the penalty κ a²/2σ²) — or ``None``: a
    stays ``own``.
    ``anchor``: ρ, the share of λ around the encoder's code ``prior_mean``; the rest is around
    the mean of ``population`` (:func:`prior_centre`), and the refinement starts at the centre.
    With no step to take (``steps = 0`` or no given rating) the encoder's code and ``own`` are
    returned."""
    if steps <= 0 or len(targets) == 0:
        return Refined(prior_mean, float(own))
    prior_mean = prior_centre(prior_mean, population, anchor)
    params = {name: p.detach().double() for name, p in decoder.named_parameters()}

    def decode(new: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        pair = (others, new) if swap else (new, others)
        return torch.func.functional_call(decoder, params, pair)[:, 0]

    scale = 1.0 / noise_std ** 2 if likelihood.name == "gaussian" and noise_std > 0 else 1.0

    shift = offset.double() if torch.is_tensor(offset) else offset

    def loss(r: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        return scale * likelihood.nll(eta + shift, r)

    return refine_latent(prior_mean, others, targets, decode, loss, prior_std=latent_spread(population.double()),
                         strength=strength, steps=steps, bias=own,
                         bias_penalty=None if own_prior is None else scale * own_prior)

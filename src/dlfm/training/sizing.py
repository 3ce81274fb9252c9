"""How the neural models' regularisation scales with the amount of training data.

The defaults of ``dlf`` and ``vdlf`` were chosen on ML-100k (about 76,000 fitting ratings per
official fold, 36 training steps an epoch). Applied unchanged to a million ratings they hold
the decoder's interaction at 0 and the model learns only the biases (README, "The defaults at
every size"). What changes with the size is the number of steps S an epoch takes — the block
grid of :func:`~dlfm.training.batching.block_groups` has round(√(n / batch_size)) groups a side,
at most ``max_groups``, and an epoch is one step per block, so S grows with n up to 16² = 256
(from about 492,000 ratings at the default batch size) and the blocks grow beyond — while every
AdamW step decays every weight, table rows included, by (1 − η λ), however little of a row
the step read. An epoch therefore decays each weight S times: at 1M ratings 7 times as
often as on ML-100k, for the same ratings per row. To keep the regularisation per epoch
that of the reference size, where an epoch takes more steps than at :data:`REFERENCE_RATINGS`
(from about 115,000 ratings at the defaults) the settings are weakened by

    ρ = min(1, S_ref / S),     S = block_groups(n)²,  S_ref = block_groups(REFERENCE_RATINGS)²;
    weight decay   λ_n = λ · ρ;
    dropout        p_n / (1 − p_n) = ρ^DROPOUT_POWER · p / (1 − p)     (hidden layer and input).

Dropout's strength is that of an L2 penalty proportional to p/(1 − p) (Wager, Wang & Liang,
"Dropout training as adaptive regularization", 2013), hence the odds; its square root (a
gentler change than the decay's, since dropout is not applied per step) is the choice of
Loshchilov & Hutter's normalised weight decay, λ ∝ √(b / (B T)). Chosen on synthetic data
(``python benchmarks/synthetic_accuracy.py --ratings N --threads 1 --history [--param ...]``,
each size's own held-out 10%, never a MovieLens rating; JSONs in ``docs/speed/sizing/``),
``dlf`` with ``row_norm=0.5``, held-out RMSE:

    1M ratings (mf 0.9397, biases alone 0.9566)
      decay 0.5,    dropouts 0.5   (unscaled)                          0.9566  the biases' error
      decay 0.05,   dropouts 0.5                                       0.9431  30 epochs, still falling
      decay 0.0068, dropouts 0.25                                      0.9399
      decay 0.056,  dropouts 0.105 (ρ = 100,000/n, DROPOUT_POWER = 1)  0.9386  best epoch 5, then overfits
      decay 0.056,  dropouts 0.2                                       0.9378
      decay 0.056,  dropouts 0.25  (ρ = 100,000/n, power 0.5)          0.9381
      decay 0.096,  dropouts 0.30  (ρ = S_ref/S, power 0.5: the rule)  0.9370
    4M ratings (mf 0.9348, biases alone 0.9550)
      decay 0.014,  dropouts 0.14  (ρ = 100,000/n, power 0.5)          0.9353  best epoch 4, then overfits
      decay 0.096,  dropouts 0.30  (the rule)                          0.9334  best epoch 6

ρ = 100,000/n keeps weakening the settings where the steps per epoch no longer grow, and
overfits at 4M; ρ = S_ref/S stops where they stop. At n ≤ REFERENCE_RATINGS, ML-100k
included, nothing changes.

**The learning rate.** Above 557,568 fitting ratings at the defaults (where round(√(n / 2048))
would exceed 16) the grid is capped at 16² blocks, and each step's block holds more than
``batch_size`` ratings and grows with n; there the learning rate is lowered to

    η_n = η · min(1, √(batch_size · S / n))        (S = max_groups², n the fitting part)

(:func:`lr_ratio`): 0.78 η on 1M ratings (a fitting part of 855,000 after the 10% held out and
the 5% validation), 0.39 η on 4M (3.42M). Chosen on a fresh synthetic split
(``--seed 2``, never a MovieLens rating, not the seed-0 splits above nor the seed-1 check) at
4M, where the shipped η = 0.005 spends its first two epochs at the biases' error:

    4M ratings, seed 2 (mf 0.9337)                best epoch   seconds to it   held-out RMSE
      η = 0.005    (before)                            8              225            0.9332
      η = 0.0025                                       6              160            0.9333
      η = 0.00195  (≈ the rule's 0.00196)              6              167            0.9332
      the rule, in the code (a later run)              6              224            0.9331
      η = 0.0128   (√ growth with the block, Adam's usual rule)   still at the biases' 0.9562 after 8 epochs

The same accuracy in fewer epochs; the square-root form is the one Adam's batch-size rule
uses, here downwards (why larger blocks want smaller steps in these encoders was not
established: measured, not derived). ``size_scaled=False`` keeps η as given.

``n`` is the fitting part (the training ratings less the validation part), the ratings the
sampler deals; the values trained with are saved in the model file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dlfm.training.batching import block_groups

#: training ratings up to which a model's regularisation settings are applied as given
#: (ML-100k's folds, on which the defaults were chosen, fit on about 76,000)
REFERENCE_RATINGS = 100_000
#: the power of ρ by which the dropout odds shrink (weight decay: 1)
DROPOUT_POWER = 0.5


def size_ratio(n_ratings: int, batch_size: int, max_groups: int, removal: str = "block",
               reference: int | None = None) -> float:
    """ρ = min(1, S_ref / S): the reference size's steps per epoch over ``n_ratings``'."""
    reference = REFERENCE_RATINGS if reference is None else reference
    steps = block_groups(n_ratings, batch_size, max_groups, removal) ** 2
    steps_ref = block_groups(reference, batch_size, max_groups, removal) ** 2
    return min(1.0, steps_ref / steps)


def lr_ratio(n_ratings: int, batch_size: int, max_groups: int, removal: str = "block") -> float:
    """The learning rate's factor on ``n_ratings`` fitting ratings: √(batch_size / b), b = n / S
    the ratings of one step, where ``max_groups`` caps the block grid (round(√(n / batch_size))
    groups a side without the cap), so that the blocks grow with n; 1 where the grid is not
    capped (ML-100k's at the defaults) and never above 1 (module docstring)."""
    if block_groups(n_ratings, batch_size, n_ratings + 1, removal) <= max_groups:
        return 1.0  # the grid as it would be without the cap: steps of about batch_size ratings
    groups = block_groups(n_ratings, batch_size, max_groups, removal)
    per_step = n_ratings / groups**2
    return min(1.0, math.sqrt(batch_size / per_step))


def scaled_dropout(p: float, ratio: float) -> float:
    """p_n with p_n / (1 − p_n) = ratio^DROPOUT_POWER · p / (1 − p) (p = 0 and p = 1 stay,
    and every p at ratio 1, bit for bit)."""
    if p <= 0.0 or p >= 1.0 or ratio >= 1.0:
        return float(p)
    odds = p / (1.0 - p) * ratio ** DROPOUT_POWER
    return odds / (1.0 + odds)


@dataclass(frozen=True)
class Regularisation:
    """The regularisation a network is trained with, its settings scaled to the data."""

    weight_decay: float
    dropout: float
    input_dropout: float

    @classmethod
    def scaled(cls, weight_decay: float, dropout: float, input_dropout: float, ratio: float) -> "Regularisation":
        """The settings as given, weakened by ρ = ``ratio`` (module docstring)."""
        return cls(float(weight_decay) * ratio, scaled_dropout(dropout, ratio), scaled_dropout(input_dropout, ratio))

    def to_json(self) -> dict[str, float]:
        return {"weight_decay": self.weight_decay, "dropout": self.dropout, "input_dropout": self.input_dropout}

    @classmethod
    def from_json(cls, data: Any) -> "Regularisation":
        """The values :meth:`to_json` wrote (a model file's); a :class:`ValueError` naming
        what is wrong otherwise."""
        try:
            reg = cls(**{key: float(data[key]) for key in ("weight_decay", "dropout", "input_dropout")})
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"its regularisation {data!r} is not weight_decay, dropout and input_dropout") from None
        if not (math.isfinite(reg.weight_decay) and reg.weight_decay >= 0
                and 0 <= reg.dropout < 1 and 0 <= reg.input_dropout < 1):
            raise ValueError(f"its regularisation {data!r} is out of range")
        return reg

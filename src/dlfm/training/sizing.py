"""How the neural models' regularisation scales with the amount of training data.

The defaults of ``dlf`` and ``vdlf`` were chosen on ML-100k (about 76,000 fitting ratings per
official fold). Applied unchanged to a million ratings they hold the decoder's interaction at 0
and the model learns only the biases (README, "The defaults at every size"). The loss is a
*mean* over the n training ratings, so a regulariser of fixed strength weighs on it as much at
n = 10⁷ as at n = 10⁵, where a fixed prior would weigh 1/n as much (MAP: (1/n) Σ −log p(r) +
‖w‖²/(2 n s²)); and every AdamW step decays every table row, while a row's share of a step's
gradient falls as users and items grow with the data. Above :data:`REFERENCE_RATINGS` the
three regularisers are therefore weakened with n:

    weight decay   λ_n = λ · ρ,                              ρ = min(1, REFERENCE_RATINGS / n)
    dropout        p_n / (1 − p_n) = ρ^DROPOUT_POWER · p / (1 − p)      (hidden layer and input)

Dropout's strength is that of an L2 penalty proportional to p/(1 − p) (Wager, Wang & Liang,
"Dropout training as adaptive regularization", 2013), hence the odds. The powers were chosen on
synthetic data of 1M ratings (``python benchmarks/synthetic_accuracy.py --ratings 1000000
--threads 1 --history``, its own held-out 10%; JSONs in ``docs/speed/sizing/``), never on a
MovieLens rating. Held-out RMSE there (``mf`` 0.9397, biases alone 0.9566), with ``row_norm=0.5``:

    decay 0.5,    dropouts 0.5 (unscaled)                     0.9566  (the biases' error)
    decay 0.05,   dropouts 0.5                                0.9431  (30 epochs, still falling)
    decay 0.056,  dropouts 0.105  (DROPOUT_POWER = 1)         0.9386  (best epoch 5, then overfits)
    decay 0.056,  dropouts 0.2                                0.9378
    decay 0.056,  dropouts 0.25   (DROPOUT_POWER = 0.5)       0.9381  (best epoch 9)

At n ≤ REFERENCE_RATINGS, ML-100k included, nothing changes. ``n`` is the number of ratings handed to ``fit`` (the validation part included), so a
saved model's values follow from its training ratings; the model file stores them anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

#: training ratings up to which a model's regularisation settings are applied as given
#: (ML-100k's folds, on which the defaults were chosen, have 80,000)
REFERENCE_RATINGS = 100_000
#: the power of ρ by which the dropout odds shrink (weight decay: 1)
DROPOUT_POWER = 0.5


def size_ratio(n_ratings: int, reference: int | None = None) -> float:
    """ρ = min(1, reference / n), reference defaulting to :data:`REFERENCE_RATINGS`."""
    reference = REFERENCE_RATINGS if reference is None else reference
    return 1.0 if n_ratings <= reference else reference / float(n_ratings)


def scaled_weight_decay(weight_decay: float, n_ratings: int, reference: int | None = None) -> float:
    """λ_n = λ · ρ: AdamW's decoupled decay for ``n_ratings`` training ratings."""
    return float(weight_decay) * size_ratio(n_ratings, reference)


def scaled_dropout(p: float, n_ratings: int, reference: int | None = None) -> float:
    """p_n with p_n / (1 − p_n) = ρ^DROPOUT_POWER · p / (1 − p) (p = 0 and p = 1 stay)."""
    if p <= 0.0 or p >= 1.0:
        return float(p)
    odds = p / (1.0 - p) * size_ratio(n_ratings, reference) ** DROPOUT_POWER
    return odds / (1.0 + odds)


@dataclass(frozen=True)
class Regularisation:
    """The regularisation a network is trained with, its settings scaled to the data."""

    weight_decay: float
    dropout: float
    input_dropout: float

    @classmethod
    def for_size(cls, weight_decay: float, dropout: float, input_dropout: float, n_ratings: int) -> "Regularisation":
        """The settings as given, scaled to ``n_ratings`` training ratings (module docstring)."""
        return cls(scaled_weight_decay(weight_decay, n_ratings), scaled_dropout(dropout, n_ratings),
                   scaled_dropout(input_dropout, n_ratings))

    def to_json(self) -> dict[str, float]:
        return {"weight_decay": self.weight_decay, "dropout": self.dropout, "input_dropout": self.input_dropout}

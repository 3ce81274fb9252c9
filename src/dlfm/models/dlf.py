"""Model 2 of the report, ``dlf``: the deterministic deep latent factor model.

For an observed rating r_ij,

    u = g(row i of R without r_ij),   v = h(column j of R without r_ij),   r̂_ij = f(u ⊙ v),

with g, h, f neural networks (see :mod:`dlfm.nn.encoders`). Trained by minimising the
likelihood's negative log-likelihood — for the Gaussian, the squared error ½(r − r̂)² — over
minibatches with AdamW, input dropout on the rows' other entries, dropout on the encoders'
hidden layer, and early stopping on a validation part carved from the training data.

Its predictive distribution is the point prediction plus the likelihood's own noise: for the
Gaussian, N(r̂, σ²) with σ the RMSE on the validation part.
"""

from __future__ import annotations

import numpy as np
import torch

from dlfm.models import register
from dlfm.models.neural import NeuralFactorModel
from dlfm.nn.likelihoods import poisson_draw, random_like
from dlfm.training.batching import Batch


@register
class DeepLatentFactorModel(NeuralFactorModel):
    __doc__ = (__doc__ or "") + (NeuralFactorModel.__doc__ or "")
    name = "dlf"

    def _loss(self, batch: Batch, user_codes: torch.Tensor, item_codes: torch.Tensor) -> torch.Tensor:
        eta = self.network_.decoder(user_codes, item_codes)[:, 0]
        return self.likelihood_.nll(eta, batch.targets.to(eta.device)).mean()

    def _distribution_indices(self, users: np.ndarray, items: np.ndarray, n_samples: int,
                              generator: torch.Generator) -> torch.Tensor:
        """The point prediction's likelihood: N(r̂, σ²) with σ the validation RMSE,
        Bernoulli(p̂) or Poisson(λ̂)."""
        mean = torch.as_tensor(self._mean_indices(users, items), dtype=torch.float32, device=self.device_)
        mean = mean.unsqueeze(1).expand(-1, n_samples)
        if self.likelihood == "gaussian":
            noise = random_like("normal", mean, generator)
            return mean + max(self.noise_std_, 1e-6) * noise
        if self.likelihood == "bernoulli":
            return (random_like("uniform", mean, generator) < mean).to(mean.dtype)
        return poisson_draw(mean, generator)

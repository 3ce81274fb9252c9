"""Random numbers that are a function of their key: the same (seed, stream, key, draw) gives the
same number in any request, batch, order or device.

A prediction must depend on (model, user, item) alone. A generator that is advanced through a
request gives a pair different draws depending on where it sits in the batch, so every draw a
prediction makes is instead *keyed*: a counter-based hash (SplitMix64's finaliser, applied to
the seed, a stream number, the key's components and the draw's index) turned into a uniform in
(0, 1), and into a standard normal through the inverse normal CDF. For a pair (i, j) the
posterior draws of u use the key (i,), those of v the key (j,), and the observation noise the key
(i, j): u's draws are shared by all items of user i, as they are in the model.

Written here (not taken from a library) because NumPy's and PyTorch's generators are
sequential streams; this hash is a dozen vectorised integer operations on uint64 arrays.
"""

from __future__ import annotations

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

#: stream numbers of the draws a model makes (one per kind of draw)
USER_LATENT, ITEM_LATENT, OBSERVATION = 1, 2, 3


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 with good avalanche."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def keyed_uniform(seed: int, stream: int, keys: np.ndarray, n_draws: int) -> np.ndarray:
    """Uniforms in (0, 1), shape ``(n_keys, n_draws)``: row ``r`` depends only on (``seed``,
    ``stream``, ``keys[r]``) and column ``d`` on the draw's index. ``keys``: integers, shape
    ``(n_keys,)`` or ``(n_keys, k)`` (e.g. user and item indices; ``-1`` is a valid key)."""
    keys = np.asarray(keys, dtype=np.int64)
    if keys.ndim == 1:
        keys = keys[:, None]
    with np.errstate(over="ignore"):
        h = np.full(len(keys), _mix(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN + np.uint64(stream)),
                    dtype=np.uint64)
        for column in range(keys.shape[1]):
            h = _mix(h ^ (keys[:, column].astype(np.uint64) + _GOLDEN))
        draws = np.arange(n_draws, dtype=np.uint64)
        x = _mix(h[:, None] + (draws[None, :] + np.uint64(1)) * _GOLDEN)
    # 53 random bits, shifted by half a step: never exactly 0 or 1
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def keyed_normal(seed: int, stream: int, keys: np.ndarray, n_draws: int) -> np.ndarray:
    """Standard normal draws, shape ``(n_keys, n_draws)``, keyed like :func:`keyed_uniform`."""
    u = torch.from_numpy(keyed_uniform(seed, stream, keys, n_draws))
    return torch.special.ndtri(u).numpy()


def keyed_normal_rows(seed: int, stream: int, rows: np.ndarray, n_samples: int, dim: int) -> torch.Tensor:
    """Normal draws ``(len(rows), n_samples, dim)`` for the latent vector of each row (user or
    item index), computed once per distinct row."""
    rows = np.asarray(rows, dtype=np.int64)
    distinct, inverse = np.unique(rows, return_inverse=True)
    eps = keyed_normal(seed, stream, distinct, n_samples * dim).astype(np.float32)
    return torch.from_numpy(eps.reshape(len(distinct), n_samples, dim)[inverse.reshape(-1)])

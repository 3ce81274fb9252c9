"""Shared helpers of the speed benchmarks: the machine's matmul peak and dlf's FLOP count."""

from __future__ import annotations

import time

import numpy as np
import torch


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Best float32 GEMM rate of this machine with the current torch thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size ** 3 / best / 1e9


def dlf_epoch_flops(model, incidence, sampler) -> float:
    """Floating-point operations of one training epoch of a dlf/vdlf model (forward + backward
    ≈ 3 × forward), counted from the layer sizes and the entries the sampler actually reads.

    Forward per step: the embedding bags read 2 numbers per entry per hidden unit (value and
    indicator channels): 2·2·H per entry; per rating, removal 2·2·H per side, the encoder
    heads 2·H·code per side, the decoder 2·(width·D + D·outputs).
    """
    H, code = model.hidden, model.latent * (2 if model.variational else 1)
    width = {"hadamard": model.latent, "concat": 2 * model.latent, "both": 3 * model.latent}[model.interaction]
    entries = 0
    n_ratings = 0
    for batch in sampler:
        entries += len(batch.user_segments.columns) + len(batch.item_segments.columns)
        n_ratings += len(batch.ratings)
    per_rating = 2 * (2 * 2 * H + 2 * H * code) + 2 * (width * model.decoder_hidden + model.decoder_hidden * 2)
    forward = entries * 2 * 2 * H + n_ratings * per_rating
    return 3.0 * forward


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


__all__ = ["matmul_peak_gflops", "dlf_epoch_flops", "cpu_name", "peak_rss_mb", "np"]

"""Shared helpers of the benchmark scripts: matmul peak, dlf's FLOP count, machine facts, output."""

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

    Forward per step: the embedding bags read 2 numbers per kept entry per hidden unit (value
    and indicator channels): 2·2·H per entry; the encoder heads 2·H·code per encoded row (block
    removal) or per rating (per-rating removal, which also costs 2·2·H per side for the
    removal); the decoder 2·(width·D + D·outputs) per rating.
    """
    H, code = model.hidden, model.latent * (2 if model.variational else 1)
    width = {"hadamard": model.latent, "concat": 2 * model.latent, "both": 3 * model.latent}[model.interaction]
    entries = rows = n_ratings = 0
    for batch in sampler:
        entries += len(batch.user_segments.columns) + len(batch.item_segments.columns)
        rows += len(batch.user_segments.offsets) + len(batch.item_segments.offsets)
        n_ratings += len(batch.ratings)
    decoder = 2 * (width * model.decoder_hidden + model.decoder_hidden * 2)
    if sampler.removal == "block":
        forward = entries * 2 * 2 * H + rows * 2 * H * code + n_ratings * decoder
    else:
        forward = entries * 2 * 2 * H + n_ratings * (2 * (2 * 2 * H + 2 * H * code) + decoder)
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


ML20M = (20_000_263, 138_493, 26_744)  # ratings, users, items


def ml20m_shape(n_ratings: int) -> tuple[int, int]:
    """Users and items of a data set with ``n_ratings`` ratings in ML-20M's proportions."""
    return (max(100, round(n_ratings * ML20M[1] / ML20M[0])), max(100, round(n_ratings * ML20M[2] / ML20M[0])))


def report(out: dict, json_path: str | None) -> None:
    """Print the result as JSON and, with ``--json FILE``, write it there too."""
    import json

    print(json.dumps(out, indent=2))
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(out, handle, indent=2)


__all__ = ["ml20m_shape", "matmul_peak_gflops", "dlf_epoch_flops", "cpu_name", "peak_rss_mb", "report"]

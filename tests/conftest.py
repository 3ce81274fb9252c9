"""Shared fixtures: tiny generated data, and the real MovieLens when DLFM_DATA_DIR has it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dlfm.data.ratings import Ratings


def ml100k_dir() -> Path | None:
    root = os.environ.get("DLFM_DATA_DIR")
    if not root:
        candidate = Path(__file__).resolve().parents[2] / "shared" / "datasets"
        root = str(candidate) if candidate.is_dir() else None
    if root and (Path(root) / "ml-100k" / "u.data").is_file():
        return Path(root)
    return None


@pytest.fixture
def ml100k_root() -> Path:
    root = ml100k_dir()
    if root is None:
        pytest.skip("MovieLens 100k not found: set DLFM_DATA_DIR to a folder holding ml-100k/u.data")
    return root


@pytest.fixture
def tiny() -> Ratings:
    """4 users × 3 items, 8 ratings, string ids."""
    return Ratings.from_raw(
        ["a", "a", "b", "b", "c", "c", "d", "d"],
        ["x", "y", "x", "z", "y", "z", "x", "y"],
        [5, 3, 4, 1, 2, 5, 3, 4],
    )


@pytest.fixture(scope="session")
def lowrank() -> Ratings:
    """Generated ratings from a known rank-3 model with noise σ = 0.3."""
    from dlfm.datasets import synthetic

    return synthetic(300, 200, 12000, rank=3, noise=0.3, seed=1)


def write(tmp_path: Path, text: str, name: str = "r.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def pytest_configure(config: pytest.Config) -> None:
    """PyTorch on one thread for the whole suite: tiny networks gain nothing from a second
    thread, and on a busy two-core machine two spinning threads per process made a small fit
    over ten times slower. (Commands run in subprocesses choose their own ``--threads``.)"""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Kept for the modules that ask for it; the whole suite already runs on one thread."""
    yield

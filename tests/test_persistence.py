"""Model files: weights plus JSON only; pickles refused; corrupt files named; atomic writes."""

from __future__ import annotations

import os
import pickle

import pytest

from dlfm.errors import ModelFileError
from dlfm.models import create
from dlfm.models.base import Recommender
from dlfm.persistence import FORMAT_VERSION, atomic_write, load_payload, save_payload


class _Payload:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_pickle_payload_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.dlfm"
    with open(path, "wb") as handle:
        pickle.dump({"format": "dlfm-model", "x": _Payload(str(marker))}, handle)
    with pytest.raises(ModelFileError, match="refused"):
        Recommender.load(path)
    assert not marker.exists()


def test_truncated_and_garbage_files(tmp_path, tiny):
    path = tmp_path / "m.dlfm"
    create("baseline").fit(tiny).save(path)
    data = path.read_bytes()
    (tmp_path / "cut.dlfm").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt"):
        Recommender.load(tmp_path / "cut.dlfm")
    (tmp_path / "junk.dlfm").write_bytes(b"hello world")
    with pytest.raises(ModelFileError):
        Recommender.load(tmp_path / "junk.dlfm")
    with pytest.raises(ModelFileError, match="no such"):
        Recommender.load(tmp_path / "missing.dlfm")


def test_newer_format_version_says_so(tmp_path):
    path = tmp_path / "new.dlfm"
    save_payload(path, {"model": "mean"}, {})
    import torch

    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="newer"):
        load_payload(path)


def test_atomic_write_keeps_old_file_on_crash(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as handle:
            handle.write("half")
            raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_dlfm_predict_refuses_a_pickle_payload_and_runs_nothing(tmp_path):
    import subprocess
    import sys

    marker = tmp_path / "created-by-payload"
    path = tmp_path / "evil.dlfm"
    with open(path, "wb") as handle:
        pickle.dump({"format": "dlfm-model", "x": _Payload(str(marker))}, handle)
    proc = subprocess.run([sys.executable, "-m", "dlfm", "predict", str(path), "--user", "1", "--item", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()

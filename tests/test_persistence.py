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


def _write_raw(path, payload: dict, version: int, kind: str = "dlfm-model") -> None:
    """A model file with any archive content behind a valid header and checksum."""
    import hashlib
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    prefix = f"%DLFM {kind} v{version} sha256=".encode()
    body = buffer.getvalue()
    path.write_bytes(prefix + hashlib.sha256(prefix + body).hexdigest().encode() + b"\n" + body)


def test_newer_format_version_says_so(tmp_path):
    path = tmp_path / "new.dlfm"
    _write_raw(path, {"format": "dlfm-model", "format_version": FORMAT_VERSION + 1, "meta": "{}", "tensors": {}},
               FORMAT_VERSION + 1)
    with pytest.raises(ModelFileError, match="newer"):
        load_payload(path)


@pytest.mark.parametrize("version", [-5, 0, True, 2.0, "2", None])
def test_a_format_version_that_is_not_a_positive_integer_is_corrupt(tmp_path, version):
    path = tmp_path / "odd.dlfm"
    _write_raw(path, {"format": "dlfm-model", "format_version": version, "meta": "{}", "tensors": {}}, FORMAT_VERSION)
    with pytest.raises(ModelFileError, match="corrupt.*format version"):
        load_payload(path)


def test_metadata_nested_200000_deep_is_corrupt_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.dlfm"
    meta = "[" * 200_000 + "]" * 200_000
    _write_raw(path, {"format": "dlfm-model", "format_version": FORMAT_VERSION, "meta": meta, "tensors": {}},
               FORMAT_VERSION)
    with pytest.raises(ModelFileError, match="corrupt.*nests too deeply"):
        load_payload(path)


def test_format_version_1_files_still_load(tmp_path, tiny):
    """A file of format version 1 is the bare archive, without header or checksum."""
    import io

    import torch

    model = create("baseline").fit(tiny)
    path = tmp_path / "m.dlfm"
    model.save(path)
    body = io.BytesIO(path.read_bytes().split(b"\n", 1)[1])
    payload = torch.load(body, weights_only=True)
    payload["format_version"] = 1
    torch.save(payload, path)
    assert Recommender.load(path).predict("a", "x") == model.predict("a", "x")


def test_every_single_bit_flip_is_refused_as_corrupt(tmp_path, tiny):
    """Flip each bit of a sample of positions spread over the whole file (header, archive
    headers, metadata, weights, the zip directory): every one is refused, saying "corrupt"."""
    model = create("baseline").fit(tiny)
    path = tmp_path / "m.dlfm"
    model.save(path)
    data = path.read_bytes()
    rng = __import__("numpy").random.default_rng(0)
    positions = sorted(set(range(0, 100)) | set(rng.integers(0, len(data), 300).tolist()) | set(range(len(data) - 30, len(data))))
    for position in positions:
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(0, 8))
        (tmp_path / "f.dlfm").write_bytes(bytes(flipped))
        with pytest.raises(ModelFileError, match="corrupt"):
            Recommender.load(tmp_path / "f.dlfm")


@pytest.mark.parametrize("content, what", [
    (b'{"model": "dlf", "params": {}}', "JSON"),
    (b"user,item,rating\n1,2,3\n", "text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG"),
    (b"", "empty"),
])
def test_a_file_that_is_not_a_model_is_called_so_without_pickle_talk(tmp_path, content, what):
    path = tmp_path / "not-a-model.dlfm"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as caught:
        Recommender.load(path)
    message = str(caught.value)
    assert "not a dlfm model file" in message and what in message
    assert "pickle" not in message and "weights_only" not in message


def test_a_folder_given_as_a_model_is_called_a_directory(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory"):
        Recommender.load(tmp_path)


def test_a_refused_pickle_does_not_paste_torchs_hint(tmp_path):
    path = tmp_path / "evil.dlfm"
    with open(path, "wb") as handle:
        pickle.dump({"x": _Payload(str(tmp_path / "marker"))}, handle)
    with pytest.raises(ModelFileError) as caught:
        Recommender.load(path)
    assert "weights_only" not in str(caught.value) and "\n" not in str(caught.value)


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


# ----------------------------------------------------------------------------- outputs that are not regular files
def _device_node(path, kind, mode, major, minor):
    """A device node of our own (never the system's /dev nodes), or skip the test without root."""
    try:
        os.mknod(path, kind | mode, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    return path


def _char_device(tmp_path):
    """A null device of our own: ``mknod DIR/null c 1 3``."""
    import stat

    return _device_node(tmp_path / "null", stat.S_IFCHR, 0o666, 1, 3)


def test_writing_onto_a_character_device_leaves_it_a_device(tmp_path):
    import stat

    from dlfm.persistence import write_json

    device = _char_device(tmp_path)
    write_json(device, {"x": 1})
    with atomic_write(device) as handle:
        handle.write(b"model bytes")
    assert stat.S_ISCHR(os.stat(device).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]  # no temporary left beside it


def test_a_model_saved_onto_a_character_device_leaves_it_a_device(tmp_path, tiny):
    import stat

    device = _char_device(tmp_path)
    create("baseline").fit(tiny).save(device)
    assert stat.S_ISCHR(os.stat(device).st_mode)


def test_a_fifo_receives_the_bytes(tmp_path):
    import threading

    from dlfm.persistence import write_json

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as handle:
            received.append(handle.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    writer = threading.Thread(target=write_json, args=(fifo, {"rmse": 0.9}), daemon=True)
    writer.start()
    writer.join(10)
    reader.join(10)
    assert not writer.is_alive() and not reader.is_alive()
    assert received == [b'{\n  "rmse": 0.9\n}\n']
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_symlink_stays_a_link_and_its_target_is_replaced(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with atomic_write(link, "w") as handle:
        handle.write("new")
    assert link.is_symlink() and target.read_text() == "new"
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "made.txt")
    with atomic_write(dangling, "w") as handle:
        handle.write("made")
    assert dangling.is_symlink() and (tmp_path / "made.txt").read_text() == "made"


def test_stale_temporaries_of_a_killed_writer_are_cleaned(tmp_path):
    """A SIGKILL mid-write leaves ``.NAME.PID-XXXX.tmp``; the next write of the same target
    removes it when that process is gone, and leaves other targets' and live writers' alone."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".out.json.{pid}-abc123.tmp"
    live = tmp_path / f".out.json.{os.getppid()}-abc123.tmp"
    other = tmp_path / f".other.json.{pid}-abc123.tmp"
    for path in (stale, live, other):
        path.write_text("half")
    with atomic_write(tmp_path / "out.json", "w") as handle:
        handle.write("{}")
    assert not stale.exists() and live.exists() and other.exists()


def test_a_block_device_is_refused(tmp_path):
    import stat

    from dlfm.persistence import FileWriteError

    path = _device_node(tmp_path / "disk", stat.S_IFBLK, 0o600, 7, 200)
    with pytest.raises(FileWriteError, match="block device"):
        with atomic_write(path) as handle:
            handle.write(b"x")
    assert stat.S_ISBLK(os.stat(path).st_mode)


def test_json_is_strict_and_says_why_a_value_is_null():
    import json

    from dlfm.persistence import dumps_json

    text = dumps_json({"rmse": float("nan"), "scores": [1.0, float("inf")], "nested": {"x": float("-inf")}, "n": 3})
    doc = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert doc["rmse"] is None and doc["scores"] == [1.0, None] and doc["nested"]["x"] is None
    assert doc["null_reasons"] == {"rmse": "NaN", "scores[1]": "Infinity"}
    assert doc["nested"]["null_reasons"] == {"x": "-Infinity"}


def test_a_model_saved_to_dash_goes_to_stdout_and_loads_back(tmp_path, tiny, capsysbinary):
    model = create("baseline").fit(tiny)
    model.save("-")
    data = capsysbinary.readouterr().out
    assert data.startswith(b"%DLFM dlfm-model v2 sha256=") and not (tmp_path / "-").exists()
    (tmp_path / "m.dlfm").write_bytes(data)
    assert Recommender.load(tmp_path / "m.dlfm").predict("a", "x") == model.predict("a", "x")


def test_a_file_from_before_row_norm_and_foldin_anchor_predicts_as_it_did(tmp_path):
    """Files written before ``row_norm``, ``foldin_anchor`` and ``foldin_offset_prior`` existed lack them; they load
    with what those files meant (no row weighting; the fold-in prior around the code), not
    with today's defaults (dlf's row_norm=0.5, foldin_anchor=0.5)."""
    import numpy as np

    from dlfm.datasets import synthetic
    from tests.conformance import NEURAL_FAST

    data = synthetic(60, 40, 900, seed=3)
    model = create("dlf", **{**NEURAL_FAST, "max_epochs": 1}, row_norm=0.0, foldin_anchor=1.0,
                   foldin_offset_prior=0.0).fit(data)
    model.save(tmp_path / "m.dlfm")
    meta, tensors = load_payload(tmp_path / "m.dlfm")
    del meta["params"]["row_norm"], meta["params"]["foldin_anchor"], meta["params"]["foldin_offset_prior"]
    save_payload(tmp_path / "old.dlfm", meta, tensors)
    old = Recommender.load(tmp_path / "old.dlfm")
    assert old.row_norm == 0.0 and old.foldin_anchor == 1.0 and old.foldin_offset_prior == 0.0
    assert create("dlf").row_norm == 0.5 and create("dlf").foldin_anchor == 0.5
    assert create("dlf").foldin_offset_prior == 0.25
    assert np.array_equal(old.predict_indices(data.users[:40], data.items[:40]),
                          model.predict_indices(data.users[:40], data.items[:40]))

"""Named data sets: the data directory, verified and safe installs, and the real ML-100k."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import replace

import pytest

from dlfm import datasets
from dlfm.datasets import store
from dlfm.errors import DatasetError


@pytest.fixture
def fake_spec(monkeypatch):
    """A registry entry whose checksum is that of a small archive we build."""
    def make(members: dict[str, bytes], symlink: str | None = None):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
            if symlink:
                info = zipfile.ZipInfo(symlink)
                info.external_attr = (0o120777 << 16)
                zf.writestr(info, "/etc/passwd")
        data = buf.getvalue()
        spec = replace(datasets.DATASETS["ml-100k"], md5=hashlib.md5(data).hexdigest())
        monkeypatch.setitem(datasets.DATASETS, "ml-100k", spec)
        return data
    return make


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("DLFM_DATA_DIR", str(tmp_path / "env"))
    assert store.data_dir() == tmp_path / "env"
    assert store.data_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("DLFM_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert store.data_dir() == tmp_path / "cache" / "dlfm"


def test_install_from_archive(tmp_path, fake_spec):
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(fake_spec({"ml-100k/u.data": b"1\t1\t5\t0\n2\t1\t3\t0\n", "ml-100k/README": b"hi"}))
    root = tmp_path / "data"
    datasets.install("ml-100k", directory=root, archive=archive)
    assert (root / "ml-100k" / "u.data").is_file()
    assert len(datasets.load("ml-100k", data_dir=root)) == 2


def test_checksum_mismatch_is_refused(tmp_path, fake_spec):
    fake_spec({"ml-100k/u.data": b"1\t1\t5\t0\n"})
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", b"2\t2\t2\t0\n")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        datasets.install("ml-100k", directory=tmp_path / "data", archive=archive)
    assert not (tmp_path / "data" / "ml-100k").exists()


@pytest.mark.parametrize("evil", ["ml-100k/../../escape.txt", "/tmp/abs.txt", "ml-100k/..\\x.txt"])
def test_path_traversal_is_refused(tmp_path, fake_spec, evil):
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(fake_spec({"ml-100k/u.data": b"1\t1\t5\t0\n", evil: b"bad"}))
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="refusing"):
        datasets.install("ml-100k", directory=root, archive=archive)
    assert not (tmp_path / "escape.txt").exists()
    assert not (root / "ml-100k").exists()


def test_links_are_refused(tmp_path, fake_spec):
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(fake_spec({"ml-100k/u.data": b"1\t1\t5\t0\n"}, symlink="ml-100k/link"))
    with pytest.raises(DatasetError, match="links"):
        datasets.install("ml-100k", directory=tmp_path / "data", archive=archive)


def test_installed_folders_get_the_usual_mode_not_0700(tmp_path, fake_spec):
    import os
    import stat

    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(fake_spec({"ml-100k/u.data": b"1\t1\t5\t0\n"}))
    old = os.umask(0o022)
    try:
        datasets.install("ml-100k", directory=tmp_path / "data", archive=archive)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "ml-100k").st_mode) == 0o755


def test_members_whose_total_size_is_too_large_are_refused(tmp_path, fake_spec, monkeypatch):
    monkeypatch.setattr(store, "MAX_EXTRACTED_BYTES", 1000)
    archive = tmp_path / "ml-100k.zip"
    archive.write_bytes(fake_spec({"ml-100k/u.data": b"1\t1\t5\t0\n" * 100, "ml-100k/big": b"0" * 600}))
    with pytest.raises(DatasetError, match="GiB"):
        datasets.install("ml-100k", directory=tmp_path / "data", archive=archive)
    assert not (tmp_path / "data" / "ml-100k").exists()


def test_offline_message_says_what_to_do(tmp_path, monkeypatch):
    def fail(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(store.urllib.request, "urlopen", fail)
    with pytest.raises(DatasetError) as err:
        datasets.load("ml-1m", data_dir=tmp_path)
    text = str(err.value)
    assert "dlfm datasets install ml-1m --archive" in text and "DLFM_DATA_DIR" in text


def test_unknown_name():
    with pytest.raises(DatasetError, match="known"):
        datasets.spec("ml-7")


def test_real_ml100k(ml100k_root):
    r = datasets.load("ml-100k", data_dir=ml100k_root)
    assert (r.n_users, r.n_items, len(r)) == (943, 1682, 100000)
    assert r.scale == (1.0, 5.0)

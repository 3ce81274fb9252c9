"""The data cache under stress: concurrent installs of one data set from several processes,
downloads that fail their checksum or break off, installs that fail half-way, and archives
with members that would leave the data directory (through the command line).

The processes are started with ``spawn`` and get the data set's spec as an argument (a
monkeypatched registry does not cross process boundaries): :func:`dlfm.datasets.store.install`
takes ``spec=``; downloads go to a ``file://`` URL, which urllib opens like any other.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from dlfm import datasets
from dlfm.cli.main import main
from dlfm.datasets import store
from dlfm.datasets.registry import DatasetSpec
from dlfm.errors import DatasetError

RATINGS = b"".join(b"%d\t%d\t%d\t%d\n" % (u, i, 1 + (u * i) % 5, 880000000 + u) for u in range(1, 60) for i in range(1, 40))
MEMBERS = {
    "ml-100k/": None,
    "ml-100k/u.data": RATINGS,
    "ml-100k/u.item": bytes(range(256)) * 4000,  # 1 MB: extraction takes a moment
    "ml-100k/sub/": None,
    "ml-100k/sub/notes.txt": "ünïcode\n".encode(),
    "ml-100k/README": b"a test archive\n",
}


def build_archive(path: Path, members: dict[str, bytes | None] = MEMBERS, *, symlink: str | None = None) -> DatasetSpec:
    """Write a zip with these members to ``path``; the ml-100k spec with its MD5 and URL."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            if data is None:
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return replace(datasets.DATASETS["ml-100k"], md5=hashlib.md5(buf.getvalue()).hexdigest(), url=path.as_uri())


def folder_digest(folder: Path) -> dict[str, str]:
    """Relative path -> MD5 of every file below ``folder`` (dlfm's own marker left out)."""
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".dlfm-archive-md5"}


EXPECTED = {name[len("ml-100k/"):]: hashlib.md5(data).hexdigest() for name, data in MEMBERS.items() if data is not None}


def _install_worker(directory: str, archive: str | None, spec: DatasetSpec, force: bool, barrier, results) -> None:
    """Run in a spawned process: wait for the others, install, and report what it then sees."""
    try:
        barrier.wait(timeout=60)
        folder = store.install("ml-100k", directory=directory, archive=archive, spec=spec, force=force, quiet=True)
        results.put(("ok", str(folder), None if force else folder_digest(Path(folder))))
    except BaseException as exc:  # noqa: BLE001 - report anything to the parent
        results.put(("error", repr(exc), None))


def run_concurrently(n: int, directory: Path, archive: Path | None, spec: DatasetSpec, *, force: bool = False) -> list:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [ctx.Process(target=_install_worker,
                         args=(str(directory), None if archive is None else str(archive), spec, force, barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return out


def assert_clean_install(root: Path) -> None:
    """The data directory holds the complete set, its lock file, and nothing half-done."""
    assert folder_digest(root / "ml-100k") == EXPECTED
    assert sorted(p.name for p in root.iterdir()) == [".ml-100k.lock", "ml-100k"]
    assert len(datasets.load("ml-100k", data_dir=root, download=False)) == RATINGS.count(b"\n")


# ----------------------------------------------------------------------------- concurrency
def test_processes_installing_one_archive_at_once_all_succeed(tmp_path):
    spec = build_archive(tmp_path / "dl" / "ml-100k.zip")
    root = tmp_path / "data"
    results = run_concurrently(3, root, tmp_path / "dl" / "ml-100k.zip", spec)
    assert [r[0] for r in results] == ["ok"] * 3, results
    for _, folder, seen in results:
        assert Path(folder) == root / "ml-100k" and seen == EXPECTED  # complete when install returned
    assert_clean_install(root)


def test_processes_downloading_one_set_at_once_all_succeed(tmp_path):
    spec = build_archive(tmp_path / "mirror" / "ml-100k.zip")  # served through a file:// URL
    root = tmp_path / "data"
    results = run_concurrently(2, root, None, spec)
    assert [r[0] for r in results] == ["ok"] * 2, results
    assert all(seen == EXPECTED for _, _, seen in results)
    assert_clean_install(root)


def test_forced_reinstalls_at_once_leave_one_complete_folder(tmp_path):
    spec = build_archive(tmp_path / "dl" / "ml-100k.zip")
    root = tmp_path / "data"
    results = run_concurrently(2, root, tmp_path / "dl" / "ml-100k.zip", spec, force=True)
    assert [r[0] for r in results] == ["ok"] * 2, results
    assert_clean_install(root)


def test_an_identical_archive_is_not_extracted_twice(tmp_path, monkeypatch):
    spec = build_archive(tmp_path / "ml-100k.zip")
    root = tmp_path / "data"
    store.install("ml-100k", directory=root, archive=tmp_path / "ml-100k.zip", spec=spec)
    calls = []
    monkeypatch.setattr(store, "extract_archive", lambda *a, **k: calls.append(a))
    store.install("ml-100k", directory=root, archive=tmp_path / "ml-100k.zip", spec=spec)
    assert calls == []
    store.install("ml-100k", directory=root, archive=tmp_path / "ml-100k.zip", spec=spec, force=True)
    assert len(calls) == 1


def test_a_failure_half_way_keeps_the_previous_install(tmp_path, monkeypatch):
    spec = build_archive(tmp_path / "ml-100k.zip")
    root = tmp_path / "data"
    store.install("ml-100k", directory=root, archive=tmp_path / "ml-100k.zip", spec=spec)
    copies = []

    def copy_then_fail(src, dst, *args):
        copies.append(dst)
        if len(copies) == 2:
            raise OSError(28, "No space left on device")
        return real_copy(src, dst, *args)

    real_copy = store.shutil.copyfileobj
    monkeypatch.setattr(store.shutil, "copyfileobj", copy_then_fail)
    with pytest.raises(DatasetError, match="No space left on device"):
        store.install("ml-100k", directory=root, archive=tmp_path / "ml-100k.zip", spec=spec, force=True)
    monkeypatch.undo()
    assert_clean_install(root)


def test_leftovers_of_a_killed_install_are_removed(tmp_path):
    spec = build_archive(tmp_path / "ml-100k.zip")
    root = tmp_path / "data"
    (root / ".ml-100k.staging-dead" / "half").mkdir(parents=True)
    (root / ".ml-100k.download-dead.zip").write_bytes(b"partial")
    (root / "ml-100k.zip").write_bytes(b"the user's own file")  # not dlfm's: left alone
    store.install("ml-100k", directory=root, spec=spec)
    assert not (root / ".ml-100k.staging-dead").exists() and not (root / ".ml-100k.download-dead.zip").exists()
    assert (root / "ml-100k.zip").read_bytes() == b"the user's own file"
    (root / "ml-100k.zip").unlink()
    assert_clean_install(root)


# ----------------------------------------------------------------------------- downloads
class FakeResponse:
    """What urlopen returns, reduced to what a download reads: ``.read`` and ``.headers``."""

    def __init__(self, data: bytes, *, length: str | None = None, fail_after: int | None = None):
        self._stream = io.BytesIO(data)
        self.headers = {"Content-Length": str(len(data)) if length is None else length}
        self._fail_after = fail_after

    def read(self, size: int = -1) -> bytes:
        if self._fail_after is not None and self._stream.tell() >= self._fail_after:
            raise ConnectionResetError(104, "Connection reset by peer")
        return self._stream.read(size if self._fail_after is None else min(size, 1000))


def serve(monkeypatch, response: FakeResponse) -> list[str]:
    urls: list[str] = []

    def urlopen(url, timeout=None):
        urls.append(url)
        return response

    monkeypatch.setattr(store.urllib.request, "urlopen", urlopen)
    return urls


def test_a_download_with_the_wrong_checksum_is_deleted_and_says_so(tmp_path, monkeypatch):
    spec = build_archive(tmp_path / "official.zip")
    other = tmp_path / "other.zip"
    build_archive(other, {"ml-100k/u.data": b"1\t1\t1\t1\n"})
    urls = serve(monkeypatch, FakeResponse(other.read_bytes()))
    root = tmp_path / "data"
    with pytest.raises(DatasetError) as err:
        store.install("ml-100k", directory=root, spec=spec, quiet=True)
    message = str(err.value)
    assert urls == [spec.url]
    assert "checksum mismatch" in message and spec.url in message and "deleted" in message
    assert hashlib.md5(other.read_bytes()).hexdigest() in message
    assert sorted(p.name for p in root.iterdir()) == [".ml-100k.lock"]  # the download is gone


def test_a_download_that_breaks_off_leaves_nothing(tmp_path, monkeypatch):
    spec = build_archive(tmp_path / "official.zip")
    serve(monkeypatch, FakeResponse((tmp_path / "official.zip").read_bytes(), fail_after=5000))
    root = tmp_path / "data"
    with pytest.raises(DatasetError, match="broke off"):
        store.install("ml-100k", directory=root, spec=spec, quiet=True)
    assert sorted(p.name for p in root.iterdir()) == [".ml-100k.lock"]


def test_a_good_download_installs_even_with_a_bad_length_header(tmp_path, monkeypatch):
    spec = build_archive(tmp_path / "official.zip")
    serve(monkeypatch, FakeResponse((tmp_path / "official.zip").read_bytes(), length="lots"))
    root = tmp_path / "data"
    assert store.install("ml-100k", directory=root, spec=spec, quiet=True) == root / "ml-100k"
    assert_clean_install(root)


# ----------------------------------------------------------------------------- the CLI
def snapshot(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("evil", ["ml-100k/../../escape.txt", "ml-100k/../escape.txt", "../escape.txt",
                                  "ml-100k/sub/../../../escape.txt", "/tmp/dlfm-escape.txt", "ml-100k/..\\escape.txt",
                                  "symlink"])
def test_cli_install_refuses_members_leaving_the_data_dir(tmp_path, monkeypatch, capsys, evil):
    members = {**MEMBERS, evil: b"escaped"} if evil != "symlink" else MEMBERS
    spec = build_archive(tmp_path / "in" / "ml-100k.zip", members, symlink="ml-100k/link" if evil == "symlink" else None)
    monkeypatch.setitem(datasets.DATASETS, "ml-100k", spec)  # the checksum matches: the members are what is refused
    root = tmp_path / "a" / "data"
    (tmp_path / "a").mkdir()
    before = snapshot(tmp_path)
    code = main(["datasets", "install", "ml-100k", "--archive", str(tmp_path / "in" / "ml-100k.zip"),
                 "--data-dir", str(root)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("dlfm: error: refusing archive member") and "Traceback" not in err
    new = snapshot(tmp_path) - before
    assert new <= {root, root / ".ml-100k.lock"}, sorted(map(str, new))  # nothing else written, anywhere
    assert not Path("/tmp/dlfm-escape.txt").exists()


def test_cli_install_of_a_good_archive(tmp_path, monkeypatch, capsys):
    spec = build_archive(tmp_path / "ml-100k.zip")
    monkeypatch.setitem(datasets.DATASETS, "ml-100k", spec)
    root = tmp_path / "data"
    code = main(["datasets", "install", "ml-100k", "--archive", str(tmp_path / "ml-100k.zip"), "--data-dir", str(root)])
    assert code == 0 and "installed ml-100k" in capsys.readouterr().out
    assert_clean_install(root)

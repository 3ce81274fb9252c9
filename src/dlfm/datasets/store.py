"""The local data directory: finding, downloading, verifying and safely installing data sets.

The data directory is, in order: the ``data_dir`` argument (CLI ``--data-dir``), the
environment variable ``DLFM_DATA_DIR``, or ``~/.cache/dlfm`` (``$XDG_CACHE_HOME/dlfm``).
A data set named ``NAME`` lives in ``DIR/NAME`` as the unzipped GroupLens files
(``DIR/ml-100k/u.data``, ...).

Installing is safe by construction: the archive's checksum is checked before it is opened
(a mismatch deletes it), every archive member must stay inside the data set's folder (no
absolute paths, no ``..``, no links), extraction goes to a temporary folder that is renamed
into place only when complete, and a lock file keeps two processes from installing the same
set at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from filelock import FileLock

from dlfm.datasets.registry import DATASETS, DatasetSpec
from dlfm.errors import DatasetError

ENV_VAR = "DLFM_DATA_DIR"


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data directory in force (argument, ``$DLFM_DATA_DIR``, or the user cache)."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "dlfm"


def spec(name: str) -> DatasetSpec:
    """The spec of a named data set, or a :class:`DatasetError` listing the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None


def dataset_path(name: str, directory: str | os.PathLike[str] | None = None) -> Path:
    return data_dir(directory) / spec(name).name


def is_installed(name: str, directory: str | os.PathLike[str] | None = None) -> bool:
    s = spec(name)
    return (data_dir(directory) / s.name / s.ratings_file).is_file()


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _offline_help(s: DatasetSpec, directory: Path, reason: str) -> str:
    return (
        f"cannot download {s.name} from {s.url} ({reason}).\n"
        f"Do one of these:\n"
        f"  - download {s.url} on a machine with internet access, then run\n"
        f"      dlfm datasets install {s.name} --archive PATH/TO/{Path(s.url).name}\n"
        f"  - or unzip it yourself so that {directory / s.name / s.ratings_file} exists\n"
        f"  - or point dlfm at a folder that holds {s.name}/: --data-dir DIR or {ENV_VAR}=DIR"
    )


def _expected_md5(s: DatasetSpec) -> str:
    if s.md5:
        return s.md5
    try:
        with urllib.request.urlopen(s.url + ".md5", timeout=30) as response:
            text = response.read(4096).decode("ascii", "replace")
    except (urllib.error.URLError, OSError) as exc:
        raise DatasetError(f"cannot fetch the published checksum {s.url}.md5: {exc}") from None
    for token in text.replace("=", " ").split():
        if len(token) == 32 and all(c in "0123456789abcdef" for c in token.lower()):
            return token.lower()
    raise DatasetError(f"{s.url}.md5 holds no MD5 checksum")


def verify_archive(archive: Path, s: DatasetSpec) -> None:
    """Check the archive's MD5 against the published one; on mismatch the file is deleted
    when it is dlfm's own download, and the error says so."""
    expected = _expected_md5(s)
    actual = md5_of(archive)
    if actual != expected:
        raise DatasetError(
            f"checksum mismatch for {archive}: MD5 {actual}, expected {expected} for {s.name}; "
            "the file is corrupt or not the official archive"
        )


def _check_member(info: zipfile.ZipInfo, s: DatasetSpec) -> PurePosixPath | None:
    """The member's path below the archive root, ``None`` for the root itself; raises on
    anything that could land outside the target folder."""
    name = info.filename
    path = PurePosixPath(name)
    mode = (info.external_attr >> 16) & 0o170000
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\\" in name:
        raise DatasetError(f"refusing archive member {name!r}: absolute or non-POSIX path")
    if ".." in path.parts:
        raise DatasetError(f"refusing archive member {name!r}: '..' would leave the data folder")
    if mode == stat.S_IFLNK:
        raise DatasetError(f"refusing archive member {name!r}: links are not allowed")
    if mode not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise DatasetError(f"refusing archive member {name!r}: not a regular file or folder")
    parts = path.parts
    if not parts or parts[0] != s.archive_root:
        raise DatasetError(f"refusing archive member {name!r}: not inside {s.archive_root}/")
    rest = PurePosixPath(*parts[1:]) if len(parts) > 1 else None
    return rest


def extract_archive(archive: Path, s: DatasetSpec, directory: Path) -> Path:
    """Safely extract a verified archive into ``directory/NAME`` (atomic rename)."""
    target = directory / s.name
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{archive} is not a readable zip archive: {exc}") from None
    with zf:
        members = [(info, _check_member(info, s)) for info in zf.infolist()]
        staging = Path(tempfile.mkdtemp(prefix=f".{s.name}-", dir=directory))
        try:
            for info, rest in members:
                if rest is None:
                    continue
                out = staging / rest
                if not out.resolve().is_relative_to(staging.resolve()):
                    raise DatasetError(f"refusing archive member {info.filename!r}: leaves the data folder")
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            if not (staging / s.ratings_file).is_file():
                raise DatasetError(f"{archive} has no {s.archive_root}/{s.ratings_file}: not the {s.name} archive")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return target


def download(s: DatasetSpec, directory: Path, *, quiet: bool = False) -> Path:
    """Download the archive to ``directory`` (via a temporary name) and verify it."""
    final = directory / Path(s.url).name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}-", dir=directory)
    tmp = Path(tmp_name)
    try:
        try:
            response = urllib.request.urlopen(s.url, timeout=60)
        except (urllib.error.URLError, OSError) as exc:
            raise DatasetError(_offline_help(s, directory, str(getattr(exc, "reason", exc)))) from None
        total = int(response.headers.get("Content-Length") or 0) or None
        from tqdm import tqdm

        with response, os.fdopen(fd, "wb") as out, tqdm(
            total=total, unit="B", unit_scale=True, desc=f"downloading {s.name}", disable=quiet
        ) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                bar.update(len(block))
        try:
            verify_archive(tmp, s)
        except DatasetError as exc:
            raise DatasetError(f"{exc}; the download was deleted") from None
        os.replace(tmp, final)
        return final
    finally:
        if tmp.exists():
            tmp.unlink()


def install(
    name: str,
    *,
    directory: str | os.PathLike[str] | None = None,
    archive: str | os.PathLike[str] | None = None,
    force: bool = False,
    quiet: bool = False,
) -> Path:
    """Make ``DIR/NAME`` hold the data set: from ``archive`` if given, else downloaded.

    Both paths verify the checksum and extract safely. Returns the data set's folder.
    """
    s = spec(name)
    root = data_dir(directory)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{s.name}.lock")):
        if is_installed(name, root) and not force and archive is None:
            return root / s.name
        if archive is not None:
            path = Path(archive)
            if not path.is_file():
                raise DatasetError(f"archive {path} does not exist")
            verify_archive(path, s)
            return extract_archive(path, s, root)
        path = download(s, root, quiet=quiet)
        try:
            return extract_archive(path, s, root)
        finally:
            path.unlink(missing_ok=True)


def require(name: str, directory: str | os.PathLike[str] | None = None, *, download_missing: bool = True,
            quiet: bool = False) -> Path:
    """The folder of an installed data set, installing it first when missing."""
    s = spec(name)
    root = data_dir(directory)
    if is_installed(name, root):
        return root / s.name
    if not download_missing:
        raise DatasetError(_offline_help(s, root, "downloads are off"))
    return install(name, directory=root, quiet=quiet)

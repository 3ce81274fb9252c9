"""The local data directory: finding, downloading, verifying and safely installing data sets.

The data directory is, in order: the ``data_dir`` argument (CLI ``--data-dir``), the
environment variable ``DLFM_DATA_DIR``, or ``~/.cache/dlfm`` (``$XDG_CACHE_HOME/dlfm``).
A data set named ``NAME`` lives in ``DIR/NAME`` as the unzipped GroupLens files
(``DIR/ml-100k/u.data``, ...).

Installing is safe by construction: the archive's checksum is checked before it is opened
(a mismatch deletes a download), every archive member must stay inside the data set's folder
(no absolute paths, no ``..``, no links), extraction goes to a temporary folder that is renamed
into place only when complete, and a lock file (``DIR/.NAME.lock``) makes concurrent installs
of the same set, from threads or processes, take turns: each one finds either no folder or a
complete one. Temporary files and folders are named ``DIR/.NAME.*``; ones left by a killed
process are removed by the next install of that set.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

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
    except (KeyError, TypeError):
        raise DatasetError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None


_named_spec = spec  # for functions whose ``spec`` argument hides this one


def dataset_path(name: str, directory: str | os.PathLike[str] | None = None) -> Path:
    return data_dir(directory) / spec(name).name


def is_installed(name: str, directory: str | os.PathLike[str] | None = None) -> bool:
    return _installed(spec(name), data_dir(directory))


def _installed(s: DatasetSpec, root: Path) -> bool:
    return (root / s.name / s.ratings_file).is_file()


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


def _close(response: Any) -> None:
    close = getattr(response, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001 - closing a finished download must not mask its result
            pass


def _expected_md5(s: DatasetSpec) -> str:
    if s.md5:
        return s.md5
    try:
        response = urllib.request.urlopen(s.url + ".md5", timeout=30)
        try:
            text = response.read(4096).decode("ascii", "replace")
        finally:
            _close(response)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise DatasetError(f"cannot fetch the published checksum {s.url}.md5: {exc}") from None
    for token in text.replace("=", " ").split():
        if len(token) == 32 and all(c in "0123456789abcdef" for c in token.lower()):
            return token.lower()
    raise DatasetError(f"{s.url}.md5 holds no MD5 checksum")


def verify_archive(archive: Path, s: DatasetSpec, *, label: str | None = None) -> str:
    """Check the archive's MD5 against the published one; returns it. ``label`` names the
    archive in the message (default: its path). Deleting a bad download is the caller's job
    (:func:`download` does it, and says so)."""
    expected = _expected_md5(s)
    try:
        actual = md5_of(archive)
    except OSError as exc:
        raise DatasetError(f"cannot read {label or archive}: {exc.strerror or exc}") from None
    if actual != expected:
        raise DatasetError(
            f"checksum mismatch for {label or archive}: MD5 {actual}, expected {expected} for {s.name}; "
            "the file is corrupt or not the official archive"
        )
    return actual


def _check_member(info: zipfile.ZipInfo, s: DatasetSpec) -> PurePosixPath | None:
    """The member's path below the archive root, ``None`` for the root itself; raises on
    anything that could land outside the target folder."""
    name = info.filename
    path = PurePosixPath(name)
    mode = (info.external_attr >> 16) & 0o170000
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\\" in name or "\x00" in name:
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


_MARKER = ".dlfm-archive-md5"
#: the most bytes an archive may extract to, all members together (ml-32m's is about 1 GB);
#: reading a member never yields more than the size its entry declares
MAX_EXTRACTED_BYTES = 8 * 2**30


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def extract_archive(archive: Path, s: DatasetSpec, directory: Path, *, md5: str | None = None) -> Path:
    """Safely extract a verified archive into ``directory/NAME``.

    Every member is checked before anything is written; the files go to a temporary folder
    beside the target that replaces it only when complete, so ``directory/NAME`` is at every
    moment absent, the previous complete folder, or the new complete one. Call it under the
    set's lock (as :func:`install` does) when other processes may install the same set.
    """
    target = directory / s.name
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise DatasetError(f"{archive} is not a readable zip archive: {exc}") from None
    with zf:
        try:
            infos = zf.infolist()
        except (zipfile.BadZipFile, ValueError) as exc:
            raise DatasetError(f"{archive} is not a readable zip archive: {exc}") from None
        members = [(info, _check_member(info, s)) for info in infos]
        total = sum(info.file_size for info in infos)
        if total > MAX_EXTRACTED_BYTES:
            raise DatasetError(f"refusing {archive}: its members would extract to {total / 2**30:.1f} GiB, more than "
                               f"the {MAX_EXTRACTED_BYTES / 2**30:.0f} GiB any known data set needs")
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{s.name}.staging-", dir=directory))
            os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700: the installed folder gets the usual mode
        except OSError as exc:
            raise DatasetError(f"cannot write in the data directory {directory}: {exc.strerror or exc}") from None
        try:
            for info, rest in members:
                if rest is None:
                    continue
                out = staging / rest
                if not out.resolve().is_relative_to(staging.resolve()):
                    raise DatasetError(f"refusing archive member {info.filename!r}: leaves the data folder")
                try:
                    if info.is_dir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                    raise DatasetError(f"{archive}: cannot extract {info.filename!r}: {exc}") from None
                except OSError as exc:
                    raise DatasetError(
                        f"cannot extract {info.filename!r} of {archive} into {directory}: {exc.strerror or exc}"
                    ) from None
            if not (staging / s.ratings_file).is_file():
                raise DatasetError(f"{archive} has no {s.archive_root}/{s.ratings_file}: not the {s.name} archive")
            if md5:
                (staging / _MARKER).write_text(md5 + "\n")
            _swap_into_place(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return target


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; a previous ``target`` is moved aside first and deleted
    after (or put back when the rename fails)."""
    aside = None
    try:
        if os.path.lexists(target):
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, aside / target.name)
        try:
            os.replace(staging, target)
        except OSError:
            if aside is not None:
                os.replace(aside / target.name, target)
            raise
    except OSError as exc:
        raise DatasetError(f"cannot move the extracted {target.name} into place at {target}: {exc.strerror or exc}") from None
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def download(s: DatasetSpec, directory: Path, *, quiet: bool = False) -> tuple[Path, str]:
    """Download the archive into a temporary file in ``directory`` and verify it; returns
    that file (the caller deletes it after use) and its MD5. A download whose checksum does
    not match is deleted, and the error says so. Never touches any other file in
    ``directory``."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{s.name}.download-", suffix=".zip", dir=directory)
    except OSError as exc:
        raise DatasetError(f"cannot write in the data directory {directory}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    keep = False
    try:
        out = os.fdopen(fd, "wb")
        with out:
            try:
                response = urllib.request.urlopen(s.url, timeout=60)
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
                raise DatasetError(_offline_help(s, directory, str(getattr(exc, "reason", exc)))) from None
            try:
                try:
                    total = int(response.headers.get("Content-Length") or 0) or None
                except (AttributeError, TypeError, ValueError):
                    total = None
                from tqdm import tqdm

                with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {s.name}", disable=quiet) as bar:
                    while block := response.read(1 << 20):
                        out.write(block)
                        bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, OSError) and exc.filename is not None:
                    raise DatasetError(f"cannot write the download to {directory}: {exc.strerror or exc}") from None
                raise DatasetError(_offline_help(s, directory, f"the download broke off: {exc}")) from None
            finally:
                _close(response)
        try:
            md5 = verify_archive(tmp, s, label=f"the download of {s.url}")
        except DatasetError as exc:
            raise DatasetError(f"{exc}; the downloaded file was deleted") from None
        keep = True
        return tmp, md5
    finally:
        if not keep:
            tmp.unlink(missing_ok=True)


def _clean_leftovers(s: DatasetSpec, root: Path) -> None:
    """Remove temporary files and folders a killed install of this set left (call under the lock)."""
    for pattern in (f".{s.name}.staging-*", f".{s.name}.old-*", f".{s.name}.download-*"):
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _installed_md5(s: DatasetSpec, root: Path) -> str | None:
    try:
        return (root / s.name / _MARKER).read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def install(
    name: str,
    *,
    directory: str | os.PathLike[str] | None = None,
    archive: str | os.PathLike[str] | None = None,
    force: bool = False,
    quiet: bool = False,
    spec: DatasetSpec | None = None,
) -> Path:
    """Make ``DIR/NAME`` hold the data set: from ``archive`` if given, else downloaded.

    Both paths verify the checksum and extract safely; concurrent installs of one set (any
    number of processes) take turns under a lock file and all succeed. An archive identical
    to the one already installed is not extracted again (unless ``force``). ``spec`` describes
    a data set that is not in the registry (its ``name`` must be ``name``). Returns the data
    set's folder.
    """
    s = spec if spec is not None else _named_spec(name)
    if s.name != name:
        raise DatasetError(f"the spec describes {s.name!r}, not {name!r}")
    root = data_dir(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(root / f".{s.name}.lock"))
        lock.acquire()
    except OSError as exc:
        raise DatasetError(f"cannot use the data directory {root}: {exc.strerror or exc}") from None
    try:
        _clean_leftovers(s, root)
        if archive is not None:
            path = Path(archive)
            if not path.is_file():
                raise DatasetError(f"archive {path} does not exist" if not path.exists() else f"archive {path} is not a file")
            md5 = verify_archive(path, s)
            if not force and _installed(s, root) and _installed_md5(s, root) == md5:
                return root / s.name
            return extract_archive(path, s, root, md5=md5)
        if _installed(s, root) and not force:
            return root / s.name
        path, md5 = download(s, root, quiet=quiet)
        try:
            return extract_archive(path, s, root, md5=md5)
        finally:
            path.unlink(missing_ok=True)
    finally:
        lock.release()


def require(name: str, directory: str | os.PathLike[str] | None = None, *, download_missing: bool = True,
            quiet: bool = False) -> Path:
    """The folder of an installed data set, installing it first when missing."""
    s = _named_spec(name)
    root = data_dir(directory)
    if _installed(s, root):
        return root / s.name
    if not download_missing:
        raise DatasetError(_offline_help(s, root, "downloads are off"))
    return install(name, directory=root, quiet=quiet)

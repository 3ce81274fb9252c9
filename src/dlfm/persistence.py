"""Safe, atomic files: model files that hold only weights and JSON, written all-or-nothing.

A model file (format version 2) is one header line and a ``torch.save`` archive::

    %DLFM dlfm-model v2 sha256=<64 hex digits>\n<archive>

The SHA-256 covers the header up to ``sha256=`` and every byte of the archive, so a flipped
bit anywhere is refused as a corrupt file before anything is read. The archive holds a plain
dictionary ``{"format": "dlfm-model", "format_version": 2, "meta": JSON text, "tensors":
{name: tensor}}`` and is read back with ``torch.load(weights_only=True)``, whose restricted
unpickler refuses any other object: a file carrying a pickle payload is rejected before
anything in it runs. Files of format version 1 (the bare archive, no hash) still load.

Every file dlfm writes goes through :func:`atomic_write`: the bytes go to a temporary file in
the same folder, are flushed and fsynced, and the temporary file is renamed over the target,
so a crash mid-write leaves the previous file intact. What is not a regular file is never
replaced: character devices (``/dev/null``), FIFOs, sockets and the process's own standard
output are written through, a symlink's target is replaced (the link stays), and a block
device is refused.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import io
import json
import math
import os
import pickle
import re
import stat
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from dlfm.errors import DlfmError, ModelFileError

FORMAT = "dlfm-model"
FORMAT_VERSION = 2
#: the first bytes of every file of format version 2 or later
MAGIC = b"%DLFM "
_HEADER = re.compile(rb"%DLFM ([a-z-]{1,40}) v([0-9]{1,6}) sha256=([0-9a-f]{64})\n")
#: the longest header line :data:`_HEADER` can match
_HEADER_MAX = len(MAGIC) + 40 + 8 + 8 + 64 + 1


class FileWriteError(DlfmError, OSError):
    """A file dlfm was asked to write cannot be written (a folder in the way, no permission,
    a full disk). Both a :class:`~dlfm.errors.DlfmError` (the CLI prints it as one clear line)
    and an :class:`OSError` (what Python callers expect)."""

    def __str__(self) -> str:
        return str(self.strerror)


def _write_error(target: Path, exc: OSError) -> FileWriteError:
    reason = exc.strerror or str(exc)
    return FileWriteError(exc.errno, f"cannot write {target}: {reason}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_standard_stream(info: os.stat_result) -> bool:
    """Whether ``info`` is the file this process's stdout or stderr writes to."""
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            own = os.fstat(fd)
            if (own.st_dev, own.st_ino) == (info.st_dev, info.st_ino):
                return True
    return False


def _writes_through(target: Path) -> bool:
    """Whether ``target`` is written in place rather than replaced: a character device, a
    FIFO, a socket, or (through ``/dev/stdout`` and the like) this process's own output.

    Raises:
        FileWriteError: ``target`` is a block device (dlfm never writes one).
    """
    try:
        info = os.stat(target)  # follows symlinks
    except (OSError, ValueError):
        return False  # missing (or unreadable): the ordinary path creates it or says why not
    if stat.S_ISBLK(info.st_mode):
        raise FileWriteError(errno.EPERM, f"cannot write {target}: it is a block device; dlfm does not write to devices")
    if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode):
        return True
    return stat.S_ISREG(info.st_mode) and _is_standard_stream(info)


def _stale_temporaries(target: Path) -> list[Path]:
    """Temporary files of ``target`` left by writers that no longer run (killed mid-write):
    their names carry the writer's process id, ``.NAME.PID-XXXXXXXX.tmp``."""
    stale = []
    pattern = f".{glob.escape(target.name)}.*-*.tmp"
    for candidate in target.parent.glob(pattern):
        pid_text = candidate.name[len(target.name) + 2:].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            stale.append(candidate)
        except (PermissionError, OverflowError, OSError):
            continue  # alive under another user, or not a process id at all
    return stale


@contextlib.contextmanager
def _write_through(target: Path, mode: str) -> Iterator[Any]:
    """Write ``target`` in place (a device, a FIFO, a standard stream): no temporary file."""
    for stream in (sys.stdout, sys.stderr):  # what was printed before stays before
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise _write_error(target, exc) from None
    try:
        with os.fdopen(fd, mode.replace("w", "a"), encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
    except FileWriteError:
        raise
    except OSError as exc:
        raise _write_error(target, exc) from None


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    What is not a regular file is never replaced: ``-`` (standard output), a character
    device, FIFO, socket, or this process's own stdout/stderr (``/dev/stdout``) is written in place; for a symlink the file
    it points to is replaced (the link stays a link). Temporary files of ``path`` left by a
    killed writer are removed.

    Raises:
        FileWriteError: the file cannot be written (the previous file, if any, is intact), or
            ``path`` is a folder or a block device.
    """
    if str(path) == "-":  # standard output, as a stream
        stream = sys.stdout.buffer if "b" in mode else sys.stdout
        try:
            yield stream
            stream.flush()
        except OSError as exc:
            raise _write_error(Path("<stdout>"), exc) from None
        return
    target = Path(path)
    if _writes_through(target):
        with _write_through(target, mode) as handle:
            yield handle
        return
    if target.is_symlink():
        target = Path(os.path.realpath(target))  # replace what the link points to, keep the link
    if target.is_dir():
        raise FileWriteError(errno.EISDIR, f"cannot write {target}: it is a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in _stale_temporaries(target):
            with contextlib.suppress(OSError):
                stale.unlink()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=target.parent)
    except (FileExistsError, NotADirectoryError):
        raise FileWriteError(errno.ENOTDIR, f"cannot write {target}: a file is in the way of its folder") from None
    except OSError as exc:
        raise _write_error(target, exc) from None
    except ValueError as exc:  # a NUL character in the path
        raise FileWriteError(errno.EINVAL, f"cannot write {target!r}: {exc}") from None
    try:
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600: give new files the usual mode
            with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except FileWriteError:
            raise
        except OSError as exc:
            raise _write_error(target, exc) from None
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


#: the key under which :func:`strict_json` says why values of an object became null
NULL_REASONS = "null_reasons"


def strict_json(obj: Any) -> Any:
    """``obj`` made strict JSON: NaN and infinities become ``null``, and the object holding
    one says why under ``"null_reasons"`` (``{"rmse": "NaN"}``, ``{"scores[2]": "Infinity"}``);
    numpy scalars and arrays become plain numbers and lists, paths strings, tuples lists."""

    def reason(value: float) -> str:
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")

    def clean(value: Any, key: str, reasons: dict[str, str]) -> Any:
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            reasons[key] = reason(value)
            return None
        if isinstance(value, Mapping):
            return clean_object(value)
        if isinstance(value, (list, tuple)):
            return [clean(v, f"{key}[{n}]", reasons) for n, v in enumerate(value)]
        if isinstance(value, Path):
            return str(value)
        return value

    def clean_object(mapping: Mapping[Any, Any]) -> dict[str, Any]:
        reasons: dict[str, str] = {}
        out = {str(k): clean(v, str(k), reasons) for k, v in mapping.items()}
        if reasons:
            out[NULL_REASONS] = reasons
        return out

    # a bare list or number has no object to hold the reasons: its nulls go without them
    return clean(obj, "", {})


def dumps_json(obj: Any) -> str:
    """Strict, indented JSON text of ``obj`` (see :func:`strict_json`), ending in a newline."""
    return json.dumps(strict_json(obj), indent=2, default=_json_default, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as strict JSON (:func:`dumps_json`); ``-`` is standard output."""
    write_text(path, dumps_json(obj))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _to_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous()
    return torch.from_numpy(np.array(value, copy=True))


def _header_prefix(kind: str, version: int) -> bytes:
    return MAGIC + f"{kind} v{version} sha256=".encode()


def save_payload(path: str | os.PathLike[str], meta: Mapping[str, Any], tensors: Mapping[str, Any],
                 *, kind: str = FORMAT) -> None:
    """Write weights plus JSON metadata atomically, behind a header with their SHA-256."""
    payload = {
        "format": kind,
        "format_version": FORMAT_VERSION,
        "meta": json.dumps(meta, default=_json_default),
        "tensors": {name: _to_tensor(value) for name, value in tensors.items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    prefix = _header_prefix(kind, FORMAT_VERSION)
    digest = _sha256(prefix, body)
    with atomic_write(path) as handle:
        handle.write(prefix + digest + b"\n")
        handle.write(body)


def _sha256(*parts: bytes | memoryview) -> bytes:
    """The hex SHA-256 of the concatenated ``parts`` (without concatenating them)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest().encode()


def _looks_like_magic(head: bytes) -> bool:
    """Whether ``head`` is the magic with a bit or two flipped (a damaged header, not a foreign file)."""
    return sum(bin(a ^ b).count("1") for a, b in zip(head[:len(MAGIC)], MAGIC)) <= 2 and len(head) >= len(MAGIC)


def _describe_foreign(head: bytes) -> str:
    """What a file that is not a model file seems to be, for the error message."""
    kinds = ((b"\x89PNG", "a PNG image"), (b"%PDF", "a PDF"), (b"\x1f\x8b", "a gzip archive"))
    for start, name in kinds:
        if head.startswith(start):
            return f" (it is {name})"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        return " (it looks like JSON)"
    try:
        head.decode("utf-8")
        return " (it looks like text)" if head else " (it is empty)"
    except UnicodeDecodeError:
        return ""


def _unsupported(exc: BaseException) -> str:
    """The global a refused pickle names, without PyTorch's advice on ``weights_only``."""
    found = re.search(r"(?:Unsupported global|GLOBAL)[: ]+(?:GLOBAL )?([\w.]+)", str(exc))
    return f" (it names {found.group(1)})" if found else ""


def load_payload(path: str | os.PathLike[str], *, kind: str = FORMAT) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a file written by :func:`save_payload`; never runs code from the file.

    Raises:
        ModelFileError: missing file or a folder; a file that is not a dlfm file (JSON, CSV,
            an image); a corrupt file (any flipped bit: the SHA-256 does not match; truncated);
            a pickle payload or any object other than weights; a format version that is not
            a positive integer or newer than this dlfm reads.
    """
    path = Path(path)
    what = "model" if kind == FORMAT else kind.replace("dlfm-", "")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, not a {what} file")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such {what} file" if not path.exists() else f"{path}: not a regular file")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    header = _HEADER.match(data[:_HEADER_MAX])
    if header is not None:
        body = memoryview(data)[header.end():]
        prefix = data[:header.start(3)]
        if _sha256(prefix, body) != header.group(3):
            raise ModelFileError(f"{path}: the file is corrupt (its content does not match its SHA-256 checksum)")
        if header.group(1).decode() != kind:
            raise ModelFileError(f"{path}: is a {header.group(1).decode()} file, not a dlfm {what} file")
        source: Any = io.BytesIO(body)
    elif data.startswith(MAGIC) or _looks_like_magic(data[:len(MAGIC)]):
        raise ModelFileError(f"{path}: the file is corrupt (its header line is damaged)")
    elif data.startswith(b"PK\x03\x04") or data.startswith(b"\x80"):
        source = io.BytesIO(data)  # format version 1 (no checksum), or a bare pickle: refused below
    else:
        raise ModelFileError(f"{path}: not a dlfm {what} file{_describe_foreign(data[:64])}")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            payload = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(
            f"{path}: refused to load: the file holds Python objects other than weights (a pickle payload "
            f"that could run code){_unsupported(exc)}; only dlfm model files are accepted"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged file breaks the reader in many ways (struct.error,
        # EOFError, zipfile.BadZipFile, RuntimeError, ...); weights_only=True means none of them ran code
        raise ModelFileError(f"{path}: the file is truncated or corrupt (the archive cannot be read: "
                             f"{type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != kind:
        raise ModelFileError(f"{path}: not a dlfm {what} file")
    version = payload.get("format_version")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"{path}: the file is corrupt (its format version is {version!r}, not a positive integer)")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written in {kind} format version {version}, newer than this dlfm reads "
            f"({FORMAT_VERSION}); upgrade dlfm"
        )
    if header is not None and version != int(header.group(2)):
        raise ModelFileError(f"{path}: the file is corrupt (its header and archive disagree on the format version)")
    try:
        text = payload["meta"]
        if not isinstance(text, str):
            raise TypeError("the metadata is not text")
        meta = json.loads(text)
        tensors = dict(payload["tensors"])
    except RecursionError:
        raise ModelFileError(f"{path}: the file is corrupt (its metadata nests too deeply)") from None
    except (KeyError, TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise ModelFileError(f"{path}: the file is corrupt ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: the file is corrupt (its metadata is not a JSON object)")
    if not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise ModelFileError(f"{path}: the file is corrupt (non-tensor weights)")
    return meta, tensors

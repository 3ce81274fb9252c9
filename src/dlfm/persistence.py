"""Safe, atomic files: model files that hold only weights and JSON, written all-or-nothing.

A model file is one ``torch.save`` archive holding a plain dictionary
``{"format": "dlfm-model", "format_version": N, "meta": JSON text, "tensors": {name: tensor}}``
and is read back with ``torch.load(weights_only=True)``, whose restricted unpickler refuses
any other object: a file carrying a pickle payload is rejected before anything in it runs.

Every file dlfm writes goes through :func:`atomic_write`: the bytes go to a temporary file in
the same folder, are flushed and fsynced, and the temporary file is renamed over the target,
so a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from dlfm.errors import DlfmError, ModelFileError

FORMAT = "dlfm-model"
FORMAT_VERSION = 1


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


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    Raises:
        FileWriteError: the file cannot be written (the previous file, if any, is intact).
    """
    target = Path(path)
    if target.is_dir():
        raise FileWriteError(errno.EISDIR, f"cannot write {target}: it is a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def _to_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous()
    return torch.from_numpy(np.array(value, copy=True))


def save_payload(path: str | os.PathLike[str], meta: Mapping[str, Any], tensors: Mapping[str, Any],
                 *, kind: str = FORMAT) -> None:
    """Write weights plus JSON metadata atomically."""
    payload = {
        "format": kind,
        "format_version": FORMAT_VERSION,
        "meta": json.dumps(meta, default=_json_default),
        "tensors": {name: _to_tensor(value) for name, value in tensors.items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())


def load_payload(path: str | os.PathLike[str], *, kind: str = FORMAT) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a file written by :func:`save_payload`; never runs code from the file.

    Raises:
        ModelFileError: missing, truncated or corrupt file; a pickle payload or any object
            other than weights; a foreign file; a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(
            f"{path}: refused to load: the file holds objects other than weights (a pickle payload "
            f"that could run code); only dlfm model files are accepted ({(str(exc).splitlines() or [type(exc).__name__])[0][:200]})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a damaged file breaks the reader in many ways (struct.error,
        # EOFError, zipfile.BadZipFile, RuntimeError, ...); weights_only=True means none of them ran code
        raise ModelFileError(f"{path}: truncated or corrupt model file ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != kind:
        raise ModelFileError(f"{path}: not a {kind} file")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written in {kind} format version {version}, newer than this dlfm reads "
            f"({FORMAT_VERSION}); upgrade dlfm"
        )
    try:
        meta = json.loads(payload["meta"])
        tensors = dict(payload["tensors"])
    except (KeyError, TypeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise ModelFileError(f"{path}: corrupt model file ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: corrupt model file (its metadata is not a JSON object)")
    if not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise ModelFileError(f"{path}: corrupt model file (non-tensor weights)")
    return meta, tensors

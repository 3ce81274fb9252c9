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
import io
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from dlfm.errors import ModelFileError

FORMAT = "dlfm-model"
FORMAT_VERSION = 1


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
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
            f"that could run code); only dlfm model files are accepted ({str(exc).splitlines()[0][:200]})"
        ) from None
    except (EOFError, zipfile.BadZipFile, RuntimeError, ValueError, OSError, KeyError, IndexError,
            TypeError, AttributeError, UnicodeDecodeError) as exc:
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
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: corrupt model file ({exc})") from None
    if not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise ModelFileError(f"{path}: corrupt model file (non-tensor weights)")
    return meta, tensors

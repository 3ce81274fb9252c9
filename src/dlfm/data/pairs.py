"""Reading files of ids: (user, item) pairs to predict, or users to recommend for.

:func:`read_id_columns` reads any delimited text file (read with pandas) and returns the id
columns it is asked for, as text, with the file line of every row. It follows the rating
files' conventions (:mod:`dlfm.data.io`): UTF-8 with or without a byte-order mark; lines
ending in ``\\n``, ``\\r\\n`` or ``\\r``, numbered from 1; blank lines skipped (keeping the
numbering); the separator given or sniffed from the first non-blank line (tab, ``::``, comma,
semicolon, bar, then runs of spaces); CSV-style quotes; white space around a field removed;
empty ids an error naming the line. Columns are chosen by name (with a header) or 0-based
position; without ``columns`` a header naming a user column (``user``, ``userId``,
``user_id``, ``uid``) and an item column (``item``, ``itemId``, ``item_id``, ``iid``,
``movie``, ``movieId``) is used, else the first columns in role order. Extra columns (a
rating, a timestamp) are ignored, so a rating file is a valid pairs file.

Ids stay text here: a model's vocabulary maps ``"196"`` onto the integer id 196 itself.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from dlfm.errors import DataError

_SEPARATORS = ("\t", "::", ",", ";", "|", " ")
_NAMES = {
    "user": {"user", "userid", "uid", "users"},
    "item": {"item", "itemid", "iid", "items", "movie", "movieid"},
}
_PANDAS_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


@dataclass(frozen=True)
class IdColumns:
    """The id columns of a file: ``columns[role]`` is a list of ids as written (stripped),
    ``lines[k]`` the 1-based file line of row ``k``."""

    source: str
    columns: dict[str, list[str]]
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.lines)


def _normal(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def _sniff(first_line: str, n_roles: int) -> str:
    """The first separator that splits the line into at least ``n_roles`` fields, else ``,``
    (a one-column file has no separator to find)."""
    for sep in _SEPARATORS:
        fields = first_line.split() if sep == " " else first_line.split(sep)
        if len(fields) >= max(n_roles, 2):
            return sep
    return ","


def read_id_columns(
    path: str | Path,
    roles: Sequence[str] = ("user", "item"),
    *,
    sep: str | None = None,
    header: bool | None = None,
    columns: Sequence[str] | None = None,
) -> IdColumns:
    """Read the ``roles`` columns (e.g. user and item) of a delimited file.

    Args:
        path: the file.
        roles: the columns wanted, in order: ``("user", "item")`` or ``("user",)``.
        sep: the field separator (``" "``: runs of white space); sniffed when omitted.
        header: whether the first line names the columns; when omitted, a header is assumed
            when the first line holds a known column name (``user``, ``item``, ``userId``…) or
            ``columns`` names columns.
        columns: one name or 0-based position per role.

    Raises:
        DataError: naming the file, the line and the problem (no such file, a line with too
        many fields, an empty id, a column that does not exist, no rows).
    """
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("no such file", source=source) from None
    except IsADirectoryError:
        raise DataError("is a directory, not a file of ids", source=source) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", source=source) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text (byte {exc.start})", source=source, line=line) from None
    if "\x00" in text:
        raise DataError("contains a NUL byte: not a text file", source=source, line=text.count("\n", 0, text.find("\x00")) + 1)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    blank = np.fromiter((not line.strip() for line in lines), dtype=bool, count=len(lines))
    if blank.all():
        raise DataError("file is empty: no rows", source=source)
    first = lines[int(np.argmin(blank))]
    if sep is None:
        sep = _sniff(first, len(roles))
    if sep == "":
        raise DataError("the separator may not be empty", source=source)
    if columns is not None and len(columns) != len(roles):
        raise DataError(f"--columns needs {len(roles)} column(s) ({', '.join(roles)}), got {len(columns)}", source=source)
    named = columns is not None and any(not str(c).strip().lstrip("-").isdigit() for c in columns)
    if header is None:
        first_names = {_normal(f) for f in _split_first(first, sep)}
        header = named or any(first_names & _NAMES[role] for role in roles)
    if named and not header:
        raise DataError("--columns names columns, but the file is read without a header (drop --no-header)", source=source)

    line_numbers = np.flatnonzero(~blank) + 1
    body = "\n".join(lines[k - 1] for k in line_numbers.tolist()) + "\n"  # blank lines left out
    frame = _read_frame(body, sep, source, line_numbers)
    if len(frame) != len(line_numbers):  # a quoted field spanning lines
        raise DataError("a quoted field spans lines, which the id files do not allow", source=source)
    values = frame.to_numpy(dtype=object)
    names: list[str] | None = None
    if header:
        names = [str(v).strip() for v in values[0]]
        values, line_numbers = values[1:], line_numbers[1:]
    if len(values) == 0:
        raise DataError("no rows" + (" (only a header)" if header else ""), source=source)
    positions = _positions(roles, columns, names, values.shape[1], source)
    out: dict[str, list[str]] = {}
    for role, pos in zip(roles, positions):
        ids = [str(v).strip() for v in values[:, pos]]
        try:
            k = ids.index("")
        except ValueError:
            out[role] = ids
            continue
        raise DataError(f"the {role} id is empty", source=source, line=int(line_numbers[k]))
    return IdColumns(source, out, line_numbers)


def _split_first(line: str, sep: str) -> list[str]:
    if sep == " ":
        return line.split()
    return next(csv.reader([line], delimiter=sep)) if len(sep) == 1 else line.split(sep)


def _read_frame(text: str, sep: str, source: str, line_numbers: np.ndarray) -> pd.DataFrame:
    """Every line of ``text`` as a row of strings; ``line_numbers`` are their file lines."""
    options = dict(header=None, dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=False,
                   quotechar='"')
    if sep == " ":
        options.update(sep=r"\s+")
    elif len(sep) == 1:
        options.update(sep=sep)
    else:
        options.update(sep=re.escape(sep), engine="python")
    try:
        return pd.read_csv(io.StringIO(text), **options)
    except pd.errors.ParserError as exc:
        match = _PANDAS_LINE.search(str(exc))
        if match:
            expected, line, saw = (int(g) for g in match.groups())
            raise DataError(f"has {saw} fields, the first line {expected} (separator {sep!r})",
                            source=source, line=int(line_numbers[min(line, len(line_numbers)) - 1])) from None
        raise DataError(f"cannot parse: {str(exc).strip()}", source=source) from None
    except pd.errors.EmptyDataError:
        raise DataError("file is empty: no rows", source=source) from None


def _positions(roles: Sequence[str], columns: Sequence[str] | None, names: list[str] | None, width: int,
               source: str) -> list[int]:
    if columns is None:
        if names is not None:
            normal = [_normal(n) for n in names]
            found = [next((k for k, n in enumerate(normal) if n in _NAMES[role]), None) for role in roles]
            if all(k is not None for k in found):
                return [int(k) for k in found]  # type: ignore[arg-type]
        if width < len(roles):
            raise DataError(f"has {width} column{'s' if width != 1 else ''}, expected {len(roles)}: "
                            f"{', '.join(roles)}", source=source)
        columns = [str(k) for k in range(len(roles))]
    positions = []
    for role, ref in zip(roles, columns):
        ref = str(ref).strip()
        if ref.lstrip("-").isdigit():
            pos = int(ref)
            if not 0 <= pos < width:
                raise DataError(f"the {role} column {pos} does not exist (the file has {width} column"
                                f"{'s' if width != 1 else ''})", source=source)
        else:
            if names is None or ref not in names:
                have = ", ".join(repr(n) for n in names) if names else "no header"
                raise DataError(f"no column named {ref!r} for the {role} ids (the header has {have})", source=source)
            pos = names.index(ref)
        positions.append(pos)
    return positions

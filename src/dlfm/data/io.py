"""Reading rating data: any delimited text file, and pandas DataFrames.

:func:`load_ratings` reads ``user, item, rating[, timestamp]`` triples from a delimited file
(any separator, header or not, columns by name or position) and returns a validated
:class:`~dlfm.data.ratings.Ratings`. Every problem is reported as a
:class:`~dlfm.errors.DataError` naming the file, the line and what is wrong; nothing is
dropped silently (blank lines carry no data and are skipped).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from dlfm.data.ratings import DuplicatePolicy, Ratings
from dlfm.errors import DataError

ROLES = ("user", "item", "rating", "timestamp")
_CANDIDATE_SEPARATORS = ("\t", "::", ",", ";", "|", " ")
_INT_ID = re.compile(r"^[+-]?\d{1,18}$")

ColumnSpec = Mapping[str, "int | str"] | Sequence["int | str"] | None


def sniff_separator(first_line: str) -> str:
    """The separator of a delimited line: the first of tab, ``::``, comma, semicolon,
    bar and space that splits it into at least three fields."""
    for sep in _CANDIDATE_SEPARATORS:
        if len(first_line.split(sep)) >= 3:
            return sep
    raise DataError(
        "cannot tell the separator: the first line does not split into user, item, rating "
        "on tab, '::', ',', ';', '|' or space (pass sep=... / --sep)"
    )


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"not UTF-8 text (byte {exc.start})", source=source, line=line) from None


def load_ratings(
    path: str | Path,
    *,
    sep: str | None = None,
    header: bool | None = None,
    columns: ColumnSpec = None,
    scale: tuple[float, float] | None = None,
    duplicates: DuplicatePolicy = "error",
    name: str | None = None,
) -> Ratings:
    """Read a delimited rating file.

    Args:
        path: the file.
        sep: the field separator; sniffed from the first line when omitted.
        header: whether the first line names the columns; when omitted, a first line whose
            rating field is not a number is taken as a header.
        columns: which columns hold user, item, rating and (optionally) timestamp: a mapping
            ``{"user": 0, "item": "movieId", ...}`` or a sequence in that role order; names
            need a header. Default: the first three (or four) columns, in that order.
        scale: declared (lowest, highest) rating; a rating outside it is an error.
        duplicates: ``"error"`` (default), ``"last"`` or ``"mean"`` for a pair rated twice.

    Raises:
        DataError: naming the file, the line and the problem.
    """
    path = Path(path)
    source = name or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("no such file", source=str(path)) from None
    except IsADirectoryError:
        raise DataError("is a directory, not a rating file", source=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", source=str(path)) from None
    text = _decode(raw, str(path))
    return parse_ratings_text(
        text, sep=sep, header=header, columns=columns, scale=scale, duplicates=duplicates,
        source=str(path), name=source,
    )


def parse_ratings_text(
    text: str,
    *,
    sep: str | None = None,
    header: bool | None = None,
    columns: ColumnSpec = None,
    scale: tuple[float, float] | None = None,
    duplicates: DuplicatePolicy = "error",
    source: str = "<text>",
    name: str | None = None,
) -> Ratings:
    """Parse delimited rating text; see :func:`load_ratings` for the arguments."""
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise DataError("contains a NUL byte: not a text rating file", source=source, line=line)
    lines = text.splitlines()
    first = next((k for k, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise DataError("file is empty: no ratings", source=source)
    if sep is None:
        sep = sniff_separator(lines[first])
    if sep == "":
        raise DataError("the separator may not be empty")
    if len(sep) > 1 or sep == " ":
        # Multi-character separators ('::' of MovieLens 1M/10M) and runs of spaces: rewrite
        # to tabs so pandas' fast C parser can read them, keeping line numbers intact.
        if "\t" in text and sep != "\t":
            raise DataError(f"contains tab characters, which the separator {sep!r} does not allow", source=source)
        text = re.sub(r" +", "\t", text) if sep == " " else text.replace(sep, "\t")
        sep = "\t"

    first_fields = lines[first].split(sep) if len(sep) == 1 else lines[first].split("\t")
    spec = _column_spec(columns, len(first_fields))
    if header is None:
        rating_pos = spec["rating"] if isinstance(spec["rating"], int) else None
        header = isinstance(spec["rating"], str) or (
            rating_pos is not None and rating_pos < len(first_fields) and not _is_number(first_fields[rating_pos])
        )
    _check_field_counts(text, sep, source)
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, header=None, dtype=str, keep_default_na=False,
            skip_blank_lines=False, engine="c", quoting=3,
        )
    except pd.errors.ParserError as exc:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if match:
            expected, line, saw = match.groups()
            raise DataError(f"has {saw} fields, expected {expected} (separator {sep!r})", source=source, line=int(line)) from None
        raise DataError(f"cannot parse: {exc}", source=source) from None
    except (pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"cannot parse: {exc}", source=source) from None

    line_numbers = np.arange(1, len(frame) + 1)
    blank = frame.apply(lambda col: col.str.strip() == "").all(axis=1).to_numpy()
    if len(frame.columns) == 1:
        raise DataError(f"has 1 field, expected at least 3 (separator {sep!r})", source=source, line=first + 1)
    names: list[str] | None = None
    if header:
        head_row = first
        names = [str(x).strip() for x in frame.iloc[head_row].tolist()]
        keep = np.ones(len(frame), dtype=bool)
        keep[: head_row + 1] = False
    else:
        keep = np.ones(len(frame), dtype=bool)
    keep &= ~blank
    frame = frame[keep]
    line_numbers = line_numbers[keep]
    if len(frame) == 0:
        raise DataError("no ratings (only a header)" if header else "file is empty: no ratings", source=source)

    positions = {role: _position(ref, names, role, source) for role, ref in spec.items() if ref is not None}
    n_fields = frame.shape[1]
    short = frame.isna().any(axis=1).to_numpy() | (frame.iloc[:, max(positions.values())].isna().to_numpy())
    for role, pos in positions.items():
        if pos >= n_fields:
            raise DataError(f"has {n_fields} fields, the {role} column {pos} does not exist", source=source, line=int(line_numbers[0]))
    if short.any():
        k = int(np.argmax(short))
        count = int(frame.iloc[k].notna().sum())
        raise DataError(f"has {count} fields, expected {n_fields} (separator {sep!r})", source=source, line=int(line_numbers[k]))

    def column(role: str) -> pd.Series:
        return frame.iloc[:, positions[role]].str.strip()

    users, items = column("user"), column("item")
    for role, ids in (("user", users), ("item", items)):
        empty = (ids == "").to_numpy()
        if empty.any():
            k = int(np.argmax(empty))
            raise DataError(f"the {role} id is empty", source=source, line=int(line_numbers[k]))
    ratings_text = column("rating")
    values = pd.to_numeric(ratings_text, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(f"rating {ratings_text.iloc[k]!r} is not a finite number", source=source, line=int(line_numbers[k]))
    timestamps = None
    if "timestamp" in positions:
        ts_text = column("timestamp")
        ts = pd.to_numeric(ts_text, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(ts) | (np.abs(ts) > 2**62)
        if bad.any():
            k = int(np.argmax(bad))
            raise DataError(f"timestamp {ts_text.iloc[k]!r} is not a number", source=source, line=int(line_numbers[k]))
        timestamps = ts.astype(np.int64)
    return Ratings.from_raw(
        _ids(users), _ids(items), values, timestamps=timestamps, scale=scale,
        duplicates=duplicates, name=name or source, line_numbers=line_numbers,
    )


def from_dataframe(
    frame: pd.DataFrame,
    *,
    columns: ColumnSpec = None,
    scale: tuple[float, float] | None = None,
    duplicates: DuplicatePolicy = "error",
    name: str = "DataFrame",
) -> Ratings:
    """A container from a DataFrame with user, item, rating[, timestamp] columns.

    ``columns`` maps roles to column names or positions; by default the columns named
    ``user``, ``item``, ``rating`` (and ``timestamp``) are used when present, else the first
    three (four). Error messages give the DataFrame row position (0-based) as "row".
    """
    if len(frame) == 0:
        raise DataError("the DataFrame has no rows", source=name)
    names = [str(c) for c in frame.columns]
    if columns is None and {"user", "item", "rating"} <= set(names):
        columns = {r: r for r in ROLES if r in names}
    spec = _column_spec(columns, frame.shape[1])
    positions = {role: _position(ref, names, role, name) for role, ref in spec.items() if ref is not None}
    rows = np.arange(len(frame))
    users = frame.iloc[:, positions["user"]]
    items = frame.iloc[:, positions["item"]]
    for role, ids in (("user", users), ("item", items)):
        missing = ids.isna().to_numpy()
        if missing.any():
            raise DataError(f"row {int(np.argmax(missing))}: the {role} id is missing", source=name)
    values = pd.to_numeric(frame.iloc[:, positions["rating"]], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(f"row {k}: rating {frame.iloc[k, positions['rating']]!r} is not a finite number", source=name)
    timestamps = None
    if "timestamp" in positions:
        timestamps = pd.to_numeric(frame.iloc[:, positions["timestamp"]], errors="coerce").to_numpy()
        if not np.all(np.isfinite(timestamps)):
            raise DataError("a timestamp is not a number", source=name)
    try:
        return Ratings.from_raw(
            _ids(users.astype(str)) if users.dtype == object else users.to_numpy(),
            _ids(items.astype(str)) if items.dtype == object else items.to_numpy(),
            values, timestamps=timestamps, scale=scale, duplicates=duplicates, name=name, line_numbers=rows,
        )
    except DataError as exc:
        raise DataError(exc.problem.replace("line", "row"), source=name) from None


# --------------------------------------------------------------------------- helpers
def _check_field_counts(text: str, sep: str, source: str) -> None:
    """Every non-blank line must have as many fields as the first one."""
    lines = pd.Series(text.split("\n"))
    counts = lines.str.count(re.escape(sep)).to_numpy() + 1
    blank = (lines.str.strip() == "").to_numpy()
    data = np.flatnonzero(~blank)
    expected = counts[data[0]]
    bad = data[counts[data] != expected]
    if len(bad):
        k = int(bad[0])
        raise DataError(f"has {counts[k]} fields, expected {expected} (separator {sep!r})", source=source, line=k + 1)


def _is_number(text: str) -> bool:
    try:
        return np.isfinite(float(text))
    except ValueError:
        return False


def _column_spec(columns: ColumnSpec, n_fields: int) -> dict[str, int | str | None]:
    if columns is None:
        spec: dict[str, int | str | None] = {"user": 0, "item": 1, "rating": 2, "timestamp": 3 if n_fields >= 4 else None}
        return spec
    if isinstance(columns, Mapping):
        unknown = set(columns) - set(ROLES)
        if unknown:
            raise DataError(f"unknown column role(s) {sorted(unknown)}; use {', '.join(ROLES)}")
        spec = {role: columns.get(role) for role in ROLES}
    else:
        refs = list(columns)
        if not 3 <= len(refs) <= 4:
            raise DataError("columns must name user, item, rating and optionally timestamp")
        spec = {role: (refs[k] if k < len(refs) else None) for k, role in enumerate(ROLES)}
    for role in ("user", "item", "rating"):
        if spec[role] is None:
            raise DataError(f"columns must say which column holds the {role}")
    for role, ref in spec.items():
        if isinstance(ref, str) and ref.strip().lstrip("-").isdigit():
            spec[role] = int(ref)
    return spec


def _position(ref: int | str, names: list[str] | None, role: str, source: str) -> int:
    if isinstance(ref, (int, np.integer)):
        if ref < 0:
            raise DataError(f"the {role} column position {ref} is negative", source=source)
        return int(ref)
    if names is None:
        raise DataError(f"the {role} column is named {ref!r}, but the file has no header", source=source)
    if ref not in names:
        raise DataError(f"no column named {ref!r} for the {role} (columns: {', '.join(names)})", source=source)
    return names.index(ref)


def _ids(values: pd.Series | np.ndarray) -> np.ndarray:
    """Raw ids as int64 when every one is an integer, else as strings."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        return arr.astype(str)
    strings = pd.Series(arr, dtype=str)
    if len(strings) and strings.str.fullmatch(_INT_ID.pattern).all():
        return strings.astype(np.int64).to_numpy()
    return strings.to_numpy(dtype=object)

"""Reading rating data: any delimited text file, and pandas DataFrames.

:func:`load_ratings` reads ``user, item, rating[, timestamp]`` triples from a delimited file
(any separator, header or not, columns by name or position) and returns a validated
:class:`~dlfm.data.ratings.Ratings`. Every problem is reported as a
:class:`~dlfm.errors.DataError` naming the file, the line and what is wrong; nothing is
dropped silently: every non-blank line after the header is one rating.

The text rules, in one place:

- UTF-8, with or without a byte-order mark (UTF-16 with a byte-order mark is read too);
  a NUL byte or undecodable bytes are an error naming the line.
- Lines end in ``\\n``, ``\\r\\n`` or ``\\r``; line numbers count those, starting at 1. Blank
  lines (nothing but white space) carry no data and are skipped, keeping the numbering.
- Fields are split on the separator (given, or sniffed from the first non-blank line); the
  separator ``" "`` means runs of spaces, leading and trailing spaces ignored. Every
  non-blank line must have as many fields as the first one. A separator at the end of every
  line (an empty last column on every line) is ignored.
- A field may be quoted CSV-style, ``"a, b"`` with ``""`` for a quote inside; a quoted field
  cannot span lines. A quote inside an unquoted field is an ordinary character.
- White space around every field is removed; user and item ids may not be empty.
- Ids are integers when every id of the column is written as a canonical int64 integer
  (``196``, ``-3``; not ``007`` or ``+3``), else strings kept as written
  (:func:`dlfm.data.ratings.raw_ids` with ``int_texts``: the one normaliser of every reader).
- Ratings are finite numbers (Python ``float`` syntax); timestamps are whole numbers.
- Header: the first non-blank line is a header when ``header=True``, when columns are given by
  name, or (``header=None``) when its rating field is not a number and the line is not data:
  it names the user, item and rating columns, or none of its fields is empty or starts like a
  number. A first line that looks like data with one bad field (``2,2,inf``, ``2,2,abc``,
  ``2,2,``) is an error naming line 1, never a header.
- Header names: without ``columns``, a header naming the columns (``user``/``userId``/``uid``,
  ``item``/``movieId``/``iid``, ``rating``/``stars``/``score``, ``timestamp``/``time``; see
  :data:`ROLE_NAMES`) decides which column is which; one that names some of them in other
  places than the default order (user, item, rating, timestamp) is an error.
- A line is at most :data:`MAX_LINE_BYTES` (1 MiB) long; error messages quote at most about
  60 characters of a field.

:func:`load_ratings` reads a file through the vectorised reader of :mod:`dlfm.data._fast`
(pyarrow's CSV parser), which follows these rules exactly and leaves to the text reader below
(:func:`parse_ratings_text`) what it does not handle itself (quotes, UTF-16, ...).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from dlfm.data.ratings import _WHITESPACE, DuplicatePolicy, Ratings, _quote, raw_ids
from dlfm.errors import DataError

ROLES = ("user", "item", "rating", "timestamp")
MAX_LINE_BYTES = 1 << 20  # 1 MiB: a longer line is an error (an endless stream cannot fill the memory)
_STREAM_CHUNK = 1 << 18
_CANDIDATE_SEPARATORS = ("\t", "::", ",", ";", "|", " ")
_SPACES = re.compile(" +")
_QUOTED_BODY = re.compile(r'(?:[^"]|"")*"')
_OPEN_QUOTE = re.compile(r' *"')
_POSITION = re.compile(r"-?[0-9]+")
# no two parts may match the same digits: a 200 MB field of digits must not backtrack for ever
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.IGNORECASE)
_INT64_MAX = np.iinfo(np.int64).max

ColumnSpec = Mapping[str, "int | str"] | Sequence["int | str"] | str | None


def sniff_separator(first_line: str) -> str:
    """The separator of a delimited line: the first of tab, ``::``, comma, semicolon,
    bar and space that splits it into at least three fields (quoted fields count as one)."""
    if '"' not in first_line:
        for sep in _CANDIDATE_SEPARATORS:
            if len(_split_plain(first_line, sep)) >= 3:
                return sep
    else:  # prefer a separator under which every quote belongs to a quoted field
        fits: list[tuple[str, bool]] = []
        for sep in _CANDIDATE_SEPARATORS:
            quoted: list[bool] = []
            try:
                fields = _split_quoted(first_line, sep, quoted)
            except ValueError:  # the quotes do not fit this separator
                continue
            if len(fields) >= 3:
                fits.append((sep, any('"' in f for f, q in zip(fields, quoted) if not q)))
        if fits:
            return min(fits, key=lambda fit: fit[1])[0]  # the first without stray quotes, else the first
    raise DataError(
        "cannot tell the separator: the first line does not split into user, item, rating "
        "on tab, '::', ',', ';', '|' or space (pass sep=... / --sep)"
    )


def _line_of(raw: bytes | bytearray, offset: int) -> int:
    """1-based line number of a byte offset, counting \\n, \\r\\n and \\r line ends."""
    head = raw[:offset]
    return head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n") + 1


def _decode(raw: bytes, source: str) -> str:
    """The text of a file: UTF-8, or UTF-16 when it starts with a UTF-16 byte-order mark. A
    byte-order mark stays at the start of the text (:func:`parse_ratings_text` drops it)."""
    codec = "utf-8"
    if raw.startswith(b"\xfe\xff"):
        codec = "utf-16-be"
    elif raw.startswith(b"\xff\xfe") and not raw.startswith(b"\xff\xfe\x00\x00"):
        codec = "utf-16-le"
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        if codec == "utf-8":
            raise DataError(f"not UTF-8 text (byte {exc.start})", source=source, line=_line_of(raw, exc.start)) from None
        head = raw[: exc.start].decode(codec, "replace")
        line = head.count("\n") + head.count("\r") - head.count("\r\n") + 1
        raise DataError(f"not valid UTF-16 text (byte {exc.start})", source=source, line=line) from None


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
    """Read a delimited rating file (the rules are in this module's docstring).

    Args:
        path: the file.
        sep: the field separator; sniffed from the first non-blank line when omitted.
        header: whether the first line names the columns; when omitted, a first line whose
            rating field is not a number (or columns given by name) means a header.
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
    raw = _read_bytes(path)
    from dlfm.data import _fast  # the vectorised reader: None when the file needs the text rules below

    ratings = _fast.load(raw, sep=sep, header=header, columns=columns, scale=scale, duplicates=duplicates,
                         source=str(path), name=source)
    if ratings is not None:
        return ratings
    text = _decode(raw, str(path))
    del raw
    return parse_ratings_text(
        text, sep=sep, header=header, columns=columns, scale=scale, duplicates=duplicates,
        source=str(path), name=source,
    )


def _read_bytes(path: Path) -> bytes:
    """The bytes of a file, refusing a line longer than :data:`MAX_LINE_BYTES`.

    A regular file is read whole. Anything else (a pipe, a character device such as
    ``/dev/zero``) is read in chunks and stops at the first NUL byte (text has none) or overlong
    line, so an endless stream without line ends cannot fill the memory.
    """
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise DataError("no such file", source=str(path)) from None
    except IsADirectoryError:
        raise DataError("is a directory, not a rating file", source=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None
    except ValueError as exc:  # e.g. a NUL character in the path
        raise DataError(f"cannot read: {exc}", source=repr(str(path))) from None
    with handle:
        try:
            if stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raw = handle.read()
                _check_line_lengths(raw, 0, len(raw), str(path))
                return raw
            buffer = bytearray()
            line_start = 0  # where the line being read began
            while True:
                chunk = handle.read(_STREAM_CHUNK)
                if not chunk:
                    return bytes(buffer)
                begin = len(buffer)
                buffer += chunk
                nul = chunk.find(b"\x00")
                if nul >= 0 and not buffer.startswith((b"\xfe\xff", b"\xff\xfe")):  # UTF-16 has NUL bytes
                    raise DataError("contains a NUL byte: not a text rating file", source=str(path),
                                    line=_line_of(buffer, begin + nul))
                _check_line_lengths(buffer, line_start, len(buffer), str(path), complete=False)
                line_start = max(buffer.rfind(b"\n", line_start), buffer.rfind(b"\r", line_start), line_start - 1) + 1
        except OSError as exc:
            raise DataError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None


def _check_line_lengths(raw: bytes | bytearray, start: int, end: int, source: str, *, complete: bool = True) -> None:
    """Raise when a line of ``raw[start:end]`` (``start`` at a line start) is longer than
    :data:`MAX_LINE_BYTES`. Looks at one window of half that size after another: a line that long
    covers a whole window, so windows holding a line end (nearly all) cost one ``find``.
    ``complete=False``: the data may go on after ``end`` (a stream)."""
    window = MAX_LINE_BYTES // 2
    pos = start
    while end - pos >= window:
        stop = pos + window
        if raw.find(b"\n", pos, stop) >= 0 or raw.find(b"\r", pos, stop) >= 0:
            pos = stop
            continue
        # no line end in the window: the line holding it is at least half the bound long
        begin = max(raw.rfind(b"\n", 0, pos), raw.rfind(b"\r", 0, pos)) + 1
        ends = [k for k in (raw.find(b"\n", stop, end), raw.find(b"\r", stop, end)) if k >= 0]
        length = (min(ends) if ends else end) - begin
        if length > MAX_LINE_BYTES:
            exact = f" ({length:,} bytes)" if ends or complete else ""
            raise DataError(f"a line longer than {MAX_LINE_BYTES // 2**20} MiB{exact}: not a rating file "
                            f"(a rating line is short)", source=source, line=_line_of(raw, begin))
        if not ends:
            return
        pos = min(ends) + 1


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
    if text.startswith("\ufeff"):  # a byte-order mark
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    nul = text.find("\x00")
    if nul >= 0:
        raise DataError("contains a NUL byte: not a text rating file", source=source, line=text.count("\n", 0, nul) + 1)
    quoted = '"' in text
    lines = text.split("\n")
    del text
    blank = np.fromiter((not line or line.isspace() for line in lines), dtype=bool, count=len(lines))
    line_numbers = np.flatnonzero(~blank) + 1
    if len(line_numbers) == 0:
        raise DataError("file is empty: no ratings", source=source)
    if len(line_numbers) < len(lines):
        lines = [lines[k - 1] for k in line_numbers.tolist()]

    if sep is None:
        try:
            sep = sniff_separator(lines[0])
        except DataError as exc:
            raise DataError(exc.problem, source=source, line=int(line_numbers[0])) from None
    if not isinstance(sep, str) or sep == "":
        raise DataError("the separator may not be empty", source=source)
    if "\n" in sep or "\r" in sep or '"' in sep:
        raise DataError(f"the separator {sep!r} may not hold a line end or a quote", source=source)

    flat, width, padded = _split_lines(lines, sep, line_numbers, source, quoted=quoted)
    del lines
    n_lines = len(line_numbers)
    n_fields = width
    if width > 3 and all(not f or f.isspace() for f in flat[width - 1 :: width]):
        n_fields = width - 1  # a trailing separator on every line: no last column
    if n_fields < 3 and columns is None:
        raise DataError(
            f"has {n_fields} field{'s' if n_fields != 1 else ''}, expected at least 3: user, item, rating "
            f"(separator {sep!r})", source=source, line=int(line_numbers[0]),
        )

    first_fields = [f.strip() for f in flat[:n_fields]]
    header, positions = _layout(first_fields, n_fields, header, columns, source, int(line_numbers[0]),
                                has_data=n_lines > 1)
    start = 1 if header else 0
    line_numbers = line_numbers[start:]

    def column(role: str) -> list[str]:
        fields = flat[start * width + positions[role] :: width]
        return [f.strip() for f in fields] if padded else fields

    ids = {}
    for role in ("user", "item"):
        values = column(role)
        if "" in values:
            k = values.index("")
            raise DataError(f"the {role} id is empty", source=source, line=int(line_numbers[k]))
        ids[role] = raw_ids(values, int_texts=True)
    ratings_text = column("rating")
    values = _to_floats(ratings_text)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        k = int(bad[0])
        raise DataError(f"rating {_quote(ratings_text[k])} is not a finite number", source=source, line=int(line_numbers[k]))
    timestamps = None
    if "timestamp" in positions:
        ts_text = column("timestamp")
        timestamps, k = _to_ints(ts_text)
        if k is not None:
            raise DataError(f"timestamp {_quote(ts_text[k])} is not a whole number", source=source, line=int(line_numbers[k]))
    del flat
    return Ratings.from_raw(
        ids["user"], ids["item"], values, timestamps=timestamps, scale=scale,
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
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, not {type(frame).__name__}", source=name)
    if len(frame) == 0:
        raise DataError("the DataFrame has no rows", source=name)
    names = [str(c) for c in frame.columns]
    if columns is None and {"user", "item", "rating"} <= set(names):
        columns = {r: r for r in ROLES if r in names}
    spec = _column_spec(columns, frame.shape[1], name)
    positions = {role: _position(ref, names, role, name) for role, ref in spec.items() if ref is not None}
    for role, pos in positions.items():
        if pos >= frame.shape[1]:
            raise DataError(f"the {role} column {pos} does not exist (the DataFrame has {frame.shape[1]} columns)",
                            source=name)
    rows = np.arange(len(frame))
    users = frame.iloc[:, positions["user"]]
    items = frame.iloc[:, positions["item"]]
    for role, ids in (("user", users), ("item", items)):
        missing = ids.isna().to_numpy()
        if missing.any():
            raise DataError(f"row {int(np.argmax(missing))}: the {role} id is missing", source=name)
    values = _frame_numbers(frame.iloc[:, positions["rating"]])
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(f"row {k}: rating {_quote(frame.iloc[k, positions['rating']])} is not a finite number", source=name)
    timestamps = None
    if "timestamp" in positions:
        column = frame.iloc[:, positions["timestamp"]]
        if column.dtype.kind in "iu" and (column.dtype.kind == "i" or int(column.max()) <= _INT64_MAX):
            timestamps = column.to_numpy().astype(np.int64)
        else:
            ts = _frame_numbers(column)
            bad = ~np.isfinite(ts) | (ts != np.round(ts)) | (np.abs(ts) >= 2.0**53)
            if bad.any():
                k = int(np.argmax(bad))
                raise DataError(f"row {k}: timestamp {_quote(column.iloc[k])} is not a whole number", source=name)
            timestamps = ts.astype(np.int64)
    try:
        return Ratings.from_raw(
            raw_ids(users, int_texts=True), raw_ids(items, int_texts=True), values, timestamps=timestamps, scale=scale,
            duplicates=duplicates, name=name, line_numbers=rows,
        )
    except DataError as exc:
        problem = exc.problem.replace("(lines ", "(rows ")
        if exc.line is not None:
            problem = f"row {exc.line}: {problem}"
        raise DataError(problem, source=name) from None


# --------------------------------------------------------------------------- helpers
def _split_plain(line: str, sep: str) -> list[str]:
    """The fields of an unquoted line (``" "``: runs of spaces, edges ignored)."""
    if sep == " ":
        line = line.strip(" ")
        return _SPACES.split(line) if line else [""]
    return line.split(sep)


def _split_quoted(line: str, sep: str, quoted: list[bool] | None = None) -> list[str]:
    """The fields of a line with CSV-style quoted fields; raises ``ValueError`` with the problem.
    ``quoted``, when given, receives for each field whether it was quoted."""
    spaces = sep == " "
    if spaces:
        line = line.strip(" ")
    fields: list[str] = []
    pos, n = 0, len(line)
    while True:
        opening = _OPEN_QUOTE.match(line, pos)
        if opening is None:  # an unquoted field: up to the next separator
            if spaces:
                found = _SPACES.search(line, pos)
                k, after = (found.start(), found.end()) if found else (-1, -1)
            else:
                k = line.find(sep, pos)
                after = k + len(sep)
            if quoted is not None:
                quoted.append(False)
            if k < 0:
                fields.append(line[pos:])
                return fields
            fields.append(line[pos:k])
            pos = after
            continue
        body = _QUOTED_BODY.match(line, opening.end())
        if body is None:
            raise ValueError(f"the quoted field {len(fields) + 1} is not closed (a quoted field cannot span lines)")
        fields.append(line[opening.end() : body.end() - 1].replace('""', '"'))
        if quoted is not None:
            quoted.append(True)
        pos = body.end()
        if spaces:
            if pos == n:
                return fields
            found = _SPACES.match(line, pos)
            if found is None:
                raise ValueError(f"unexpected text after the closing quote of field {len(fields)}")
            pos = found.end()
            continue
        if not line.startswith(sep, pos):
            while pos < n and line[pos] == " ":
                pos += 1
        if pos == n:
            return fields
        if not line.startswith(sep, pos):
            raise ValueError(f"unexpected text after the closing quote of field {len(fields)}")
        pos += len(sep)


def _split_lines(lines: list[str], sep: str, line_numbers: np.ndarray, source: str, *,
                 quoted: bool = True) -> tuple[list[str], int, bool]:
    """All fields of all (non-blank) lines, row after row, the number of fields per line, and
    whether any field holds white space; raises when a line has another number of fields than
    the first one."""
    if quoted and any('"' in line for line in lines):
        rows = []
        for k, line in enumerate(lines):
            if '"' in line:
                try:
                    rows.append(_split_quoted(line, sep))
                except ValueError as exc:
                    raise DataError(str(exc), source=source, line=int(line_numbers[k])) from None
            else:
                rows.append(_split_plain(line, sep))
        counts = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        _check_counts(counts, sep, line_numbers, source)
        flat = [field for row in rows for field in row]
        return flat, int(counts[0]), any(_WHITESPACE.search(field) for field in flat)
    if sep == " ":
        lines = [line.strip(" ") for line in lines]
        counts = np.fromiter((len(_SPACES.findall(line)) + 1 for line in lines), dtype=np.int64, count=len(lines))
        _check_counts(counts, sep, line_numbers, source)
        joined = _SPACES.sub("\n", "\n".join(lines))
        return joined.split("\n"), int(counts[0]), _WHITESPACE.search(joined) is not None
    counts = np.fromiter((line.count(sep) + 1 for line in lines), dtype=np.int64, count=len(lines))
    _check_counts(counts, sep, line_numbers, source)
    joined = "\n".join(lines).replace(sep, "\n")
    return joined.split("\n"), int(counts[0]), _WHITESPACE.search(joined) is not None


def _check_counts(counts: np.ndarray, sep: str, line_numbers: np.ndarray, source: str) -> None:
    """Every non-blank line must have as many fields as the first one."""
    bad = np.flatnonzero(counts != counts[0])
    if len(bad):
        k = int(bad[0])
        raise DataError(f"has {int(counts[k])} fields, expected {int(counts[0])} like line {int(line_numbers[0])} "
                        f"(separator {sep!r})", source=source, line=int(line_numbers[k]))


def _is_number(text: str) -> bool:
    return bool(np.isfinite(_to_floats([text.strip()])[0]))


def _plain_ascii(texts: list[str]) -> bool:
    """No text holds non-ASCII characters (e.g. other scripts' digits) or ``_`` (which Python's
    number syntax allows between digits): then numpy's conversion means what it says."""
    joined = "".join(texts)
    return joined.isascii() and "_" not in joined


def _to_floats(texts: list[str]) -> np.ndarray:
    """Numbers of (stripped) texts; NaN where a text is not a number in plain decimal notation."""
    if _plain_ascii(texts):
        try:
            return np.array(texts, dtype=np.float64)
        except (ValueError, OverflowError):
            pass
    out = np.empty(len(texts), dtype=np.float64)
    for k, text in enumerate(texts):
        try:
            out[k] = float(text) if _NUMBER.fullmatch(text) else np.nan
        except (ValueError, OverflowError):
            out[k] = np.nan
    return out


def _to_ints(texts: list[str]) -> tuple[np.ndarray, int | None]:
    """Whole numbers (int64) of texts, and the position of the first that is not one."""
    if _plain_ascii(texts):
        try:
            return np.array(texts, dtype=np.int64), None
        except (ValueError, OverflowError):
            pass
    out = np.zeros(len(texts), dtype=np.int64)
    for k, text in enumerate(texts):
        if not _NUMBER.fullmatch(text):
            return out, k
        try:
            value = int(text)
        except ValueError:
            number = float(text)
            if not (np.isfinite(number) and number == round(number) and abs(number) < 2.0**53):
                return out, k
            value = int(number)
        if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
            return out, k
        out[k] = value
    return out, None


def _frame_numbers(column: pd.Series) -> np.ndarray:
    """A DataFrame column as float64, NaN where an entry is not a number."""
    if column.dtype.kind in "biuf":
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        numbers = pd.to_numeric(column, errors="coerce")
    except (TypeError, ValueError):
        numbers = pd.Series([_number_or_nan(v) for v in column])
    return np.asarray(numbers.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def _number_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return np.nan


def _column_spec(columns: ColumnSpec, n_fields: int, source: str | None = None) -> dict[str, int | str | None]:
    if columns is None:
        spec: dict[str, int | str | None] = {"user": 0, "item": 1, "rating": 2, "timestamp": 3 if n_fields >= 4 else None}
        return spec
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",")]
    if isinstance(columns, Mapping):
        unknown = set(columns) - set(ROLES)
        if unknown:
            raise DataError(f"unknown column role(s) {sorted(map(str, unknown))}; use {', '.join(ROLES)}", source=source)
        spec = {role: columns.get(role) for role in ROLES}
    else:
        refs = list(columns)
        if not 3 <= len(refs) <= 4:
            raise DataError("columns must name user, item, rating and optionally timestamp", source=source)
        spec = {role: (refs[k] if k < len(refs) else None) for k, role in enumerate(ROLES)}
    for role in ("user", "item", "rating"):
        if spec[role] is None:
            raise DataError(f"columns must say which column holds the {role}", source=source)
    for role, ref in spec.items():
        if isinstance(ref, str) and _POSITION.fullmatch(ref.strip()):
            spec[role] = int(ref)
        elif ref is not None and not isinstance(ref, (str, int, np.integer)) or isinstance(ref, (bool, np.bool_)):
            raise DataError(f"the {role} column must be given by name or 0-based position, not {ref!r}", source=source)
    return spec


def _position(ref: int | str, names: list[str] | None, role: str, source: str) -> int:
    if isinstance(ref, (int, np.integer)):
        if ref < 0:
            raise DataError(f"the {role} column position {ref} is negative", source=source)
        return int(ref)
    if names is None:
        raise DataError(f"the {role} column is named {_quote(ref)}, but the file has no header", source=source)
    if ref not in names:
        if ref.strip() in names:
            return names.index(ref.strip())
        raise DataError(f"no column named {_quote(ref)} for the {role} (columns: {_quote(', '.join(names))})",
                        source=source)
    return names.index(ref)


# --------------------------------------------------------------------------- header and columns
# Header names that say which role a column plays, compared lower-case without punctuation
# ("userId", "user_id" and "User ID" are all "userid").
ROLE_NAMES: dict[str, frozenset[str]] = {
    "user": frozenset({"user", "users", "userid", "uid", "u", "customer", "customerid", "member", "memberid",
                       "reviewer", "reviewerid", "rater", "raterid", "viewer", "viewerid", "person", "account"}),
    "item": frozenset({"item", "items", "itemid", "iid", "i", "movie", "movieid", "mid", "film", "filmid",
                       "product", "productid", "asin", "book", "bookid", "isbn", "track", "trackid", "song",
                       "songid", "artist", "artistid", "business", "businessid", "video", "videoid", "game",
                       "gameid", "anime", "animeid", "joke", "jokeid", "recipe", "recipeid", "article", "articleid"}),
    "rating": frozenset({"rating", "ratings", "rate", "stars", "star", "score", "value", "grade", "r", "preference",
                         "count", "plays", "playcount", "overall"}),
    "timestamp": frozenset({"timestamp", "time", "ts", "t", "date", "datetime", "when", "unixtime",
                            "unixreviewtime", "epoch", "created", "createdat"}),
}
_NOT_ALNUM = re.compile(r"[^0-9a-z]")
# A field that could only be data: it starts like a number (any digits, sign, point) or is inf/nan.
_DATA_LIKE = re.compile(r"[+-]?\.?\d|[+-]?(?:inf|nan)", re.IGNORECASE)


def _role_of(name: str) -> str | None:
    key = _NOT_ALNUM.sub("", name.lower())
    return next((role for role, names in ROLE_NAMES.items() if key in names), None)


def _header_roles(names: list[str], source: str, line: int) -> dict[str, int] | None:
    """Positions the header names give to the roles, or None when it names none of them (then
    the default order applies). A header naming some roles in places that contradict the
    default order, or one role twice, is an error: reading it by position would be wrong."""
    found: dict[str, list[int]] = {}
    for k, text in enumerate(names):
        role = _role_of(text)
        if role is not None:
            found.setdefault(role, []).append(k)
    if not found:
        return None
    if all(len(found.get(role, ())) == 1 for role in ("user", "item", "rating")) and len(found.get("timestamp", ())) <= 1:
        return {role: pos[0] for role, pos in found.items()}
    default = {"user": 0, "item": 1, "rating": 2, "timestamp": 3}
    if all(len(pos) == 1 and pos[0] == default[role] for role, pos in found.items()):
        return None  # what it names is where the default order puts it
    named = ", ".join(f"{role} {', '.join(repr(names[k]) for k in pos)}" for role, pos in found.items())
    raise DataError(
        f"the header {_quote(', '.join(names))} does not match the user, item, rating columns (it names: "
        f"{_quote(named)}); name each once (user, item, rating, timestamp) or pass columns= / --columns",
        source=source, line=line,
    )


def _looks_like_data(fields: list[str]) -> bool:
    """A line with an empty field or a field that starts like a number is data, not a header."""
    return any(not field or _DATA_LIKE.match(field) for field in fields)


def _layout(first: list[str], n_fields: int, header: bool | None, columns: ColumnSpec, source: str, line: int,
            *, has_data: bool) -> tuple[bool, dict[str, int]]:
    """Whether the first (non-blank) line is a header, and the 0-based position of each role.

    ``first`` holds the first line's stripped fields. When ``header`` is None, the first line is
    a header when columns are given by name, or when its rating field is not a number and the
    line is not data: it names the columns, or none of its fields is empty or number-like. A
    first line like ``2,2,inf`` is data, and its bad rating an error naming the line.
    When ``columns`` is None and there is a header naming the roles, the names decide.
    """
    spec = _column_spec(columns, n_fields, source)
    by_name = any(isinstance(ref, str) for ref in spec.values())
    if header is None:
        rating_ref = spec["rating"]
        header = by_name
        if not by_name and isinstance(rating_ref, int) and 0 <= rating_ref < n_fields and not _is_number(first[rating_ref]):
            names_roles = columns is None and _names_all_roles(first[:n_fields])
            header = names_roles or not _looks_like_data(first[:n_fields])
        if header and not by_name and not has_data:
            raise DataError(
                f"no ratings: the only line was read as a header, since its rating field "
                f"{_quote(first[spec['rating']])} is not a number", source=source, line=line,
            )
    if header and not has_data:
        raise DataError("no ratings (only a header)", source=source)
    names = first[:n_fields] if header else None
    if header and columns is None:
        named = _header_roles(first[:n_fields], source, line)
        if named is not None:
            spec = {role: named.get(role) for role in ROLES}
    positions = {role: _position(ref, names, role, source) for role, ref in spec.items() if ref is not None}
    for role, pos in positions.items():
        if pos >= n_fields:
            raise DataError(f"has {n_fields} fields, the {role} column {pos} does not exist", source=source, line=line)
    return header, positions


def _names_all_roles(names: list[str]) -> bool:
    roles = [_role_of(name) for name in names]
    return all(roles.count(role) == 1 for role in ("user", "item", "rating"))

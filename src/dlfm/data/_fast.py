"""The vectorised reader behind :func:`dlfm.data.io.load_ratings`.

pyarrow's CSV parser splits the file and converts the numbers (in C++, on every core); the
checks of the text rules (:mod:`dlfm.data.io`) then run on whole columns with numpy, and ids
are factorised once (:func:`dlfm.data.ratings.factorize`). Chosen by measurement against
pandas' C engine: on 5M lines both parse in about the same time, but pyarrow gives each id
column as one text buffer plus offsets, so the "canonical integer" rule for ids is a few
vectorised byte tests instead of a per-id Python check, and no Python string is ever made.

The contract is the text rules, unchanged: this reader either returns exactly what the text
reader would, raises exactly its error, or declines (``None``) and leaves the file to it.
It declines what it does not handle itself -- quotes, NUL bytes, UTF-16, invalid UTF-8, the
space separator, a blank last field on the first line (a possible trailing separator), a
field count that differs between lines -- which the text reader reads (or reports) at its
own, slower pace.

Errors: the columns are checked in the text reader's order (user ids, item ids, ratings,
timestamps, then the container's checks). A bad value is found by position in the column;
its line is the row's line (counting the blank lines arrow skips), and the message comes from
the text reader run on an excerpt: the first line, blank lines up to that line, and the line
itself -- so it is the same message, naming the same line, at any line number.
"""

from __future__ import annotations

import codecs
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dlfm.data.io import (
    MAX_LINE_BYTES,
    ColumnSpec,
    _layout,
    _split_plain,
    _to_floats,
    _to_ints,
    parse_ratings_text,
    sniff_separator,
)
from dlfm.data.ratings import DuplicatePolicy, Ratings, Vocabulary, factorize, raw_ids
from dlfm.errors import DataError

_BLOCK_BYTES = 16 * MAX_LINE_BYTES  # arrow's block: far longer than any line the reader accepts
# bytes that can stand in for a separator of several bytes (``::``) when the file has none
_SPARE_SEPARATORS = b"\x1f\x1e\x1d\x1c\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x7f"
_LEADING_BLANK_LINES = 1000  # more than this before the first line: left to the text reader
# a byte that is not ASCII white space (as str.isspace has it): a line holding one may not be blank
_NOT_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c\x1c-\x1f]")


def _memory_pool() -> pa.MemoryPool:
    """The allocator of the reader's arrow buffers: jemalloc where this pyarrow has it (and
    ``ARROW_DEFAULT_MEMORY_POOL`` does not choose one), else arrow's default.

    Measured with ``benchmarks/read_speed.py``'s file (5M lines) in fresh processes on a 2-core
    VM: with arrow's default (mimalloc) the read took 0.85 s median (0.53-0.90; most of it the
    kernel clearing fresh huge pages), with jemalloc 0.54 s (0.50-0.58) and 614 MB peak against
    746 MB. jemalloc hands freed blocks back to the next ones (the parser's per-block buffers,
    the casts' per-chunk results) instead of fresh memory.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return pa.default_memory_pool()
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc
        return pa.default_memory_pool()


class _Decline(Exception):
    """The file needs the text reader (same result, or the error it names, only slower)."""


def load(raw: bytes, *, sep: str | None, header: bool | None, columns: ColumnSpec,
         scale: tuple[float, float] | None, duplicates: DuplicatePolicy, source: str, name: str) -> Ratings | None:
    """The ratings of a rating file's bytes, or None when the text reader must read them.

    Raises:
        DataError: the text reader's error, naming the file and the line.
    """
    try:
        return _Reader(raw, sep=sep, header=header, columns=columns, scale=scale, duplicates=duplicates,
                       source=source, name=name).read()
    except _Decline:
        return None


class _Reader:
    """One reading of one file (the options, the bytes, and where the data lines start)."""

    def __init__(self, raw: bytes, *, sep: str | None, header: bool | None, columns: ColumnSpec,
                 scale: tuple[float, float] | None, duplicates: DuplicatePolicy, source: str, name: str):
        self.raw = raw
        self.options: dict[str, Any] = dict(sep=sep, header=header, columns=columns, scale=scale,
                                            duplicates=duplicates, source=source, name=name)
        self.source = source

    # ----------------------------------------------------------------- the steps
    def read(self) -> Ratings:
        raw = self.raw
        start = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
        present, ascii_only = _scan(raw, b'\x00"\rxX')
        if raw.startswith((b"\xfe\xff", b"\xff\xfe")) or b"\x00" in present or b'"' in present:
            raise _Decline
        if not ascii_only and not _valid_utf8(raw):
            raise _Decline
        self.hex_possible = b"x" in present or b"X" in present
        if b"\r" in present:
            raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # line numbers unchanged

        pos, line_no = start, 1  # the first non-blank line
        while True:
            end = raw.find(b"\n", pos)
            end = len(raw) if end < 0 else end
            first_line = raw[pos:end].decode("utf-8")
            if first_line.strip():
                break
            if end == len(raw) or line_no >= _LEADING_BLANK_LINES:
                raise _Decline
            pos, line_no = end + 1, line_no + 1
        self.first_line, self.first_no = first_line, line_no

        sep = self.options["sep"]
        if sep is None:
            try:
                sep = sniff_separator(first_line)
            except DataError as exc:
                raise DataError(exc.problem, source=self.source, line=line_no) from None
        if not isinstance(sep, str) or sep in ("", " ") or any(c in sep for c in '\n\r"'):
            raise _Decline
        fields = _split_plain(first_line, sep)
        width = len(fields)
        if width < 2 or (width > 3 and not fields[-1].strip()):
            raise _Decline  # too few fields, or perhaps a trailing separator on every line
        self.sep, self.width = sep, width

        delimiter = sep.encode("utf-8")
        self.spare: bytes | None = None
        if len(delimiter) > 1:  # arrow splits on one byte: put an unused one in the separator's place
            self.spare = next((bytes([b]) for b in _SPARE_SEPARATORS if bytes([b]) not in raw), None)
            if self.spare is None:
                raise _Decline
            # a separator holds no line end, so replacing it moves the first line's ends by its count
            pos, end = (len(raw[:k].replace(delimiter, self.spare)) for k in (pos, end))
            raw = raw.replace(delimiter, self.spare)
            delimiter = self.spare
        self.raw, self.delimiter = raw, delimiter.decode("latin-1")
        has_data = _NOT_BLANK.search(raw, end + 1) is not None

        try:
            header, positions = _layout([f.strip() for f in fields], width, self.options["header"],
                                        self.options["columns"], self.source, line_no, has_data=has_data)
        except DataError:
            if not self._same_field_counts(end + 1):
                raise _Decline from None  # the text reader names the line with other fields first
            raise
        data_start = end + 1 if header else pos
        self.rows = _RowLines(raw, data_start, line_no + 1 if header else line_no)
        return self._convert(data_start, positions)

    def _convert(self, data_start: int, positions: dict[str, int]) -> Ratings:
        roles = list(positions)
        if len(set(positions.values())) < len(roles):
            raise _Decline  # one column in two roles
        # ids come as text (the canonical-integer rule needs it); arrow's int64 reading takes hex
        # (0x1f), which the rules do not take for a whole number, so timestamps too when any x is there
        typed = {"user": pa.string(), "item": pa.string(), "rating": pa.float64(),
                 "timestamp": pa.string() if self.hex_possible else pa.int64()}
        try:
            table = self._arrow(data_start, positions, {role: typed[role] for role in roles})
        except pa.ArrowInvalid:  # a value arrow does not read as a number (or a bad line): as text
            try:
                table = self._arrow(data_start, positions, {role: pa.string() for role in roles})
            except pa.ArrowInvalid:
                raise _Decline from None  # e.g. another number of fields: the text reader names the line
        if table.num_rows == 0:
            raise _Decline
        columns = {role: table.column(k) for k, role in enumerate(roles)}
        del table
        # the columns side by side (arrow and numpy let go of the GIL); the errors in the text
        # reader's order: user ids, item ids, ratings, timestamps
        with ThreadPoolExecutor(max_workers=2) as pool:
            user_ids = pool.submit(self._ids, columns.pop("user"))
            item_ids = pool.submit(self._ids, columns.pop("item"))
            values = pool.submit(self._floats, columns.pop("rating"))
            timestamps = pool.submit(self._wholes, columns.pop("timestamp")) if "timestamp" in positions else None
            (user_vocab, users), (item_vocab, items) = user_ids.result(), item_ids.result()
            values = values.result()
            timestamps = timestamps.result() if timestamps is not None else None
        return Ratings.from_indices(
            users, items, values, user_vocab, item_vocab, timestamps=timestamps, scale=self.options["scale"],
            duplicates=self.options["duplicates"], name=self.options["name"], line_numbers=self.rows,
        )

    def _arrow(self, data_start: int, positions: dict[str, int], types: dict[str, pa.DataType]) -> pa.Table:
        """The role columns of the data lines, in the order of ``positions``."""
        names = [f"f{k}" for k in range(self.width)]
        include = [names[positions[role]] for role in positions]
        return pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(self.raw)[data_start:]),
            read_options=pacsv.ReadOptions(column_names=names, block_size=_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=self.delimiter, quote_char=False, escape_char=False,
                                              double_quote=False, newlines_in_values=False, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types={names[positions[role]]: t for role, t in types.items()}, include_columns=include,
                null_values=[], true_values=[], false_values=[], strings_can_be_null=False,
                quoted_strings_can_be_null=False, check_utf8=False),
            memory_pool=_memory_pool(),
        )

    def _same_field_counts(self, data_start: int) -> bool:
        """Whether every data line has the first line's number of fields (arrow checks it)."""
        try:
            self._arrow(data_start, {"user": 0}, {"user": pa.string()})
        except pa.ArrowInvalid:
            return False
        return True

    # ----------------------------------------------------------------- the columns
    def _ids(self, column: pa.ChunkedArray) -> tuple[Vocabulary, np.ndarray]:
        """The vocabulary and the index of each id of a text column (rules: stripped, not
        empty, int64 when every id is a canonical integer)."""
        ints = _canonical_ints(column)
        if ints is not None:
            uniques, codes = factorize(ints, overwrite=True)
            return Vocabulary._sorted_unique(uniques), codes
        encoded = pc.dictionary_encode(column)  # one dictionary, shared by the chunks
        chunks = [c for c in encoded.chunks if len(c)]
        dictionary = chunks[-1].dictionary
        if any(len(c.dictionary) != len(dictionary) for c in chunks):
            encoded = encoded.unify_dictionaries()
            chunks = [c for c in encoded.chunks if len(c)]
            dictionary = chunks[-1].dictionary
        codes = np.concatenate([c.indices.to_numpy() for c in chunks]).astype(np.int64)
        texts = [text.strip() for text in dictionary.to_pylist()]
        empty = [k for k, text in enumerate(texts) if not text]
        if empty:
            self._fail(int(np.argmax(np.isin(codes, empty))))
        uniques, remap = factorize(raw_ids(texts, int_texts=True))  # stripping may make two texts one id
        return Vocabulary._sorted_unique(uniques), np.take(remap, codes)

    def _floats(self, column: pa.ChunkedArray) -> np.ndarray:
        """Ratings: finite numbers, in the text reader's syntax."""
        parts, offset = [], 0
        for chunk in column.chunks:
            if pa.types.is_floating(chunk.type):
                values = chunk.to_numpy()
            else:
                try:
                    values = pc.cast(chunk, pa.float64()).to_numpy()  # accepts no more than Python's float()
                except pa.ArrowInvalid:
                    k = _first_uncast(chunk, pa.float64())
                    head = pc.cast(chunk.slice(0, k), pa.float64()).to_numpy()
                    if np.all(np.isfinite(head)) and not np.isfinite(_to_floats([chunk[k].as_py().strip()])[0]):
                        self._fail(offset + k)  # the first bad one; else arrow refused a good one (" 3")
                    values = _to_floats([text.strip() for text in chunk.to_pylist()])
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                self._fail(offset + int(bad[0]))
            parts.append(values)
            offset += len(chunk)
        return np.concatenate(parts) if parts else np.empty(0)

    def _wholes(self, column: pa.ChunkedArray) -> np.ndarray:
        """Timestamps: whole numbers (int64)."""
        parts, offset = [], 0
        for chunk in column.chunks:
            values = None
            if pa.types.is_integer(chunk.type):
                values = chunk.to_numpy()
            elif not _holds(chunk, b"xX"):  # arrow's cast reads hex, the rules do not
                try:
                    values = pc.cast(chunk, pa.int64()).to_numpy()
                except pa.ArrowInvalid:
                    pass
            if values is None:
                if not _holds(chunk, b"xX"):  # find the first value arrow refuses without Python
                    k = _first_uncast(chunk, pa.int64())
                    if k < len(chunk) and _to_ints([chunk[k].as_py().strip()])[1] is not None:
                        self._fail(offset + k)
                values, k = _to_ints([text.strip() for text in chunk.to_pylist()])
                if k is not None:
                    self._fail(offset + k)
            parts.append(values)
            offset += len(chunk)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    # ----------------------------------------------------------------- errors
    def _fail(self, row: int) -> NoReturn:
        """Raise the text reader's error for the data line of ``row``: it reads the first line,
        blank lines, and that line, which keeps its number. Declines when that excerpt reads
        without an error at that line (e.g. the line is blank by the text rules)."""
        line = self.rows[row]
        text = self.rows.text(line)
        if self.spare is not None:
            text = text.replace(self.spare.decode("latin-1"), self.sep)
        excerpt = "\n" * (self.first_no - 1) + self.first_line + "\n"
        if line > self.first_no:
            excerpt += "\n" * (line - self.first_no - 1) + text + "\n"
        try:
            parse_ratings_text(excerpt, **self.options)
        except DataError as exc:
            if exc.line == line:
                raise
        raise _Decline


class _RowLines:
    """The line number of each data row arrow returns (it skips empty lines), found with one
    pass over the bytes when an error first needs one; and the text of a line."""

    def __init__(self, raw: bytes, start: int, first_line: int):
        self.raw, self.start, self.first_line = raw, start, first_line
        self._starts: np.ndarray | None = None
        self._nonempty: np.ndarray | None = None

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        if self._starts is None:
            ends = np.flatnonzero(np.frombuffer(self.raw, dtype=np.uint8)[self.start :] == 0x0A) + self.start
            starts = np.concatenate(([self.start], ends + 1))
            ends = np.append(ends, len(self.raw))
            self._starts, self._nonempty = starts, np.flatnonzero(ends > starts)
        assert self._nonempty is not None
        return self._starts, self._nonempty

    def __getitem__(self, row: Any) -> int:
        return self.first_line + int(self._index()[1][int(row)])

    def text(self, line: int) -> str:
        starts, _ = self._index()
        k = line - self.first_line
        begin = int(starts[k])
        end = self.raw.find(b"\n", begin)
        return self.raw[begin : end if end >= 0 else len(self.raw)].decode("utf-8")


# --------------------------------------------------------------------------- helpers
def _first_uncast(chunk: pa.Array, to: pa.DataType) -> int:
    """Position of the first text arrow cannot cast (``len(chunk)`` if none), by halving: the
    casts add up to about twice the chunk, not one Python call per value."""
    lo, hi = 0, len(chunk)  # all before lo cast; the first failure, if any, is before hi
    try:
        pc.cast(chunk, to)
        return len(chunk)
    except pa.ArrowInvalid:
        pass
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(chunk.slice(lo, mid - lo), to)
            lo = mid
        except pa.ArrowInvalid:
            hi = mid
    return lo


def _scan(raw: bytes, wanted: bytes, window: int = 1 << 18) -> tuple[set[bytes], bool]:
    """Which of the bytes ``wanted`` occur in ``raw``, and whether it is all ASCII. One pass over
    windows that stay in the cache: the same tests on the whole file, one after another, read
    it from memory once each (2.5x slower on 5M lines)."""
    present: set[bytes] = set()
    ascii_only = True
    singles = [wanted[k : k + 1] for k in range(len(wanted))]
    for begin in range(0, len(raw), window):
        piece = raw[begin : begin + window]
        ascii_only = ascii_only and piece.isascii()
        present.update(b for b in singles if b not in present and b in piece)
    return present, ascii_only


def _valid_utf8(raw: bytes, step: int = 1 << 24) -> bool:
    """Whether the bytes are UTF-8 (checked piece by piece: no copy of the whole text)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(raw)
    try:
        for k in range(0, len(raw), step):
            decoder.decode(view[k : k + step])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _buffers(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The offsets (n + 1) and the bytes of a text array, as numpy views."""
    buffers = chunk.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32, count=len(chunk) + 1, offset=chunk.offset * 4)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.empty(0, np.uint8)
    return offsets, data


def _holds(chunk: pa.Array, characters: bytes) -> bool:
    offsets, data = _buffers(chunk)
    body = data[offsets[0] : offsets[-1]]
    return bool(np.isin(body, np.frombuffer(characters, dtype=np.uint8)).any())


def _canonical_ints(column: pa.ChunkedArray) -> np.ndarray | None:
    """The ids of a text column as int64 when every one is written as ``str(int)`` writes it
    (``196``, ``-3``; not ``007``, ``-0``, ``+3``, `` 5``, ``1_000``, ``0x1f``); else None.

    The rule of :func:`dlfm.data.ratings.raw_ids` (``int_texts``), on arrow's buffers: routing
    millions of ids through Python would cost seconds; the differential tests hold the two equal.
    arrow's cast takes an optional minus and digits (or ``0x`` and hex digits) and refuses values
    outside int64; what it takes is canonical unless it opens with ``0`` (or ``-0``) and goes on.
    """
    out = np.empty(len(column), dtype=np.int64)  # one array, filled chunk by chunk: no concatenation
    offset, pool = 0, _memory_pool()
    for chunk in column.chunks:
        if not len(chunk):
            continue
        try:
            out[offset : offset + len(chunk)] = pc.cast(chunk, pa.int64(), memory_pool=pool).to_numpy()
        except pa.ArrowInvalid:
            return None
        offsets, data = _buffers(chunk)
        starts = offsets[:-1]
        special = np.flatnonzero(np.take(data, starts) <= 48)  # opening with "-" (45) or "0" (48)
        if len(special):
            at = starts[special]
            opening, long = data[at], offsets[special + 1] - at > 1
            if np.any(((opening == 48) & long) | ((opening == 45) & (data[np.minimum(at + 1, len(data) - 1)] == 48))):  # 007, 0x1f, -0, -07
                return None
        offset += len(chunk)
    return out if offset else None

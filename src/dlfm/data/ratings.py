"""The one ratings container of dlfm, and the vocabulary that maps raw ids to indices.

Raw user and item ids (whatever the file says: ``196``, ``"alice"``) live only at the edges.
:class:`Vocabulary` maps them once to contiguous indices ``0..n-1``; :class:`Ratings` holds
index arrays, the rating values and the sizes, is immutable, and is validated when built.
Every split returns new containers that share the same vocabularies, and every fitted model
keeps the vocabularies, so the indices mean the same thing everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import scipy.sparse as sp

from dlfm.errors import DataError, UnknownIdError

DuplicatePolicy = Literal["error", "last", "mean"]
_INT_TEXT = re.compile(r"[+-]?[0-9]+")


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (for messages: ``1``, not ``np.int64(1)``)."""
    return value.item() if isinstance(value, np.generic) else value


_INT64_MAX = np.iinfo(np.int64).max
# a text numpy takes for an int64 that ``str(int)`` would not write: 007, -07, -0 (one text a line)
_NON_CANONICAL_INT = re.compile(r"^(?:-?0[0-9]|-0$)", re.MULTILINE)
_WHITESPACE = re.compile(r"[^\S\n]")


def raw_ids(values: Any, *, int_texts: bool = False) -> np.ndarray:
    """Raw ids as one flat array: int64 when every id is an integer, else strings (an object
    array of ``str``). The one place the rules live, for every reader:

    - integers (Python or numpy, not bools) are int64; if one does not fit (an unsigned id
      beyond int64), every id is the string of its digits;
    - floats are int64 when every one is a whole number below 2**53 in size, else each is
      the string ``repr`` writes (``"1.5"``, ``"1.0"``);
    - bools and any other value are the string ``str`` writes (``"True"``);
    - strings are kept as written; with ``int_texts`` (ids read as text: a file's fields, a
      DataFrame's text column) they are int64 when every one is written as ``str(int)``
      writes an int64 (``196``, ``-3``; not ``007``, ``-0``, ``+3``, `` 5``, ``1_000``).

    A column is one kind: one id that is not an integer makes every id of it a string.
    ``values``: a sequence, a numpy array (flattened) or a pandas Series.
    """
    if isinstance(values, (list, tuple)) and set(map(type, values)) <= {str}:
        return _text_ids(list(values), int_texts)  # no fixed-width numpy copy of the strings
    arr = _as_array(values)
    kind = arr.dtype.kind
    if kind in "iu":
        if kind == "u" and len(arr) and int(arr.max()) > _INT64_MAX:
            return _strings([str(v) for v in arr.tolist()])
        return arr.astype(np.int64)
    if kind == "f":
        if np.all(arr == np.round(arr)) and np.all(np.abs(arr) < 2.0**53):
            return arr.astype(np.int64)
        return _strings([repr(v) for v in arr.tolist()])
    items = arr.tolist()
    if kind == "O" and items and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                                     for v in items):
        if all(-_INT64_MAX - 1 <= int(v) <= _INT64_MAX for v in items):
            return np.array([int(v) for v in items], dtype=np.int64)
        return _strings([str(int(v)) for v in items])
    return _text_ids([v if isinstance(v, str) else str(v) for v in items], int_texts)


def _as_array(values: Any) -> np.ndarray:
    """A flat numpy array of ids; of a pandas Series: its numbers (a nullable float column as
    float64), else its Python values (``str`` of a date is what a reader of text would see)."""
    if not isinstance(values, np.ndarray) and hasattr(values, "to_numpy") and hasattr(values, "dtype"):
        kind = values.dtype.kind  # other Series (text, dates, categories) as their Python values
        arr = values.to_numpy(dtype=np.float64 if kind == "f" else None if kind in "iub" else object)
    else:
        arr = np.asarray(values)
    return arr.reshape(-1) if arr.ndim != 1 else arr


def _text_ids(texts: list[str], int_texts: bool) -> np.ndarray:
    """Ids written as text: int64 when ``int_texts`` and every one is a canonical integer (as
    ``str(int)`` writes it), else the strings."""
    if int_texts:
        try:
            ints = np.array(texts, dtype=np.int64)
        except (ValueError, OverflowError):
            pass
        else:
            joined = "\n".join(texts)  # numpy took every one for an integer; was it canonical?
            if (joined.isascii() and "_" not in joined and "+" not in joined and not _WHITESPACE.search(joined)
                    and not _NON_CANONICAL_INT.search(joined)):
                return ints
    return _strings(texts)


def _strings(texts: list[str]) -> np.ndarray:
    """An object array of the strings (not ``astype(str)``: a fixed-width copy would take the
    longest id's size per id)."""
    out = np.empty(len(texts), dtype=object)
    out[:] = texts
    return out


def _increasing(keys: np.ndarray, probe: int = 1024) -> bool:
    """Whether the keys are strictly increasing; a probe of the first ones answers "no" at once
    for keys in no order."""
    head = keys[:probe]
    return bool(np.all(head[1:] > head[:-1])) and bool(np.all(keys[1:] > keys[:-1]))


def _quote(value: Any, limit: int = 60) -> str:
    """``repr`` of a value for a message, cut to about ``limit`` characters (a 200 MB field must
    not make a 200 MB message)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    return repr(value)


def _check_scale(values: np.ndarray, scale: tuple[float, float] | None, name: str, where: Any) -> None:
    """Every rating inside the declared (lowest, highest) scale, if one is declared."""
    if scale is None:
        return
    try:
        lo, hi = float(scale[0]), float(scale[1])
    except (TypeError, ValueError, IndexError):
        raise DataError(f"the rating scale must be (lowest, highest), not {scale!r}", source=name) from None
    if not lo <= hi:
        raise DataError(f"the declared rating scale [{lo:g}, {hi:g}] is empty", source=name)
    out = np.flatnonzero((values < lo) | (values > hi))
    if len(out):
        raise DataError(f"rating {values[out[0]]:g} is outside the declared scale [{lo:g}, {hi:g}]",
                        source=name, line=where(out[0]))


def _timestamps(timestamps: Any, n: int, name: str) -> np.ndarray | None:
    """Timestamps as int64, checked to be whole numbers, one per rating."""
    if timestamps is None:
        return None
    ts = np.asarray(timestamps)
    if ts.dtype.kind == "f":
        if not (np.all(np.isfinite(ts)) and np.all(ts == np.round(ts)) and np.all(np.abs(ts) < 2.0**63)):
            raise DataError("timestamps must be whole numbers", source=name)
    elif ts.dtype.kind not in "iub":
        raise DataError("timestamps must be whole numbers", source=name)
    ts = ts.astype(np.int64, copy=False).reshape(-1)
    if len(ts) != n:
        raise DataError("timestamps differ in length from ratings", source=name)
    return ts


class Vocabulary:
    """A bijection between raw ids and contiguous indices ``0..len-1``.

    Raw ids are integers when every id of the source is an integer, strings otherwise.
    Look-ups accept either form where it is unambiguous (``"196"`` finds the integer id 196),
    since ids typed on a command line always arrive as strings.
    """

    def __init__(self, ids: Iterable[Any]):
        ids = raw_ids(ids if isinstance(ids, np.ndarray) else list(ids))
        self.kind = "int" if ids.dtype.kind == "i" else "str"
        self.ids: np.ndarray = _readonly(ids) if ids.dtype != object else ids
        self._lookup: dict[Any, int] | None = None
        if len(self._index) != len(ids):
            raise DataError("vocabulary ids are not unique")

    @classmethod
    def _sorted_unique(cls, ids: np.ndarray) -> "Vocabulary":
        """A vocabulary of ids known to be distinct and sorted (from :func:`factorize`); the
        raw-id dictionary is then built only when a look-up needs it."""
        vocab = cls.__new__(cls)
        vocab.kind = "int" if ids.dtype.kind in "iu" else "str"
        vocab.ids = _readonly(ids.astype(np.int64)) if vocab.kind == "int" else ids
        vocab._lookup = None
        return vocab

    @property
    def _index(self) -> dict[Any, int]:
        if self._lookup is None:
            self._lookup = {raw: k for k, raw in enumerate(self.ids.tolist())}
        return self._lookup

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Vocabulary)
            and self.kind == other.kind
            and len(self) == len(other)
            and bool(np.all(self.ids == other.ids))
        )

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} {self.kind} ids)"

    def _coerce(self, raw: Any) -> Any:
        if isinstance(raw, np.generic):
            raw = raw.item()
        if self.kind == "int":
            if isinstance(raw, (int, np.integer)) and not isinstance(raw, bool):
                return int(raw)
            if isinstance(raw, str):
                text = raw.strip()
                # ASCII digits only: int() would also take "1_000" and other scripts' digits
                if not (_INT_TEXT.fullmatch(text) and len(text) <= 20):
                    return None
                return int(text)
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            return None
        return str(raw)

    def __contains__(self, raw: Any) -> bool:
        return self._coerce(raw) in self._index

    def index(self, raw: Any, *, what: str = "id") -> int:
        """Index of one raw id; raises :class:`UnknownIdError` when absent."""
        k = self._index.get(self._coerce(raw), -1)
        if k < 0:
            raise UnknownIdError(f"unknown {what} {raw!r}")
        return k

    def lookup(self, raws: Iterable[Any]) -> np.ndarray:
        """Indices of many raw ids, ``-1`` where an id is unknown."""
        get = self._index.get
        coerce = self._coerce
        return np.fromiter((get(coerce(r), -1) for r in raws), dtype=np.int64)

    def raw(self, indices: np.ndarray | Sequence[int]) -> list[Any]:
        """Raw ids of the given indices, as plain Python values."""
        return self.ids[np.asarray(indices, dtype=np.int64)].tolist()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "ids": self.ids.tolist()}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Vocabulary":
        ids = obj["ids"]
        if obj["kind"] == "int":
            return cls(np.asarray(ids, dtype=np.int64))
        return cls(np.asarray([str(x) for x in ids], dtype=object))

    @classmethod
    def build(cls, raw: np.ndarray) -> tuple["Vocabulary", np.ndarray]:
        """Vocabulary of the distinct raw ids (sorted) and the index of each element."""
        uniques, codes = factorize(np.asarray(raw))
        return cls._sorted_unique(uniques), codes


def factorize(values: np.ndarray, *, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct values of a 1-D array and the int64 index of each element in them.

    Vectorised: integers spanning a range not much wider than their number are counted in a
    table over the range (O(n)); other integers and strings go through pandas' hash table
    (``pd.factorize(sort=True)``), so only the distinct values are sorted.

    ``overwrite=True`` (a writable int64 array): the indices are written into ``values``
    itself, which is returned as the index array, so no second array of that size is made.
    """
    values = values.reshape(-1)
    if values.dtype.kind in "iu" and len(values):
        in_place = overwrite and values.dtype == np.int64 and values.flags.writeable
        values = values.astype(np.int64, copy=False)
        lo, hi = int(values.min()), int(values.max())
        base = 0 if 0 <= lo and hi < 4 * len(values) + 1024 else lo  # ids from 0 or 1 need no shift
        if hi - base < 4 * len(values) + 1024:
            offsets = values - base if base and not in_place else values
            if base and in_place:
                np.subtract(values, base, out=values)
            present = np.bincount(offsets, minlength=hi - base + 1) > 0
            if present[lo - base :].all():  # every value of lo..hi occurs: the index is value - lo
                uniques = np.arange(lo, hi + 1, dtype=np.int64)
                if not in_place:
                    return uniques, values - lo
                if lo - base:
                    np.subtract(values, lo - base, out=values)
                return uniques, values
            rank = np.cumsum(present, dtype=np.int64) - 1
            uniques = np.flatnonzero(present) + base
            if not in_place:
                codes = np.take(rank, offsets)  # take: 4-6x faster than rank[offsets] on millions of indices
                del offsets, rank
                return uniques, codes
            step = 1 << 16  # in place, block by block (take into its own indices would buffer them all)
            block = np.empty(min(step, len(values)), dtype=np.int64)
            for start in range(0, len(values), step):
                piece = values[start : start + step]
                np.take(rank, piece, out=block[: len(piece)])
                piece[:] = block[: len(piece)]
            return uniques, values
    import pandas as pd

    codes, uniques = pd.factorize(values, sort=True)
    uniques = np.asarray(uniques)
    if uniques.dtype.kind not in "iu" and uniques.dtype != object:
        uniques = uniques.astype(object)
    return uniques, codes.astype(np.int64, copy=False)


@dataclass(frozen=True, eq=False)
class Ratings:
    """An immutable set of (user, item, rating) triples over fixed vocabularies.

    Attributes:
        users: int64 user indices, shape (n,).
        items: int64 item indices, shape (n,).
        ratings: float64 rating values, shape (n,).
        user_vocab, item_vocab: the raw-id vocabularies; ``n_users = len(user_vocab)``.
        scale: (lowest, highest) rating of the scale, declared or observed.
        timestamps: optional int64 times, shape (n,).
        name: where the data came from, for messages and model cards.

    No (user, item) pair appears twice. Users × items in every view: :meth:`csr` is the
    ``n_users × n_items`` matrix, :meth:`csc` the same matrix by columns.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    user_vocab: Vocabulary
    item_vocab: Vocabulary
    scale: tuple[float, float]
    timestamps: np.ndarray | None = None
    name: str = "ratings"
    _checked: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        users = np.asarray(self.users, dtype=np.int64).reshape(-1)
        items = np.asarray(self.items, dtype=np.int64).reshape(-1)
        ratings = np.asarray(self.ratings, dtype=np.float64).reshape(-1)
        if not (len(users) == len(items) == len(ratings)):
            raise DataError(
                f"users, items and ratings differ in length ({len(users)}, {len(items)}, {len(ratings)})",
                source=self.name,
            )
        if not self._checked:
            if len(users) and (users.min() < 0 or users.max() >= len(self.user_vocab)):
                raise DataError("user index outside the vocabulary", source=self.name)
            if len(items) and (items.min() < 0 or items.max() >= len(self.item_vocab)):
                raise DataError("item index outside the vocabulary", source=self.name)
            if not np.all(np.isfinite(ratings)):
                raise DataError("ratings contain NaN or infinite values", source=self.name)
            keys = users * len(self.item_vocab) + items
            if len(np.unique(keys)) != len(keys):
                raise DataError("duplicate (user, item) pairs", source=self.name)
        lo, hi = float(self.scale[0]), float(self.scale[1])
        if not lo <= hi:
            raise DataError(f"rating scale ({lo}, {hi}) is empty", source=self.name)
        object.__setattr__(self, "users", _readonly(users))
        object.__setattr__(self, "items", _readonly(items))
        object.__setattr__(self, "ratings", _readonly(ratings))
        object.__setattr__(self, "scale", (lo, hi))
        if self.timestamps is not None:
            ts = np.asarray(self.timestamps, dtype=np.int64).reshape(-1)
            if len(ts) != len(users):
                raise DataError("timestamps differ in length from ratings", source=self.name)
            object.__setattr__(self, "timestamps", _readonly(ts))
        object.__setattr__(self, "_checked", True)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_raw(
        cls,
        users: Sequence[Any] | np.ndarray,
        items: Sequence[Any] | np.ndarray,
        ratings: Sequence[float] | np.ndarray,
        *,
        timestamps: Sequence[int] | np.ndarray | None = None,
        scale: tuple[float, float] | None = None,
        user_vocab: Vocabulary | None = None,
        item_vocab: Vocabulary | None = None,
        duplicates: DuplicatePolicy = "error",
        name: str = "ratings",
        line_numbers: np.ndarray | None = None,
    ) -> "Ratings":
        """Build a container from raw ids, mapping them through (new or given) vocabularies.

        Args:
            duplicates: what to do with a (user, item) pair rated twice: ``"error"`` (default,
                names both lines), ``"last"`` keeps the later one, ``"mean"`` averages them.
            scale: the declared rating scale; every rating must lie inside it. When omitted,
                the observed (min, max).
            line_numbers: source line of each triple, for error messages.
        """
        if duplicates not in ("error", "last", "mean"):
            raise DataError(f"duplicates must be 'error', 'last' or 'mean', not {duplicates!r}", source=name)
        users = raw_ids(users)
        items = raw_ids(items)
        try:
            values = np.asarray(ratings, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise DataError("ratings must be numbers", source=name) from None
        n = len(values)
        if not (len(users) == len(items) == n):
            raise DataError("users, items and ratings differ in length", source=name)
        if n == 0:
            raise DataError("no ratings", source=name)
        where = (lambda k: int(line_numbers[k])) if line_numbers is not None else (lambda k: None)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise DataError(f"rating {values[bad[0]]!r} is not a finite number", source=name, line=where(bad[0]))
        _check_scale(values, scale, name, where)
        u_idx = cls._indices(users, user_vocab, "user", name, where)
        i_idx = cls._indices(items, item_vocab, "item", name, where)
        if user_vocab is None:
            user_vocab, u_idx = Vocabulary.build(users)
        if item_vocab is None:
            item_vocab, i_idx = Vocabulary.build(items)
        ts = _timestamps(timestamps, n, name)
        return cls._merge(u_idx, i_idx, values, ts, user_vocab, item_vocab, scale, duplicates, name, line_numbers)

    @classmethod
    def from_indices(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray,
        user_vocab: Vocabulary,
        item_vocab: Vocabulary,
        *,
        timestamps: np.ndarray | None = None,
        scale: tuple[float, float] | None = None,
        duplicates: DuplicatePolicy = "error",
        name: str = "ratings",
        line_numbers: Any = None,
    ) -> "Ratings":
        """Build a container from indices into given vocabularies (e.g. from a vectorised
        factorisation), with the checks and the duplicate policy of :meth:`from_raw`.

        ``line_numbers`` is anything indexable by position (an array, or an object computing a
        line only when an error needs one).
        """
        if duplicates not in ("error", "last", "mean"):
            raise DataError(f"duplicates must be 'error', 'last' or 'mean', not {duplicates!r}", source=name)
        u_idx = np.asarray(users, dtype=np.int64).reshape(-1)
        i_idx = np.asarray(items, dtype=np.int64).reshape(-1)
        values = np.asarray(ratings, dtype=np.float64).reshape(-1)
        n = len(values)
        if not (len(u_idx) == len(i_idx) == n):
            raise DataError("users, items and ratings differ in length", source=name)
        if n == 0:
            raise DataError("no ratings", source=name)
        for idx, vocab, what in ((u_idx, user_vocab, "user"), (i_idx, item_vocab, "item")):
            if idx.min() < 0 or idx.max() >= len(vocab):
                raise DataError(f"{what} index outside the vocabulary", source=name)
        where = (lambda k: int(line_numbers[k])) if line_numbers is not None else (lambda k: None)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise DataError(f"rating {values[bad[0]]!r} is not a finite number", source=name, line=where(bad[0]))
        _check_scale(values, scale, name, where)
        ts = _timestamps(timestamps, n, name)
        return cls._merge(u_idx, i_idx, values, ts, user_vocab, item_vocab, scale, duplicates, name, line_numbers)

    @classmethod
    def _merge(cls, u_idx: np.ndarray, i_idx: np.ndarray, values: np.ndarray, ts: np.ndarray | None,
               user_vocab: Vocabulary, item_vocab: Vocabulary, scale: tuple[float, float] | None,
               duplicates: DuplicatePolicy, name: str, line_numbers: Any) -> "Ratings":
        """The container, after the duplicate policy; indices and values are already checked."""
        where = (lambda k: int(line_numbers[k])) if line_numbers is not None else (lambda k: None)
        sorted_keys = u_idx * len(item_vocab) + i_idx  # one int64 key per (user, item) pair
        if not _increasing(sorted_keys):  # a file sorted by user, then item (MovieLens') needs no sort
            sorted_keys.sort()  # in place: a plain sort finds out whether any pair repeats
        if bool(np.any(sorted_keys[1:] == sorted_keys[:-1])):
            keys = u_idx * len(item_vocab) + i_idx
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            dup = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
            if duplicates == "error":
                first, second = order[dup[0]], order[dup[0] + 1]
                lines = ""
                if line_numbers is not None:
                    lines = f" (lines {int(line_numbers[first])} and {int(line_numbers[second])})"
                user = _quote(_plain(user_vocab.ids[u_idx[first]]))
                item = _quote(_plain(item_vocab.ids[i_idx[first]]))
                raise DataError(
                    f"user {user} rated item {item} twice{lines}; "
                    "pass duplicates='last' or 'mean' (CLI: --duplicates) to merge",
                    source=name,
                    line=where(second),
                )
            uniq, start = np.unique(sorted_keys, return_index=True)
            if duplicates == "last":
                end = np.append(start[1:], len(sorted_keys)) - 1
                keep = order[end]
                u_idx, i_idx, values = u_idx[keep], i_idx[keep], values[keep]
                ts = None if ts is None else ts[keep]
            elif duplicates == "mean":
                group = np.searchsorted(uniq, keys)
                sums = np.bincount(group, weights=values, minlength=len(uniq))
                counts = np.bincount(group, minlength=len(uniq))
                keep = order[start]
                u_idx, i_idx = u_idx[keep], i_idx[keep]
                values = sums / counts  # keep[g] is the first pair of group g, in uniq's order
                ts = None if ts is None else ts[keep]
            del keys
        del sorted_keys
        if scale is None:
            scale = (float(values.min()), float(values.max()))
        # checked: indices inside the vocabularies, finite values, no pair twice
        return cls(u_idx, i_idx, values, user_vocab, item_vocab, scale, ts, name, _checked=True)

    @staticmethod
    def _indices(raw: np.ndarray, vocab: Vocabulary | None, what: str, name: str, where: Any) -> np.ndarray:
        if vocab is None:
            return np.empty(0, dtype=np.int64)
        idx = vocab.lookup(raw.tolist())
        missing = np.flatnonzero(idx < 0)
        if len(missing):
            raise DataError(f"{what} {_quote(_plain(raw[missing[0]]))} is not in the vocabulary", source=name, line=where(missing[0]))
        return idx

    # ----------------------------------------------------------------- views
    def __len__(self) -> int:
        return len(self.ratings)

    def __repr__(self) -> str:
        return f"Ratings({self.name!r}: {len(self)} ratings, {self.n_users} users, {self.n_items} items)"

    @property
    def n_users(self) -> int:
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        return len(self.item_vocab)

    @cached_property
    def global_mean(self) -> float:
        return float(self.ratings.mean()) if len(self) else 0.0

    @cached_property
    def user_counts(self) -> np.ndarray:
        """Number of ratings of each user, shape (n_users,)."""
        return _readonly(np.bincount(self.users, minlength=self.n_users))

    @cached_property
    def item_counts(self) -> np.ndarray:
        """Number of ratings of each item, shape (n_items,)."""
        return _readonly(np.bincount(self.items, minlength=self.n_items))

    @cached_property
    def density(self) -> float:
        cells = self.n_users * self.n_items
        return len(self) / cells if cells else 0.0

    def csr(self) -> sp.csr_matrix:
        """The ``n_users × n_items`` rating matrix, compressed by rows (users)."""
        return self._csr

    def csc(self) -> sp.csc_matrix:
        """The ``n_users × n_items`` rating matrix, compressed by columns (items)."""
        return self._csc

    @cached_property
    def _csr(self) -> sp.csr_matrix:
        m = sp.csr_matrix((self.ratings, (self.users, self.items)), shape=(self.n_users, self.n_items))
        m.sort_indices()
        return m

    @cached_property
    def _csc(self) -> sp.csc_matrix:
        m = self._csr.tocsc()
        m.sort_indices()
        return m

    # ----------------------------------------------------------------- derived containers
    def subset(self, selection: np.ndarray, *, name: str | None = None) -> "Ratings":
        """A new container with the selected triples (boolean mask or index array)."""
        sel = np.asarray(selection)
        return Ratings(
            self.users[sel],
            self.items[sel],
            self.ratings[sel],
            self.user_vocab,
            self.item_vocab,
            self.scale,
            None if self.timestamps is None else self.timestamps[sel],
            name or self.name,
            _checked=True,
        )

    def in_vocabularies(self, user_vocab: Vocabulary, item_vocab: Vocabulary, *, name: str | None = None) -> "Ratings":
        """The same ratings indexed by other (larger) vocabularies, e.g. a fold's ratings by
        the full data set's; one lookup per distinct id, not per rating."""
        maps = []
        for vocab, target, what in ((self.user_vocab, user_vocab, "user"), (self.item_vocab, item_vocab, "item")):
            mapping = target.lookup(vocab.ids.tolist())
            missing = np.flatnonzero(mapping < 0)
            if len(missing):
                raise DataError(f"{what} {_plain(vocab.ids[missing[0]])!r} is not in the vocabulary", source=name or self.name)
            maps.append(mapping)
        return Ratings(maps[0][self.users], maps[1][self.items], self.ratings, user_vocab, item_vocab, self.scale,
                       self.timestamps, name or self.name, _checked=True)

    def with_ratings(self, values: np.ndarray, *, scale: tuple[float, float] | None = None, name: str | None = None) -> "Ratings":
        """The same (user, item) pairs with other values (e.g. binarized)."""
        return Ratings(
            self.users, self.items, values, self.user_vocab, self.item_vocab,
            scale if scale is not None else self.scale, self.timestamps, name or self.name,
        )

    def raw_users(self) -> list[Any]:
        return self.user_vocab.raw(self.users)

    def raw_items(self) -> list[Any]:
        return self.item_vocab.raw(self.items)

    def to_dataframe(self) -> Any:
        """A pandas DataFrame with raw ids: columns user, item, rating[, timestamp]."""
        import pandas as pd

        frame = {"user": self.user_vocab.ids[self.users], "item": self.item_vocab.ids[self.items], "rating": self.ratings}
        if self.timestamps is not None:
            frame["timestamp"] = self.timestamps
        return pd.DataFrame(frame)

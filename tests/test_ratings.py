"""The ratings container and the vocabulary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlfm.data.io import from_dataframe, load_ratings
from dlfm.data.ratings import Ratings, Vocabulary, raw_ids
from dlfm.errors import DataError, UnknownIdError


def test_vocabulary_round_trip_json():
    for ids in (np.array([5, 2, 9]), np.array(["b", "a"], dtype=object)):
        vocab = Vocabulary(ids)
        again = Vocabulary.from_json(vocab.to_json())
        assert again == vocab
        assert again.raw(np.arange(len(ids))) == list(ids)


def test_vocabulary_lookup_and_unknown():
    vocab = Vocabulary(np.array([10, 20]))
    assert vocab.lookup([20, "10", 30, "x"]).tolist() == [1, 0, -1, -1]
    with pytest.raises(UnknownIdError, match="unknown user 30"):
        vocab.index(30, what="user")


def test_container_is_immutable(tiny):
    with pytest.raises(ValueError):
        tiny.ratings[0] = 1.0
    with pytest.raises(AttributeError):
        tiny.users = np.zeros(3)  # type: ignore[misc]


def test_sizes_and_views(tiny):
    assert (tiny.n_users, tiny.n_items, len(tiny)) == (4, 3, 8)
    dense = tiny.csr().toarray()
    assert dense.shape == (4, 3)  # users × items
    a, x = tiny.user_vocab.index("a"), tiny.item_vocab.index("x")
    assert dense[a, x] == 5
    assert np.array_equal(tiny.csc().toarray(), dense)
    assert tiny.user_counts.tolist() == [2, 2, 2, 2]
    assert tiny.global_mean == pytest.approx(27 / 8)


def test_subset_shares_vocabulary(tiny):
    part = tiny.subset(np.array([0, 1]))
    assert part.user_vocab is tiny.user_vocab and len(part) == 2 and part.n_users == 4


def test_invalid_construction():
    v = Vocabulary(np.array([0, 1]))
    with pytest.raises(DataError, match="outside"):
        Ratings(np.array([0, 2]), np.array([0, 0]), np.array([1.0, 2.0]), v, v, (1, 5))
    with pytest.raises(DataError, match="duplicate"):
        Ratings(np.array([0, 0]), np.array([1, 1]), np.array([1.0, 2.0]), v, v, (1, 5))
    with pytest.raises(DataError, match="NaN"):
        Ratings(np.array([0]), np.array([1]), np.array([np.nan]), v, v, (1, 5))


def test_in_vocabularies_reindexes_by_the_larger_vocabularies():
    full = Ratings.from_raw(["a", "b", "c"], ["x", "y", "z"], [1.0, 2.0, 3.0])
    part = Ratings.from_raw(["c", "a"], ["z", "x"], [3.0, 1.0])
    moved = part.in_vocabularies(full.user_vocab, full.item_vocab, name="part")
    assert moved.raw_users() == ["c", "a"] and moved.raw_items() == ["z", "x"]
    assert list(moved.users) == [full.user_vocab.index("c"), full.user_vocab.index("a")]
    assert list(moved.ratings) == [3.0, 1.0] and moved.name == "part"
    stranger = Ratings.from_raw(["q"], ["x"], [1.0])
    with pytest.raises(DataError, match="user 'q' is not in the vocabulary"):
        stranger.in_vocabularies(full.user_vocab, full.item_vocab)


@pytest.mark.parametrize(
    ("values", "int_texts", "expected", "kind"),
    [
        ([196, -3], False, [196, -3], "i"),  # Python ints
        (np.array([3, 4], dtype=np.uint8), False, [3, 4], "i"),  # numpy ints
        ([np.int64(5), 7], False, [5, 7], "i"),
        (np.array([2**64 - 1, 1], dtype=np.uint64), False, ["18446744073709551615", "1"], "O"),  # beyond int64
        (["196", "-3"], False, ["196", "-3"], "O"),  # strings are strings ...
        (["196", "-3"], True, [196, -3], "i"),  # ... unless read as text: canonical integers are ints
        (["007", "1"], True, ["007", "1"], "O"),  # not as str(int) writes it: every id a string
        (["+3", "1"], True, ["+3", "1"], "O"),
        (["-0", "1"], True, ["-0", "1"], "O"),
        ([" 5", "1"], True, [" 5", "1"], "O"),
        (["1_000", "1"], True, ["1_000", "1"], "O"),
        (["9223372036854775808", "1"], True, ["9223372036854775808", "1"], "O"),  # beyond int64
        ([1, "a"], False, ["1", "a"], "O"),  # mixed: strings
        ([1, "2"], False, ["1", "2"], "O"),
        ([1, "2"], True, [1, 2], "i"),
        (np.array([1.0, -2.0]), False, [1, -2], "i"),  # whole floats are ints
        (np.array([1.5, 2.0]), False, ["1.5", "2.0"], "O"),  # else repr of each
        (np.array([True, False]), False, ["True", "False"], "O"),  # bools are not ints
        (pd.Series(["5", "6"]), True, [5, 6], "i"),  # a DataFrame's text column
        (pd.Series([1.0, 2.0], dtype="Float64"), True, [1, 2], "i"),
    ],
)
def test_raw_ids_known_answers(values, int_texts, expected, kind):
    ids = raw_ids(values, int_texts=int_texts)
    assert ids.dtype.kind == kind and ids.ndim == 1
    assert ids.tolist() == expected
    assert all(type(v) is str for v in ids.tolist()) if kind == "O" else ids.dtype == np.int64


def test_every_reader_uses_the_one_normaliser(tmp_path):
    """The same ids through a file, a DataFrame, from_raw and a Vocabulary."""
    path = tmp_path / "r.csv"
    path.write_text("u,i,r\n007,5,1\n1,6,2\n")
    from_file = load_ratings(path)
    from_frame = from_dataframe(pd.DataFrame({"user": ["007", "1"], "item": ["5", "6"], "rating": [1.0, 2.0]}))
    assert from_file.user_vocab == from_frame.user_vocab == Vocabulary(["007", "1"])
    assert from_file.item_vocab == from_frame.item_vocab == Vocabulary(np.array([5, 6]))
    assert Ratings.from_raw(["5", "6"], [1, 2], [1.0, 2.0]).user_vocab.kind == "str"


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
@pytest.mark.parametrize("duplicates", ["error", "last", "mean"])
def test_pairs_in_file_order_or_not_find_the_same_duplicates(order, duplicates):
    """Sorted pairs skip the sort of the duplicate check; a repeated pair is found either way."""
    users = np.repeat(np.arange(40), 30)
    items = np.tile(np.arange(30), 40)
    users, items = np.append(users, 39), np.append(items, 29)  # the last pair again, at the end
    values = np.arange(len(users), dtype=float)
    if order == "shuffled":
        perm = np.random.default_rng(0).permutation(len(users) - 1)
        users[:-1], items[:-1], values[:-1] = users[perm], items[perm], values[perm]
    if duplicates == "error":
        with pytest.raises(DataError, match="user 39 rated item 29 twice"):
            Ratings.from_raw(users, items, values, duplicates=duplicates)
        assert len(Ratings.from_raw(users[:-1], items[:-1], values[:-1])) == 1200
        return
    merged = Ratings.from_raw(users, items, values, duplicates=duplicates)
    assert len(merged) == 1200
    pair = merged.ratings[(np.array(merged.raw_users()) == 39) & (np.array(merged.raw_items()) == 29)]
    first = values[:-1][(users[:-1] == 39) & (items[:-1] == 29)][0]
    assert pair.tolist() == [values[-1] if duplicates == "last" else (first + values[-1]) / 2]

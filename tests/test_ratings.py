"""The ratings container and the vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from dlfm.data.ratings import Ratings, Vocabulary
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

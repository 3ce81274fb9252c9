"""Every parser and every bad-input case of the generic loader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlfm.data.io import from_dataframe, load_ratings, sniff_separator
from dlfm.errors import DataError
from tests.conftest import write


@pytest.mark.parametrize("sep", ["\t", ",", ";", "|", "::", " "])
def test_reads_any_separator(tmp_path, sep):
    path = write(tmp_path, sep.join(["1", "10", "4"]) + "\n" + sep.join(["2", "10", "3.5"]) + "\n")
    r = load_ratings(path)
    assert len(r) == 2 and r.user_vocab.kind == "int"
    assert sorted(r.ratings.tolist()) == [3.5, 4.0]


def test_header_is_detected_and_columns_by_name(tmp_path):
    path = write(tmp_path, "when,movie,who,stars\n100,m1,u1,4\n200,m2,u1,2\n")
    r = load_ratings(path, columns={"user": "who", "item": "movie", "rating": "stars", "timestamp": "when"})
    assert r.raw_users() == ["u1", "u1"]
    assert set(r.raw_items()) == {"m1", "m2"}
    assert sorted(r.timestamps.tolist()) == [100, 200]


def test_columns_by_position_without_header(tmp_path):
    path = write(tmp_path, "5\tu1\ti1\n3\tu2\ti1\n")
    r = load_ratings(path, columns=[1, 2, 0])
    assert dict(zip(r.raw_users(), r.ratings)) == {"u1": 5.0, "u2": 3.0}


def test_timestamp_fourth_column(tmp_path):
    r = load_ratings(write(tmp_path, "1\t2\t3\t99\n"))
    assert r.timestamps.tolist() == [99]


def test_blank_lines_are_skipped_but_line_numbers_kept(tmp_path):
    path = write(tmp_path, "1,1,3\n\n1,2,x\n")
    with pytest.raises(DataError, match="line 3"):
        load_ratings(path)


def test_non_numeric_rating_names_line_2(tmp_path):
    path = write(tmp_path, "1\t2\t3\n1\t3\tfive\n")
    with pytest.raises(DataError) as err:
        load_ratings(path)
    assert "line 2" in str(err.value) and "five" in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf", ""])
def test_nan_and_empty_ratings_are_errors(tmp_path, bad):
    with pytest.raises(DataError, match="line 2"):
        load_ratings(write(tmp_path, f"1,2,3\n1,3,{bad}\n"))


def test_wrong_column_count_more(tmp_path):
    with pytest.raises(DataError, match="line 3"):
        load_ratings(write(tmp_path, "1,2,3\n1,3,4\n1,4,5,6,7\n"))


def test_wrong_column_count_fewer(tmp_path):
    with pytest.raises(DataError, match="line 2.*fields"):
        load_ratings(write(tmp_path, "1,2,3\n1,3\n"))


def test_single_column_is_malformed(tmp_path):
    with pytest.raises(DataError):
        load_ratings(write(tmp_path, "hello\nworld\n"))


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match="empty"):
        load_ratings(write(tmp_path, ""))
    with pytest.raises(DataError, match="empty"):
        load_ratings(write(tmp_path, "\n\n  \n"))


def test_header_only(tmp_path):
    with pytest.raises(DataError, match="no ratings"):
        load_ratings(write(tmp_path, "user,item,rating\n"))


def test_rating_outside_declared_scale(tmp_path):
    with pytest.raises(DataError, match="line 2.*outside"):
        load_ratings(write(tmp_path, "1,1,3\n1,2,6\n"), scale=(1, 5))


def test_duplicates_error_by_default_naming_both_lines(tmp_path):
    path = write(tmp_path, "1,1,3\n2,1,4\n1,1,5\n")
    with pytest.raises(DataError, match="lines 1 and 3"):
        load_ratings(path)


def test_duplicates_last_and_mean(tmp_path):
    path = write(tmp_path, "1,1,3\n2,1,4\n1,1,5\n")
    last = load_ratings(path, duplicates="last")
    mean = load_ratings(path, duplicates="mean")
    assert len(last) == len(mean) == 2
    assert last.ratings[(last.users == 0) & (last.items == 0)].tolist() == [5.0]
    assert mean.ratings[(mean.users == 0) & (mean.items == 0)].tolist() == [4.0]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_ratings(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="directory"):
        load_ratings(tmp_path)


def test_binary_garbage_is_a_clear_error(tmp_path):
    path = tmp_path / "bin"
    path.write_bytes(b"1,2,3\n\xff\xfe\x00\x01\n")
    with pytest.raises(DataError, match="line 2"):
        load_ratings(path)


def test_unicode_and_huge_ids(tmp_path):
    huge = "123456789012345678901234567890"
    r = load_ratings(write(tmp_path, f"ユーザー,{huge},4\nzoë,{huge},2\n"))
    assert set(r.raw_users()) == {"ユーザー", "zoë"}
    assert r.raw_items() == [huge, huge]


def test_integer_ids_become_ints_and_lookups_accept_strings(tmp_path):
    r = load_ratings(write(tmp_path, "196\t242\t3\n"))
    assert r.user_vocab.kind == "int"
    assert r.user_vocab.index("196") == r.user_vocab.index(196) == 0


def test_sniffer():
    assert sniff_separator("1::2::3") == "::"
    assert sniff_separator("1\t2\t3") == "\t"
    with pytest.raises(DataError):
        sniff_separator("nothing-here")


def test_dataframe_loader_by_names_and_positions():
    df = pd.DataFrame({"user": ["a", "b"], "item": [1, 2], "rating": [4.0, 2.0]})
    r = from_dataframe(df)
    assert r.raw_users() == ["a", "b"] and r.raw_items() == [1, 2]
    r2 = from_dataframe(df[["rating", "user", "item"]], columns=[1, 2, 0])
    assert np.allclose(np.sort(r2.ratings), [2, 4])


def test_dataframe_nan_rating_is_an_error():
    df = pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [4.0, np.nan]})
    with pytest.raises(DataError, match="row 1"):
        from_dataframe(df)

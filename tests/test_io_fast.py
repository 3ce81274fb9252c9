"""The vectorised reader (dlfm.data._fast) against the text reader, which is the contract; the
header rule; header names; long lines and fields; streams.

The differential tests feed the same bytes to both readers and require the same container or
the same error message, word for word; the deterministic ones check that the fast reader
really reads the common dialects (it may decline only what it documents) and that an error far
down a file names its line without the text reader reading the whole file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlfm.data import _fast
from dlfm.data.io import MAX_LINE_BYTES, _decode, load_ratings, parse_ratings_text
from dlfm.data.ratings import Ratings, Vocabulary, factorize
from dlfm.errors import DataError
from tests.conftest import write
from tests.test_fuzz import FUZZ, messy_bytes, tables

OPTIONS = dict(sep=None, header=None, columns=None, scale=None, duplicates="error")


def both(raw: bytes, path: Path, **options) -> tuple[object, object]:
    """(fast, text) outcome of the same bytes: a Ratings, an error message, or None when the
    fast reader declined."""
    options = {**OPTIONS, **options}
    source = str(path)
    try:
        fast: object = _fast.load(raw, source=source, name=source, **options)
    except DataError as exc:
        fast = str(exc)
    try:
        text: object = parse_ratings_text(_decode(raw, source), source=source, name=source, **options)
    except DataError as exc:
        text = str(exc)
    return fast, text


def same(a: Ratings, b: Ratings) -> bool:
    return (a.user_vocab == b.user_vocab and a.item_vocab == b.item_vocab and a.scale == b.scale
            and all(np.array_equal(x, y) for x, y in ((a.users, b.users), (a.items, b.items), (a.ratings, b.ratings)))
            and (a.timestamps is None) == (b.timestamps is None)
            and (a.timestamps is None or np.array_equal(a.timestamps, b.timestamps)))


def assert_agree(fast: object, text: object) -> None:
    if fast is None:
        return  # declined: the text reader reads it
    if isinstance(text, str) or isinstance(fast, str):
        assert fast == text
    else:
        assert same(fast, text)


# ----------------------------------------------------------------------------- differential
@settings(max_examples=120, **FUZZ)
@given(table=tables())
def test_generated_tables_read_alike(tmp_path_factory, table):
    data, options, _, _ = table
    path = tmp_path_factory.mktemp("t") / "table.txt"
    assert_agree(*both(data, path, **options))


@settings(max_examples=80, **FUZZ)
@given(data=messy_bytes(), header=st.sampled_from([None, False, True]))
def test_messy_bytes_read_alike(tmp_path_factory, data, header):
    path = tmp_path_factory.mktemp("m") / "messy.txt"
    assert_agree(*both(data, path, header=header))


VALUES = ["1", "2", "10", "007", "-0", "-5", "+3", "0x1f", "1e3", "1.5", "nan", "inf", "", " ", " 4 ", "abc",
          "1_0", "٣", "9223372036854775807", "9223372036854775808", "\x0b3", "ü", "-", "0", "00"]


@settings(max_examples=150, **FUZZ)
@given(rows=st.lists(st.lists(st.sampled_from(VALUES), min_size=4, max_size=4), min_size=1, max_size=8),
       sep=st.sampled_from([",", "\t", "::", ";", "é"]), eol=st.sampled_from(["\n", "\r\n"]),
       head=st.sampled_from(["", "user,item,rating,timestamp", "stars,uid,iid,when", "a,b,c,d"]),
       blank=st.integers(0, 9), scale=st.sampled_from([None, (1, 5)]),
       duplicates=st.sampled_from(["error", "last", "mean"]))
def test_value_soup_reads_alike(tmp_path_factory, rows, sep, eol, head, blank, scale, duplicates):
    """Fields that are numbers, ids, both or neither, in every dialect: same outcome."""
    lines = ([head.replace(",", sep)] if head else []) + [sep.join(row) for row in rows]
    lines.insert(min(blank, len(lines)), "")
    path = tmp_path_factory.mktemp("v") / "soup.txt"
    assert_agree(*both(eol.join(lines).encode() + eol.encode(), path, scale=scale, duplicates=duplicates))


# ----------------------------------------------------------------------------- it really is fast
DIALECTS = {
    "csv with header": b"userId,movieId,rating,timestamp\n1,10,4,100\n2,10,3.5,101\n2,11,5,102\n",
    "tsv without header (u.data)": b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n",
    "double colon (ml-1m)": b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978300761\n",
    "crlf and a byte-order mark": b"\xef\xbb\xbfuser,item,rating\r\n1,2,3\r\n2,2,4\r\n",
    "padded fields, blank lines": b"u1, i1, 4\n\n\nu2, i1 , 2\nu3,i2,1\n",
    "string ids, unicode": "zoë\tユ\t4\nbob\tユ\t5\n".encode(),
}


@pytest.mark.parametrize("name", list(DIALECTS))
def test_common_dialects_take_the_fast_reader(tmp_path, name):
    path = tmp_path / "r.txt"
    fast, text = both(DIALECTS[name], path)
    assert isinstance(fast, Ratings), f"declined or failed: {fast!r}"
    assert_agree(fast, text)


def big_file(path: Path, n: int, *, bad: dict[int, str] | None = None, blank_every: int = 0) -> dict[int, int]:
    """``n`` rating lines under a header; ``bad`` maps a data row to the line text to put there.
    Returns {row: line number}."""
    lines, where, line = ["user,item,rating,timestamp"], {}, 1
    for k in range(n):
        if blank_every and k % blank_every == 0:
            lines.append("")
            line += 1
        line += 1
        where[k] = line
        lines.append((bad or {}).get(k, f"{k % 997},{k // 997},{1 + k % 5},{1000 + k}"))
    path.write_text("\n".join(lines) + "\n")
    return where


@pytest.mark.parametrize("kind, text, message", [
    ("rating", "5,5,abc,1", "rating 'abc' is not a finite number"),
    ("nan", "5,5,nan,1", "rating 'nan' is not a finite number"),
    ("empty user", " ,5,3,1", "the user id is empty"),
    ("timestamp", "5,5,3,1.5", "timestamp '1.5' is not a whole number"),
    ("fields", "5,5,3", "has 3 fields, expected 4"),
])
@pytest.mark.parametrize("blank_every", [0, 1000])
def test_a_bad_line_far_down_is_named(tmp_path, monkeypatch, kind, text, message, blank_every):
    path = tmp_path / "big.csv"
    row = 37_777
    where = big_file(path, 50_000, bad={row: text}, blank_every=blank_every)
    if kind != "fields":  # located by the fast reader: the text reader only sees a two-line excerpt
        real = parse_ratings_text
        sizes: list[int] = []

        def spy(text: str, **options):
            sizes.append(text.count("\n"))
            return real(text, **options)

        monkeypatch.setattr(_fast, "parse_ratings_text", spy)
        with pytest.raises(DataError) as err:
            _fast.load(path.read_bytes(), source=str(path), name=str(path), **OPTIONS)
        assert sizes and all(s == where[row] for s in sizes)  # blank lines up to it, nothing else
    with pytest.raises(DataError) as err:
        load_ratings(path)
    assert f"{path}, line {where[row]}: {message}" in str(err.value)


def test_duplicates_and_scale_far_down_name_their_lines(tmp_path):
    path = tmp_path / "big.csv"
    where = big_file(path, 30_000, bad={20_000: "3,0,4,7"}, blank_every=777)  # row 3 is "3,0,4,1003"
    with pytest.raises(DataError, match=f"user 3 rated item 0 twice \\(lines {where[3]} and {where[20_000]}\\)"):
        load_ratings(path)
    where = big_file(path, 30_000, bad={25_000: "1,999999,9,7"})
    with pytest.raises(DataError, match=f"line {where[25_000]}: rating 9 is outside"):
        load_ratings(path, scale=(1, 5))


def test_ids_stay_exactly_as_written(tmp_path):
    """int64 only when every id is canonical; otherwise every id is the string it was."""
    for ids, kind in ((["1", "2", "-3", "0"], "int"), (["1", "007"], "str"), (["1", "-0"], "str"),
                      (["1", "0x1f"], "str"), (["1", "9223372036854775808"], "str"), (["1", " 2 "], "int"),
                      (["1", "+2"], "str")):
        path = write(tmp_path, "".join(f"{u},i,3\n" for u in ids))
        r = load_ratings(path)
        assert r.user_vocab.kind == kind, ids
        expected = sorted(int(u) for u in ids) if kind == "int" else sorted(u.strip() for u in ids)
        assert r.user_vocab.ids.tolist() == expected


# ----------------------------------------------------------------------------- header rule (issue 12)
@pytest.mark.parametrize("bad", ["inf", "nan", "1e309", "0x5", "1_0", "abc", ""])
def test_a_malformed_first_line_is_an_error_not_a_header(tmp_path, bad):
    path = tmp_path / "f.tsv"
    path.write_text(f"2\t2\t{bad}\n1\t1\t4\n3\t3\t5\n")
    with pytest.raises(DataError) as err:
        load_ratings(path)
    assert f"{path}, line 1: rating {bad!r} is not a finite number" in str(err.value)
    with pytest.raises(DataError, match="line 1: rating"):  # the text reader says the same
        parse_ratings_text(path.read_text(), source=str(path))


def test_cli_info_names_line_1(tmp_path):
    from tests.test_fuzz import run_cli

    path = tmp_path / "f.tsv"
    path.write_text("2\t2\tinf\n1\t1\t4\n3\t3\t5\n")
    code, out, err = run_cli(["info", str(path), "--json", "-"])
    assert code == 2 and f"{path}, line 1: rating 'inf' is not a finite number" in err and out == ""


@pytest.mark.parametrize("head", ["user\titem\trating", "a\tb\tc", "who\twhat\tstars"])
def test_a_first_line_of_names_is_still_a_header(tmp_path, head):
    r = load_ratings(write(tmp_path, f"{head}\n1\t1\t4\n3\t3\t5\n"))
    assert len(r) == 2


# ----------------------------------------------------------------------------- header names (issue 18)
def test_header_names_choose_the_columns(tmp_path):
    path = write(tmp_path, "stars,uid,iid\n5,1,1\n5,1,2\n3,2,1\n")  # by position: "user 5 rated item 1 twice"
    r = load_ratings(path)
    assert sorted(zip(r.raw_users(), r.raw_items(), r.ratings.tolist())) == [(1, 1, 5.0), (1, 2, 5.0), (2, 1, 3.0)]
    r = load_ratings(write(tmp_path, "timestamp,rating,movieId,userId\n99,4,10,1\n98,2,10,2\n"))
    assert sorted(zip(r.raw_users(), r.raw_items(), r.ratings.tolist(), r.timestamps.tolist())) == [
        (1, 10, 4.0, 99), (2, 10, 2.0, 98)]


@pytest.mark.parametrize("head", ["rating,user,x", "user,user,rating", "item,x,y"])
def test_a_header_contradicting_the_default_order_is_an_error(tmp_path, head):
    with pytest.raises(DataError, match="line 1: the header .* does not match the user, item, rating columns"):
        load_ratings(write(tmp_path, f"{head}\n1,2,3\n"))


def test_a_header_agreeing_with_the_default_order_is_read_by_position(tmp_path):
    r = load_ratings(write(tmp_path, "a,b,rating,extra\n1,2,3,4\n"))
    assert r.timestamps.tolist() == [4] and r.ratings.tolist() == [3.0]


# ----------------------------------------------------------------------------- long fields and lines (issue 12)
@pytest.mark.parametrize("fast", [True, False])
def test_a_huge_field_gives_a_short_message(tmp_path, fast):
    field = "9" * 400_000 + "x"
    path = write(tmp_path, f"1,1,3\n2,2,{field}\n" if fast else f'1,1,3\n2,"2",{field}\n')  # a quote: text reader
    with pytest.raises(DataError) as err:
        load_ratings(path)
    assert len(str(err.value)) < 200 + len(str(path)) and "400,001 characters" in str(err.value)
    assert "line 2" in str(err.value)


def test_a_line_longer_than_the_bound_is_refused(tmp_path):
    path = tmp_path / "long.csv"
    path.write_bytes(b"1,1,3\n2,2,3\n" + b"7" * (MAX_LINE_BYTES + 5) + b",1,3\n4,4,4\n")
    with pytest.raises(DataError, match=r"line 3: a line longer than 1 MiB \(1,048,585 bytes\)"):
        load_ratings(path)
    path.write_bytes(b"1,1,3\n" + b"7" * (MAX_LINE_BYTES - 10) + b",1,3\n")  # under the bound: read
    assert len(load_ratings(path)) == 2


def feed_fifo(path: Path, chunk: bytes, limit: int) -> threading.Thread:
    """A writer thread that sends ``chunk`` into a FIFO until ``limit`` bytes or the reader
    leaves; it never outlives the test process (daemon) and never blocks a reader."""
    def run() -> None:
        try:
            with open(path, "wb") as handle:
                sent = 0
                while sent < limit:
                    handle.write(chunk)
                    sent += len(chunk)
        except (BrokenPipeError, OSError):
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("chunk, message", [(b"\x00" * 65536, "line 1: contains a NUL byte"),
                                            (b"1" * 65536, "line 1: a line longer than 1 MiB: not a rating file")])
def test_endless_streams_stop_early(tmp_path, chunk, message):
    fifo = tmp_path / "stream"
    os.mkfifo(fifo)
    writer = feed_fifo(fifo, chunk, limit=256 * 2**20)  # far more than the reader may take
    with pytest.raises(DataError, match=message):
        load_ratings(fifo)
    writer.join(timeout=10)
    assert not writer.is_alive()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_with_ratings_is_read(tmp_path):
    fifo = tmp_path / "stream"
    os.mkfifo(fifo)
    feed_fifo(fifo, b"1\t1\t3\n2\t1\t4\n", limit=1)
    assert len(load_ratings(fifo)) == 2


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_cli_info_on_dev_zero_stops(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-m", "dlfm", "info", "/dev/zero"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 2 and "/dev/zero, line 1: contains a NUL byte" in done.stderr
    assert "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- factorisation
@pytest.mark.parametrize("values", [
    np.array([5, 3, 5, 9, 3, 0]), np.array([-(2**62), 7, 2**62, 7]), np.array([1_000_000_007, 3, 3]),
    np.array(["b", "a", "ü", "a", "007"], dtype=object), np.arange(10)[::-1] - 4,
    np.array([3, 1, 2, 2]), np.array([4, 1, 4]),  # ids from 1, every one of the range present or not
])
def test_factorize_matches_np_unique(values):
    uniques, codes = factorize(values)
    expected, inverse = np.unique(values, return_inverse=True)
    assert uniques.tolist() == expected.tolist() and codes.tolist() == inverse.tolist()
    assert codes.dtype == np.int64


@pytest.mark.parametrize("values", [
    np.array([5, 3, 5, 9, 3, 0]), np.array([3, 1, 2, 2]), np.array([4, 1, 4]), np.arange(10)[::-1] - 4,
    np.array([-3, 7, 7, -3, 2]), np.array([-(2**62), 7, 2**62, 7]),  # shifted range; hash table
    np.random.default_rng(0).integers(1, 5000, 200_000),  # several of the in-place blocks, with gaps
])
def test_factorize_in_place_writes_the_indices_into_the_array(values):
    expected, inverse = np.unique(values, return_inverse=True)
    work = values.astype(np.int64).copy()
    uniques, codes = factorize(work, overwrite=True)
    assert uniques.tolist() == expected.tolist() and codes.tolist() == inverse.tolist()
    assert codes.dtype == np.int64
    table = int(uniques[-1]) - int(uniques[0]) < 4 * len(values) + 1024
    assert np.shares_memory(codes, work) == bool(table)  # the counting table works in place, the hash table not
    frozen = values.astype(np.int64)
    frozen.flags.writeable = False  # not writable: left alone, the indices in a new array
    uniques, codes = factorize(frozen, overwrite=True)
    assert codes.tolist() == inverse.tolist() and frozen.tolist() == values.tolist()


def test_a_long_string_id_does_not_widen_the_vocabulary():
    """``astype(str)`` would make every id as wide as the longest: 1,001 x 400k characters."""
    ids = np.array(["x" * 400_000] + [str(k) for k in range(1000)], dtype=object)
    vocab = Vocabulary(ids)
    assert vocab.ids.dtype == object and vocab.ids[0] == "x" * 400_000 and vocab.index("7") == 8


@pytest.mark.parametrize("window", [1, 3, 1 << 18])
def test_the_byte_scan_finds_each_byte_in_any_window(window):
    raw = b"1,2,3\n" * 10 + b'4,"5",x\r\n' + "é".encode() + b"\n"
    assert _fast._scan(raw, b'\x00"\rxX', window) == ({b'"', b"\r", b"x"}, False)
    assert _fast._scan(b"1,2,3\n", b'\x00"', window) == (set(), True)

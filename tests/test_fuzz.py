"""Property-based fuzzing (hypothesis) of the rating-file loader, the DataFrame loader, the
model-file loader and the command line.

The contract under test: every generated input either loads correctly or fails with a
:class:`~dlfm.errors.DlfmError` whose message is clear (for a rating file: naming the file,
and the line where one applies) -- never another exception, never a traceback from the CLI,
and never a silent drop: a file that loads holds exactly one rating per non-blank data line,
and every id, rating and timestamp comes back as it was written.

Inputs generated per run (``max_examples`` of each test; 3,000 in all):

=========================================  =====
random bytes and messy token soup            300
generated tables, round trip                 300
tables with one corrupted line               200
random DataFrames                            120
damaged model files                           60
``dlfm info`` with random options            160
``dlfm cv --folds kfold``                     40
``dlfm predict`` with random ids             160
``dlfm recommend`` with random input         160
a single bit flipped anywhere in a model     400
any value of any hyper-parameter (API)       500
any ``--param KEY=TEXT``                     400
``predict``/``recommend`` with odd shapes    200
=========================================  =====

About 25 s on 2 (idle) cores; every example is cheap (a few lines of data, a 30 x 20 model).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlfm.cli.main import main
from dlfm.data.io import from_dataframe, load_ratings
from dlfm.errors import DataError, ModelFileError

FUZZ = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture, HealthCheck.large_base_example],
)

ROLES = ("user", "item", "rating", "timestamp")
SNIFFED = ["\t", "::", ",", ";", "|", " "]  # the separators the loader can sniff, in its order
ODD_SEPARATORS = ["#", "~~", "\x1f", "é", "ab", ", ", "\u2028", "0", "\\", "--"]
CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")

# ----------------------------------------------------------------------------- strategies
# Text that can stand in a field: no line ends, no NUL, no lone surrogates.
FIELD_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00")
ODD_IDS = ["007", "-0", "+5", "1_000", "١٢", "1e3", "NaN", "inf", '"', '""', 'a"b', '"x"', "user", "rating",
           "\ufeffx", "a b", "x,y", "a::b", "|", ":", "a\u2028b", "a\x85b", "a\x0bb", "ユーザー", "zoë",
           "9223372036854775807", "9223372036854775808", "-9223372036854775808", "1" * 40, "x\ty", "é" * 30]
IDS = st.one_of(
    st.integers(0, 30).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.text(FIELD_CHARS, min_size=1, max_size=8).map(str.strip).filter(bool),
    st.sampled_from(ODD_IDS),
)
RATING_TEXTS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["+3", ".5", "5.", "1E3", "-0", "0.1", "1e-320", "1.7976931348623157e308", "4.50"]),
)
TIMESTAMP_TEXTS = st.one_of(st.integers(-(2**63), 2**63 - 1).map(str), st.integers(0, 2**31).map(str),
                            st.sampled_from(["+5", "007", "-0"]))
BLANK_LINES = st.sampled_from(["", "  ", "\t", "\u3000", " \t "])
ENCODINGS = st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16"])
TOKENS = ["1", "2", "3", "4.5", "-1", "nan", "inf", "", " ", '"', '""', "a", "ü", "\t", ",", ";", "::", "|", ":",
          "\r", "\n", "\r\n", "\ufeff", "\x00", "9" * 25, "user", "item", "rating", "1e999", "\u2028", "\x85",
          "\x1c", "#", "é", "'"]


def nonblank_lines(data: bytes) -> int | None:
    """Non-blank lines of a file as the loader's rules define them (None: not decodable)."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")) and not data.startswith(b"\xff\xfe\x00\x00"):
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return sum(1 for line in lines if line.strip())


def quote(field: str) -> str:
    return '"' + field.replace('"', '""') + '"'


@st.composite
def tables(draw, *, max_rows: int = 6):
    """A rating table written in a random dialect, with what the loader must read back."""
    n = draw(st.integers(1, max_rows))
    pairs = draw(st.lists(st.tuples(IDS, IDS), min_size=n, max_size=n, unique=True))
    ratings = draw(st.lists(RATING_TEXTS, min_size=n, max_size=n))
    with_ts = draw(st.booleans())
    stamps = draw(st.lists(TIMESTAMP_TEXTS, min_size=n, max_size=n)) if with_ts else [None] * n
    sniff = draw(st.booleans())
    sep = draw(st.sampled_from(SNIFFED if sniff else SNIFFED + ODD_SEPARATORS))
    has_header = draw(st.booleans())
    roles = ROLES if with_ts else ROLES[:3]
    order = draw(st.permutations(roles))
    trailing = draw(st.booleans()) and sep != " "
    pad = draw(st.booleans()) and not any(c.isspace() for c in sep)
    quote_all = draw(st.booleans())
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))

    def cell(text: str) -> str:
        must = (any(c in text for c in sep) or text.startswith(('"', "\ufeff"))
                or (sniff and any(c in text for c in "\t:,;| ")))
        out = quote(text) if must or (quote_all and draw(st.booleans())) else text
        return f" {out} " if pad and draw(st.booleans()) else out

    def line(values: dict[str, str]) -> str:
        return sep.join(cell(values[role]) for role in order) + (sep if trailing else "")

    lines = [line({role: role for role in ROLES})] if has_header else []
    rows = []
    for (user, item), rating, stamp in zip(pairs, ratings, stamps):
        lines.append(line({"user": user, "item": item, "rating": rating, "timestamp": stamp}))
        rows.append((user, item, float(rating), None if stamp is None else int(stamp)))
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(BLANK_LINES))
    text = eol.join(lines) + draw(st.sampled_from(["", eol, eol + eol]))
    data = text.encode(draw(ENCODINGS))

    if order == tuple(roles) and draw(st.booleans()):
        columns = None
    elif has_header and draw(st.booleans()):
        columns = {role: role for role in roles}
    else:
        columns = [order.index(role) for role in roles]
    options = {"sep": None if sniff else sep, "header": draw(st.sampled_from([None, has_header])),
               "columns": columns}
    return data, options, rows, n


@st.composite
def messy_bytes(draw):
    """Random bytes, random text, and soups of the tokens that trouble delimited readers."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.binary(max_size=120))
    if kind == 1:
        return draw(st.text(max_size=80)).encode("utf-8", "surrogatepass")
    soup = "".join(draw(st.lists(st.sampled_from(TOKENS), max_size=40)))
    return soup.encode(draw(ENCODINGS), "surrogatepass")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def expect_data_error(exc: DataError, path: Path, n_lines: int | None = None) -> None:
    assert str(path) in str(exc), f"the message does not name the file: {exc}"
    if exc.line is not None:
        assert f"line {exc.line}" in str(exc)
        assert exc.line >= 1 and (n_lines is None or exc.line <= n_lines + 1)


# ----------------------------------------------------------------------------- rating files
@settings(max_examples=300, **FUZZ)
@given(data=messy_bytes(), header=st.sampled_from([None, False]))
def test_random_bytes_load_or_raise_a_data_error(work, data, header):
    path = work / "messy.txt"
    path.write_bytes(data)
    expected = nonblank_lines(data)
    try:
        ratings = load_ratings(path, header=header)
    except DataError as exc:
        expect_data_error(exc, path, None if expected is None else data.count(b"\n") + data.count(b"\r"))
        return
    assert expected is not None
    if header is False:
        assert len(ratings) == expected
    else:
        assert len(ratings) in (expected, expected - 1)
    assert np.all(np.isfinite(ratings.ratings))


@settings(max_examples=300, **FUZZ)
@given(table=tables())
def test_generated_tables_round_trip(work, table):
    data, options, rows, n = table
    path = work / "table.txt"
    path.write_bytes(data)
    ratings = load_ratings(path, **options)
    assert len(ratings) == n
    got = {(str(u), str(i)): (r, t) for u, i, r, t in zip(
        ratings.raw_users(), ratings.raw_items(), ratings.ratings.tolist(),
        ratings.timestamps.tolist() if ratings.timestamps is not None else [None] * n)}
    assert got == {(u, i): (r, t) for u, i, r, t in rows}
    for vocab, k in ((ratings.user_vocab, 0), (ratings.item_vocab, 1)):
        canonical = all(CANONICAL_INT.fullmatch(row[k]) and -(2**63) <= int(row[k]) < 2**63 for row in rows)
        assert vocab.kind == ("int" if canonical else "str")


CORRUPTIONS = ["rating", "empty_user", "extra_field", "missing_field", "timestamp", "open_quote", "after_quote",
               "nul", "bad_utf8", "duplicate"]


@settings(max_examples=200, **FUZZ)
@given(n=st.integers(2, 6), target=st.integers(0, 5), kind=st.sampled_from(CORRUPTIONS),
       bad_rating=st.sampled_from(["nan", "NaN", "inf", "-inf", "", "abc", "1e999", "1_0", "١", "0x10", "4,5"]),
       bad_ts=st.sampled_from(["1.5", "abc", "9" * 30, "", "nan", "1e400"]),
       sep=st.sampled_from([",", "\t", ";", "::"]), eol=st.sampled_from(["\n", "\r\n", "\r"]),
       blank_first=st.booleans())
def test_a_bad_line_is_named(work, n, target, kind, bad_rating, bad_ts, sep, eol, blank_first):
    fields = [[str(k), str(k % 3), f"{1 + k % 5}", str(1000 + k)] for k in range(n)]
    target %= n
    bad = fields[target]
    if kind == "rating":
        bad[2] = bad_rating
    elif kind == "empty_user":
        bad[0] = "  "
    elif kind == "extra_field":
        bad.append("7")
    elif kind == "missing_field":
        bad.pop()
    elif kind == "timestamp":
        bad[3] = bad_ts
    elif kind == "open_quote":
        bad[1] = '"unclosed'
    elif kind == "after_quote":
        bad[1] = '"a"b'
    elif kind == "duplicate":
        other = fields[(target + 1) % n]
        bad[0], bad[1] = other[0], other[1]
    lines = [sep.join(["user", "item", "rating", "when"])] + [sep.join(f) for f in fields]
    if blank_first:
        lines.insert(0, "")
    text = eol.join(lines) + eol
    line_no = target + 2 + blank_first
    data = text.encode()
    if kind == "nul":
        data = (eol.join(lines[: line_no - 1]) + eol + lines[line_no - 1][:1] + "\x00" + lines[line_no - 1][1:]
                + eol + eol.join(lines[line_no:])).encode()
    elif kind == "bad_utf8":
        data = (eol.join(lines[: line_no - 1]) + eol).encode() + b"\xff\xfe" + (lines[line_no - 1] + eol).encode()
    path = work / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(DataError) as err:
        load_ratings(path)
    message = str(err.value)
    assert str(path) in message
    if kind == "duplicate":
        first, second = sorted([line_no, (target + 1) % n + 2 + blank_first])
        assert f"lines {first} and {second}" in message
    else:
        assert f"line {line_no}:" in message, message


# ----------------------------------------------------------------------------- DataFrames
def _column(n: int):
    return st.one_of(
        st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n),
        st.lists(st.integers(0, 2**64 - 1), min_size=n, max_size=n).map(lambda v: np.array(v, dtype=np.uint64)),
        st.lists(st.floats(), min_size=n, max_size=n),
        st.lists(st.text(FIELD_CHARS, max_size=4), min_size=n, max_size=n),
        st.lists(st.one_of(st.none(), st.integers(-5, 5), st.text(max_size=3), st.floats(), st.booleans()),
                 min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )


@st.composite
def frames(draw):
    n = draw(st.integers(0, 5))
    width = draw(st.integers(0, 5))
    names = draw(st.sampled_from([[*ROLES, "e"], ["a", "b", "c", "d", "e"], ["user", "item", "rating", "x", "y"]]))
    frame = pd.DataFrame({names[k]: draw(_column(n)) for k in range(width)}, index=range(n))
    columns = draw(st.one_of(st.none(), st.lists(st.integers(-1, 5), min_size=2, max_size=5),
                             st.sampled_from([{"user": "a", "item": "b", "rating": "c"}, "0,1,2", ["user", "item", "x"]])))
    return frame, columns


@settings(max_examples=120, **FUZZ)
@given(case=frames(), duplicates=st.sampled_from(["error", "last", "mean"]))
def test_random_dataframes_load_or_raise_a_data_error(case, duplicates):
    frame, columns = case
    try:
        ratings = from_dataframe(frame, columns=columns, duplicates=duplicates, name="df")
    except DataError as exc:
        assert str(exc).startswith("df")
        return
    assert len(ratings) <= len(frame)
    if duplicates == "error":
        assert len(ratings) == len(frame)
    assert np.all(np.isfinite(ratings.ratings))


# ----------------------------------------------------------------------------- model files
@pytest.fixture(scope="module")
def models(work) -> dict[str, Path]:
    from dlfm.data.ratings import Ratings
    from dlfm.datasets import synthetic
    from dlfm.models import create

    out = {"int": work / "int.dlfm", "str": work / "str.dlfm"}
    create("baseline").fit(synthetic(30, 20, 200, seed=0)).save(out["int"])
    rng = np.random.default_rng(0)
    users = [f"ü{k}" for k in rng.integers(0, 8, 40)]
    items = [["a", "b,c", "ユ", "-1", "007", " x"][k] for k in rng.integers(0, 6, 40)]
    frame = pd.DataFrame({"u": users, "i": items}).drop_duplicates()
    create("baseline").fit(Ratings.from_raw(frame["u"].tolist(), frame["i"].tolist(),
                                            rng.integers(1, 6, len(frame)).astype(float))).save(out["str"])
    return out


@settings(max_examples=60, **FUZZ)
@given(kind=st.sampled_from(["flip", "truncate", "overwrite", "random"]), where=st.floats(0, 1),
       bit=st.integers(0, 7), junk=st.binary(min_size=1, max_size=64))
def test_damaged_model_files_are_refused_or_still_work(work, models, kind, where, bit, junk):
    from dlfm.models import Recommender

    data = bytearray(models["int"].read_bytes())
    pos = min(int(where * len(data)), len(data) - 1)
    if kind == "flip":
        data[pos] ^= 1 << bit
    elif kind == "truncate":
        data = data[:pos]
    elif kind == "overwrite":
        data[pos : pos + len(junk)] = junk
    else:
        data = bytearray(junk)
    path = work / "damaged.dlfm"
    path.write_bytes(bytes(data))
    try:
        model = Recommender.load(path)
    except ModelFileError as exc:
        assert str(path) in str(exc)
        return
    assert np.all(np.isfinite(model.predict([0, 1, 2], [0, 1, 2])))
    model.recommend(0, 3)


# ----------------------------------------------------------------------------- the CLI
def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with a strict UTF-8 stdout (as a real terminal or pipe has); returns the
    exit status, stdout and stderr. Any exception but SystemExit fails the test."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors exit 2, --help 0
            code = exc.code if isinstance(exc.code, int) else 2
            assert code in (0, 2), f"SystemExit({exc.code!r})"
            out.flush(), err.flush()
            return code, out.buffer.getvalue().decode(), err.buffer.getvalue().decode()
        out.flush(), err.flush()
    stdout, stderr = out.buffer.getvalue().decode(), err.buffer.getvalue().decode()
    assert code in (0, 2), (code, stderr)
    if code == 2:
        assert "dlfm: error:" in stderr and "Traceback" not in stderr
    return code, stdout, stderr


# Command-line text: what a shell can pass (no NUL). Left out, as CLI bugs outside the data
# layer that the xfail tests at the end document: lone surrogates (what undecodable bytes in
# argv become) and the value "--" in the --option=-- form.
ARG_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
ARG_TEXT = st.text(ARG_CHARS, max_size=12).filter(lambda text: text != "--")


def option(name: str, value: str, draw_eq: bool) -> list[str]:
    return [f"{name}={value}"] if draw_eq else [name, value]


@settings(max_examples=160, **FUZZ)
@given(content=st.one_of(messy_bytes(), tables(max_rows=4).map(lambda t: t[0])),
       sep=st.one_of(st.none(), st.sampled_from(SNIFFED + ODD_SEPARATORS), ARG_TEXT),
       columns=st.one_of(st.none(), ARG_TEXT, st.lists(st.sampled_from(["0", "1", "2", "3", "9", "-1", "user", "item",
                                                                         "rating", "x", "", " 1"]),
                                                       min_size=1, max_size=5).map(",".join)),
       scale=st.one_of(st.none(), ARG_TEXT, st.tuples(st.floats(), st.floats()).map(lambda t: f"{t[0]},{t[1]}")),
       header=st.sampled_from([[], ["--header"], ["--no-header"]]),
       duplicates=st.sampled_from([[], ["--duplicates", "last"], ["--duplicates", "mean"], ["--duplicates", "x"]]),
       json_to=st.sampled_from([None, "-", "dir", "file", "nested/deeper/out.json", "file/below-a-file.json"]),
       eq=st.booleans())
def test_cli_info_with_random_files_and_options(work, content, sep, columns, scale, header, duplicates, json_to, eq):
    path = work / "info.txt"
    path.write_bytes(content)
    (work / "file").write_text("x")
    argv = ["info", str(path), "--data-dir", str(work / "no-data"), "--no-download", *header, *duplicates]
    for name, value in (("--sep", sep), ("--columns", columns), ("--scale", scale)):
        if value is not None:
            argv += option(name, value, eq)
    if json_to is not None:
        argv += option("--json", json_to if json_to == "-" else str(work / json_to) if json_to != "dir" else str(work), eq)
    code, out, _ = run_cli(argv)
    if code == 0:
        assert "ratings" in out


@settings(max_examples=40, **FUZZ)
@given(table=tables(max_rows=6), k=st.one_of(st.integers(-2, 8), st.integers(-(2**70), 2**70)),
       seed=st.one_of(st.none(), st.integers(0, 2**70)), fold=st.one_of(st.none(), st.integers(-1, 9)),
       model=st.sampled_from(["baseline", "mean", "baseline", "nope"]),
       param=st.one_of(st.none(), st.sampled_from(["n_epochs=1", "reg_user=-1", "reg_item=nan", "n_epochs=x", "=", "x"])),
       use_synthetic=st.booleans())
def test_cli_cv_kfold_with_random_arguments(work, table, k, seed, fold, model, param, use_synthetic):
    path = work / "cv.txt"
    if use_synthetic:
        if not path.with_suffix(".csv").exists():
            from dlfm.datasets import synthetic, write_ratings

            write_ratings(synthetic(30, 20, 200, seed=0), path.with_suffix(".csv"))
        path = path.with_suffix(".csv")
        options: list[str] = []
    else:
        data, opts, _, _ = table
        path.write_bytes(data)
        options = [f"--sep={opts['sep']}"] if opts["sep"] is not None else []
        columns = opts["columns"]
        if columns is not None:
            refs = list(columns.values()) if isinstance(columns, dict) else columns
            options.append("--columns=" + ",".join(map(str, refs)))
        if opts["header"] is not None:
            options.append("--header" if opts["header"] else "--no-header")
    argv = ["cv", str(path), "--folds", "kfold", "--model", model, f"--k={k}", "--quiet", *options]
    if seed is not None:
        argv.append(f"--seed={seed}")
    if fold is not None:
        argv.append(f"--fold={fold}")
    if param is not None:
        argv += ["--param", param]
    code, out, err = run_cli(argv)
    if code == 0:
        assert "mean" in out


IDS_TYPED = st.one_of(ARG_TEXT, st.integers(-50, 50).map(str), st.sampled_from(
    ["0", "1", "29", "19", " 3", "+3", "03", "1.0", "3e0", "٣", "1_0", "ü1", "b,c", "ユ", "-1", "007", "x", "",
     "9" * 30, "1" * 5000, "-", "---", "-k", "--user"]))


@settings(max_examples=160, **FUZZ)
@given(model=st.sampled_from(["int", "str", "missing", "not-a-model"]), user=IDS_TYPED,
       items=st.lists(IDS_TYPED, min_size=1, max_size=3), strict=st.booleans(),
       samples=st.one_of(st.none(), st.integers(-3, 3)), json_to=st.sampled_from([None, "-", "dir", "file"]),
       eq=st.booleans())
def test_cli_predict_with_random_ids(work, models, model, user, items, strict, samples, json_to, eq):
    path = {"missing": work / "missing.dlfm", "not-a-model": work / "messy.txt"}.get(model) or models[model]
    argv = ["predict", str(path), *option("--user", user, eq)]
    for item in items:
        argv += option("--item", item, eq)
    if strict:
        argv.append("--strict")
    if samples is not None:
        argv.append(f"--samples={samples}")
    if json_to is not None:
        argv += option("--json", {"-": "-", "dir": str(work), "file": str(work / "pred.json")}[json_to], eq)
    code, out, _ = run_cli(argv)
    if code == 0:
        assert "known" in out


RATINGS_TYPED = st.one_of(
    ARG_TEXT,
    st.lists(st.tuples(IDS_TYPED, st.one_of(st.floats().map(repr), ARG_TEXT)), max_size=4).map(
        lambda pairs: ",".join(f"{i}:{r}" for i, r in pairs)),
)


@settings(max_examples=160, **FUZZ)
@given(model=st.sampled_from(["int", "str"]), user=st.one_of(st.none(), IDS_TYPED),
       ratings=st.one_of(st.none(), RATINGS_TYPED), k=st.one_of(st.none(), st.integers(-2, 40), st.integers(-(2**70), 2**70)),
       include_seen=st.booleans(), eq=st.booleans())
def test_cli_recommend_with_random_input(models, model, user, ratings, k, include_seen, eq):
    argv = ["recommend", str(models[model])]
    if user is not None:
        argv += option("--user", user, eq)
    if ratings is not None:
        argv += option("--ratings", ratings, eq)
    if k is not None:
        argv.append(f"-k={k}" if eq else "-k")
        if not eq:
            argv.append(str(k))
    if include_seen:
        argv.append("--include-seen")
    code, out, _ = run_cli(argv)
    if code == 0:
        assert out.startswith("top ")


def test_undecodable_argument_bytes(models):
    code, _, _ = run_cli(["predict", str(models["int"]), "--user", "\udcff", "--item", "1"])
    assert code in (0, 2)


def test_double_dash_as_an_option_value(models):
    code, _, _ = run_cli(["predict", str(models["int"]), "--user=--", "--item=--"])
    assert code in (0, 2)


def test_negative_seed(work):
    from dlfm.datasets import synthetic, write_ratings

    path = work / "seed.csv"
    write_ratings(synthetic(30, 20, 200, seed=0), path)
    code, _, _ = run_cli(["cv", str(path), "--folds", "kfold", "--k", "2", "--seed", "-1", "--quiet"])
    assert code in (0, 2)


# ----------------------------------------------------------------------------- faults: bits, parameters, API edges
@settings(max_examples=400, **FUZZ)
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7), model=st.sampled_from(["int", "str"]))
def test_a_single_bit_flip_anywhere_is_refused_as_corrupt(work, models, where, bit, model):
    """The SHA-256 in the header covers every byte: no flip loads, every one says "corrupt"."""
    from dlfm.models import Recommender

    data = bytearray(models[model].read_bytes())
    data[int(where * len(data))] ^= 1 << bit
    path = work / "flipped.dlfm"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupt") as caught:
        Recommender.load(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


PARAM_VALUES = st.one_of(
    st.integers(-(2**80), 2**80), st.integers(-3, 300), st.floats(), st.floats(-2, 2), st.booleans(), st.none(),
    st.text(max_size=8), st.sampled_from(["cpu", "auto", "gaussian", "both", "tanh", "fixed", "block", "1", "nan"]),
    st.lists(st.integers(0, 3), max_size=2), st.just(np.int64(3)), st.just(np.float32(0.5)), st.just(np.nan),
)


@settings(max_examples=500, **FUZZ)
@given(name=st.sampled_from(["baseline", "mf", "pmf", "dlf", "vdlf"]), data=st.data())
def test_any_hyper_parameter_value_is_valid_or_a_config_error_naming_it(name, data):
    from dlfm.errors import ConfigError
    from dlfm.models import create, model_class

    key = data.draw(st.sampled_from(model_class(name).param_names()))
    value = data.draw(PARAM_VALUES)
    model = create(name, **{key: value})
    try:
        type(model).__mro__[-2]._validate_params(model)  # the declared checks (not the GPU's presence)
    except ConfigError as exc:
        assert str(exc).startswith(f"{name}: {key} must be "), str(exc)
        assert len(str(exc)) < 300 and "\n" not in str(exc)
        return
    spec = model_class(name).param_specs()[key]
    assert not isinstance(value, bool) or spec.kind is bool
    if isinstance(value, float) and spec.kind is not bool:
        assert np.isfinite(value)


@settings(max_examples=400, **FUZZ)
@given(name=st.sampled_from(["baseline", "mf", "dlf", "vdlf"]), data=st.data())
def test_any_param_text_is_parsed_and_checked_or_a_config_error_pointing_at_dlfm_params(name, data):
    from dlfm.errors import ConfigError
    from dlfm.models import model_class, parse_params

    specs = model_class(name).param_specs()
    key = data.draw(st.one_of(st.sampled_from(list(specs)), st.text(ARG_CHARS, min_size=1, max_size=10)))
    text = data.draw(st.one_of(ARG_TEXT, st.integers(-(2**70), 2**70).map(str), st.floats().map(repr),
                               st.sampled_from(["true", "off", "1e999", "-0", "0x10", "1_000", " 5 ", "2.0"])))
    try:
        params = parse_params(name, [f"{key}={text}"])
    except ConfigError as exc:
        assert f"dlfm params {name}" in str(exc), str(exc)
        return
    normal = key.strip().replace("-", "_")
    specs[normal].check(params[normal], name)
    assert type(params[normal]) is specs[normal].kind


IDS_IN = st.one_of(st.integers(-2, 40), st.text(max_size=3), st.floats(allow_nan=True))
ID_SHAPES = st.one_of(IDS_IN, st.lists(IDS_IN, max_size=4), st.lists(st.lists(IDS_IN, max_size=2), min_size=1, max_size=2),
                      st.lists(IDS_IN, min_size=1, max_size=4).map(lambda ids: np.array(ids, dtype=object)),
                      st.lists(st.integers(0, 40), min_size=1, max_size=4).map(lambda ids: np.array(ids).reshape(-1, 1)))


@settings(max_examples=200, **FUZZ)
@given(users=ID_SHAPES, items=ID_SHAPES, k=st.one_of(st.integers(-1, 5), st.floats(0, 5), st.text(max_size=2)),
       unknown=st.sampled_from(["fallback", "error"]))
def test_the_python_api_answers_or_raises_a_dlfm_error(models, users, items, k, unknown):
    from dlfm.errors import DlfmError
    from dlfm.models import Recommender

    model = Recommender.load(models["int"])
    try:
        out = model.predict(users, items, unknown=unknown)
    except DlfmError as exc:
        assert "\n" not in str(exc)
    else:
        assert np.all(np.isfinite(out))
        n_users = 1 if np.isscalar(users) else len(users)
        n_items = 1 if np.isscalar(items) else len(items)
        assert np.size(out) == max(n_users, n_items)
    try:
        top = model.recommend(users, k=k)
    except DlfmError:
        return
    assert isinstance(k, int) and len(top) <= k

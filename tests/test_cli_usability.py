"""Using dlfm from scripts and pipelines: clean JSON on stdout, batch prediction and
recommendation, a fixed train/test split, the top-level API, discoverable errors and honest
progress output. All on tiny generated data, except the ML-100k check marked slow."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlfm.cli.main import main
from dlfm.data.ratings import Ratings
from dlfm.datasets import synthetic, write_ratings
from dlfm.models import create


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A rating file of integer ids, a baseline and a mean model fitted on it, and a model
    fitted on string ids."""
    root = tmp_path_factory.mktemp("usability")
    data = synthetic(40, 30, 500, seed=3)
    write_ratings(data, root / "r.csv")
    create("baseline").fit(data).save(root / "base.dlfm")
    create("mean").fit(data).save(root / "mean.dlfm")
    words = Ratings.from_raw(["ann", "ann", "bob", "bob", "cy", "cy"], ["x", "y", "x", "z", "y", "z"], [5, 3, 4, 1, 2, 5],
                             scale=(1, 5))
    create("baseline").fit(words).save(root / "words.dlfm")
    return {"root": root, "ratings": root / "r.csv", "base": root / "base.dlfm", "mean": root / "mean.dlfm",
            "words": root / "words.dlfm"}


def first_ids(files: dict[str, Path]) -> tuple[int, int]:
    from dlfm import load

    model = load(files["base"])
    return model.train_.raw_users()[0], model.train_.raw_items()[0]


# ----------------------------------------------------------------------------- --json -
def test_json_dash_puts_the_json_alone_on_stdout_for_every_command(files, capsys):
    user, item = first_ids(files)
    commands = [
        ["info", str(files["ratings"])],
        ["datasets", "--data-dir", str(files["root"])],
        ["cv", str(files["ratings"]), "--folds", "kfold", "--k", "2", "--quiet"],
        ["train", str(files["ratings"]), "-o", str(files["root"] / "t.dlfm")],
        ["predict", str(files["base"]), "--user", str(user), "--item", str(item)],
        ["recommend", str(files["base"]), "--user", str(user), "-k", "3"],
    ]
    for argv in commands:
        code, out, err = run([*argv, "--json", "-"], capsys)
        assert code == 0, err
        json.loads(out)  # nothing but the JSON
        assert err.strip()  # the table went to stderr


def test_json_dash_through_a_pipe(files):
    user, item = first_ids(files)
    predict = subprocess.run([sys.executable, "-m", "dlfm", "predict", str(files["base"]), "--user", str(user),
                              "--item", str(item), "--json", "-"], capture_output=True, text=True)
    tool = subprocess.run([sys.executable, "-m", "json.tool"], input=predict.stdout, capture_output=True, text=True)
    assert predict.returncode == 0 and tool.returncode == 0, predict.stderr + tool.stderr


def test_predict_is_a_list_of_records_with_ids_as_in_the_data(files, capsys):
    user, item = first_ids(files)
    code, out, _ = run(["predict", str(files["base"]), "--user", str(user), "--item", str(item), "--json", "-"], capsys)
    one = json.loads(out)
    assert code == 0 and isinstance(one, list) and len(one) == 1
    assert one[0]["user"] == user and isinstance(one[0]["user"], int) and one[0]["item"] == item
    code, out, _ = run(["predict", str(files["base"]), "--user", "99999", "--item", str(item), "--item", "ghost",
                        "--json", "-"], capsys)
    two = json.loads(out)
    assert [r["user"] for r in two] == [99999, 99999] and [r["item"] for r in two] == [item, "ghost"]
    assert [r["known"] for r in two] == [False, False]
    code, out, _ = run(["predict", str(files["words"]), "--user", "ann", "--item", "z", "--json", "-"], capsys)
    assert json.loads(out)[0]["user"] == "ann" and json.loads(out)[0]["item"] == "z"


def test_recommend_is_a_list_of_records_with_ids_as_in_the_data(files, capsys):
    from dlfm import load

    user, _ = first_ids(files)
    code, out, _ = run(["recommend", str(files["base"]), "--user", str(user), "-k", "4", "--json", "-"], capsys)
    rows = json.loads(out)
    expected = load(files["base"]).recommend(user, 4)
    assert code == 0 and [(r["user"], r["rank"], r["item"]) for r in rows] == [
        (user, n + 1, item) for n, (item, _) in enumerate(expected)]
    assert all(isinstance(r["item"], int) for r in rows)
    code, out, _ = run(["recommend", str(files["words"]), "--user", "ann", "-k", "1", "--json", "-"], capsys)
    assert json.loads(out) == [{"user": "ann", "rank": 1, "item": "z", "score": pytest.approx(json.loads(out)[0]["score"])}]


# ----------------------------------------------------------------------------- batch prediction
def test_predict_input_writes_one_row_per_pair(files, capsys):
    from dlfm import load

    model = load(files["base"])
    users, items = model.train_.raw_users()[:5], model.train_.raw_items()[:5]
    pairs = files["root"] / "pairs.tsv"
    pairs.write_text("user\titem\n" + "".join(f"{u}\t{i}\n" for u, i in zip(users, items)) + "\n77777\t1\n")
    out = files["root"] / "preds.csv"
    code, _, err = run(["predict", str(files["base"]), "--input", str(pairs), "--output", str(out)], capsys)
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert code == 0 and len(rows) == 6 and list(rows[0]) == ["user", "item", "prediction", "known"]
    assert np.allclose([float(r["prediction"]) for r in rows[:5]], model.predict(users, items))
    assert rows[5]["known"] == "false" and "1 with an unknown user or item" in err
    jsonl = files["root"] / "preds.jsonl"
    assert run(["predict", str(files["base"]), "--input", str(pairs), "--output", str(jsonl)], capsys)[0] == 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == 6 and lines[0]["user"] == users[0] and lines[5]["user"] == 77777


def test_predict_input_errors_name_the_file_and_line(files, capsys):
    user, item = first_ids(files)
    bad = files["root"] / "bad.csv"
    for text, expected in ((f"{user},{item}\n{user},{item},3,4\n", "line 2"),
                           (f"{user},{item}\n\n{user},\n", "line 3: the item id is empty"),
                           (f"{user},{item}\n77777,{item}\n", "line 2: unknown user '77777'")):
        bad.write_text(text)
        code, _, err = run(["predict", str(files["base"]), "--input", str(bad), "--strict"], capsys)
        assert code == 2 and str(bad) in err and expected in err and "Traceback" not in err, err
    code, _, err = run(["predict", str(files["base"]), "--input", str(files["root"] / "none.csv")], capsys)
    assert code == 2 and "no such file" in err
    code, _, err = run(["predict", str(files["base"]), "--input", str(bad), "--columns", "uid,iid"], capsys)
    assert code == 2 and "no column named 'uid'" in err


def test_samples_without_a_distribution_says_so(files, capsys):
    user, item = first_ids(files)
    code, _, err = run(["predict", str(files["base"]), "--user", str(user), "--item", str(item), "--samples", "50"],
                       capsys)
    assert code == 2 and "no predictive distribution" in err


def test_predict_input_with_samples_gives_std_and_interval(tmp_path, capsys):
    data = synthetic(30, 20, 300, seed=0)
    model = create("dlf", hidden=8, latent=2, decoder_hidden=8, max_epochs=2, mc_samples=2, verbose=False).fit(data)
    model.save(tmp_path / "d.dlfm")
    pairs = tmp_path / "p.csv"
    pairs.write_text("".join(f"{u},{i}\n" for u, i in zip(data.raw_users()[:4], data.raw_items()[:4])))
    code, _, err = run(["predict", str(tmp_path / "d.dlfm"), "--input", str(pairs), "--samples", "20",
                        "--output", str(tmp_path / "o.csv")], capsys)
    with (tmp_path / "o.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert code == 0, err
    assert len(rows) == 4 and list(rows[0]) == ["user", "item", "prediction", "std", "q05", "q95", "known"]
    assert all(float(r["q05"]) <= float(r["prediction"]) <= float(r["q95"]) for r in rows)


# ----------------------------------------------------------------------------- batch recommendation
@pytest.mark.parametrize("name", ["base", "mean"])  # mean: every score tied, ranked by item index
def test_recommend_batch_matches_recommend(files, name):
    from dlfm import load

    model = load(files[name])
    users = model.train_.user_vocab.raw(np.arange(model.train_.n_users))
    table = model.recommend_batch(users, 5, chunk_pairs=70)  # a few users per chunk
    for user in users:
        got = [(i, s) for u, i, s in zip(table["user"], table["item"], table["score"]) if u == user]
        assert got == model.recommend(user, 5)
    assert list(table["rank"][:5]) == [1, 2, 3, 4, 5]


def test_recommend_users_file_and_all(files, capsys):
    from dlfm import load

    model = load(files["base"])
    out = files["root"] / "recs.csv"
    code, _, err = run(["recommend", str(files["base"]), "--users", "all", "-k", "3", "--output", str(out)], capsys)
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    unseen = model.train_.n_items - model.train_.user_counts
    assert code == 0 and len(rows) == np.minimum(3, unseen).sum() and list(rows[0]) == ["user", "rank", "item", "score"]
    short = int((unseen < 3).sum())
    assert short and f"{short} users have fewer than 3 unseen items" in err
    user = model.train_.raw_users()[0]
    users = files["root"] / "users.txt"
    users.write_text(f"{user}\n\nghost\n")
    code, _, err = run(["recommend", str(files["base"]), "--users", str(users), "--output", str(out)], capsys)
    assert code == 2 and f"{users}, line 3: unknown user 'ghost'" in err
    users.write_text(f"user\n{user}\n")
    code, out_text, _ = run(["recommend", str(files["base"]), "--users", str(users), "-k", "2", "--output", "-"], capsys)
    rows = list(csv.DictReader(io.StringIO(out_text)))
    assert code == 0 and [int(r["item"]) for r in rows] == [i for i, _ in model.recommend(user, 2)]
    code, _, err = run(["recommend", str(files["base"]), "--users", "all"], capsys)
    assert code == 2 and "--output" in err


def test_new_user_ratings_outside_the_scale_are_an_error(files, capsys):
    from dlfm import load

    _, item = first_ids(files)
    lo, hi = load(files["base"]).scale_
    code, _, err = run(["recommend", str(files["base"]), "--ratings", f"{item}:50"], capsys)
    assert code == 2 and f"rating 50 of item '{item}' is outside the model's rating scale [{lo:g}, {hi:g}]" in err
    model = create("mf", n_epochs=1, gibbs_sweeps=0).fit(synthetic(20, 10, 100, seed=0))
    from dlfm.errors import ConfigError

    with pytest.raises(ConfigError, match="outside the model's rating scale"):
        model.predict_new_user({model.train_.raw_items()[0]: 50.0}, [model.train_.raw_items()[1]])


# ----------------------------------------------------------------------------- cv
def _split_files(tmp_path: Path) -> tuple[Path, Path, Ratings, Ratings]:
    from dlfm.datasets import kfold

    fold = next(kfold(synthetic(40, 30, 600, seed=1), 5, seed=0))
    write_ratings(fold.train, tmp_path / "train.csv")
    write_ratings(fold.test, tmp_path / "test.csv")
    return tmp_path / "train.csv", tmp_path / "test.csv", fold.train, fold.test


def test_cv_given_train_and_test_scores_that_split(tmp_path, capsys):
    from dlfm.evaluation.metrics import rmse

    train_path, test_path, train, test = _split_files(tmp_path)
    code, out, err = run(["cv", "--train", str(train_path), "--test", str(test_path), "--model", "baseline",
                          "--json", str(tmp_path / "cv.json")], capsys)
    doc = json.loads((tmp_path / "cv.json").read_text())
    model = create("baseline").fit(train)
    expected = rmse(test.ratings, model.predict_indices(test.users, test.items))
    assert code == 0 and doc["mean"]["rmse"] == pytest.approx(expected, abs=1e-12)
    assert doc["folds_scheme"] == "given" and doc["folds"][0]["n_test"] == len(test)
    assert {"fold", "rmse", "mae", "fit_seconds", "predict_seconds", "n_test", "n_unknown"} <= set(doc["folds"][0])
    assert "n_unknown" in out and "test.csv" in out
    with test_path.open("a") as handle:
        handle.write("ghost,1,3\n")
    code, _, err = run(["cv", "--train", str(train_path), "--test", str(test_path), "--json", str(tmp_path / "c.json")],
                       capsys)
    assert code == 0 and "fallback" in err and json.loads((tmp_path / "c.json").read_text())["folds"][0]["n_unknown"] >= 1
    code, _, err = run(["cv", "--train", str(train_path)], capsys)
    assert code == 2 and "--test" in err


def test_cv_of_a_file_defaults_to_kfold_and_warns_when_too_small(tmp_path, capsys):
    path = tmp_path / "tiny.csv"
    write_ratings(synthetic(8, 6, 20, seed=0), path)
    code, out, err = run(["cv", str(path), "--model", "baseline"], capsys)
    assert code == 0 and "kfold" in err and "warning" in err and "only 4 ratings" in err
    big = tmp_path / "big.csv"
    write_ratings(synthetic(60, 40, 1000, seed=0), big)
    code, _, err = run(["cv", str(big), "--k", "2"], capsys)
    assert code == 0 and "warning" not in err


def test_cv_table_columns_in_a_fixed_order():
    from dlfm.cli.model_commands import cv_columns

    records = [{"fold": "u1", "predict_seconds": 0.1, "nll": 1.0, "fit_seconds": 1.0, "mae": 0.7, "zeta": 1,
                "n_test": 5, "rmse": 0.9, "coverage90": 0.9, "n_unknown": 0, "coverage50": 0.5, "epochs": 3,
                "tuned": {"lr": 0.1}}]
    assert cv_columns(records) == ["rmse", "mae", "nll", "coverage50", "coverage90", "fit_seconds", "predict_seconds",
                                   "epochs", "zeta"]


def test_tables_left_align_text_and_right_align_numbers():
    from dlfm.cli.common import format_table

    lines = format_table(["name", "n"], [["ml-100k", 5], ["x", 100]]).splitlines()
    assert lines[2] == "ml-100k    5" and lines[3] == "x        100"


# ----------------------------------------------------------------------------- discoverability
def test_bare_dlfm_prints_the_help_and_exits_0(capsys):
    code, out, _ = run([], capsys)
    assert code == 0 and out.startswith("usage: dlfm") and "predict" in out


def test_a_typo_in_a_model_name_suggests_the_closest(files, capsys):
    code, _, err = run(["cv", str(files["ratings"]), "--model", "basline"], capsys)
    assert code == 2 and "did you mean 'baseline'?" in err
    code, _, err = run(["cv", str(files["ratings"]), "--model", "zzz"], capsys)
    assert code == 2 and "did you mean" not in err and "known: mean, baseline" in err


def test_import_dlfm_is_light_and_the_top_level_api_works(files):
    probe = "import sys, dlfm; print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
    import dlfm

    model = dlfm.load(files["base"])
    user, item = first_ids(files)
    assert model.predict(user, item) == pytest.approx(dlfm.create("baseline").fit(model.train_).predict(user, item))
    doc = dlfm.cross_validate("baseline", files["ratings"], k=2, seed=0)
    assert [f["fold"] for f in doc["folds"]] == ["fold1", "fold2"] and doc["mean"]["rmse"] > 0


def test_top_level_cross_validate_with_a_given_test_part(tmp_path):
    import dlfm

    train_path, test_path, train, test = _split_files(tmp_path)
    from_files = dlfm.cross_validate("baseline", train_path, test=test_path)
    from_containers = dlfm.cross_validate("baseline", train, test=test)
    assert from_files["mean"]["rmse"] == pytest.approx(from_containers["mean"]["rmse"], abs=1e-12)


# ----------------------------------------------------------------------------- training progress
def _train_until_it_stops(verbose: bool = True) -> None:
    import torch

    from dlfm.training.loop import train
    from dlfm.training.optim import adamw

    net = torch.nn.Linear(1, 1)
    scores = iter([0.9, 0.8, 0.85, 0.86, 0.87, 0.88])
    train(net, lambda: [torch.ones(1)], lambda batch: net(batch).pow(2).sum(), lambda: {"val_rmse": next(scores)},
          adamw(net.parameters(), lr=0.01, weight_decay=0.0), max_epochs=10, patience=2, verbose=verbose,
          description="toy", background_batches=False)


def test_progress_to_a_file_is_a_line_per_epoch_and_a_stop_line(capsys):
    _train_until_it_stops()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == 5
    assert lines[0].startswith("toy: epoch 1/10") and lines[-1] == "stopped at epoch 4 (best 2, val RMSE 0.8000)"


def test_progress_bar_on_a_terminal_ends_full_with_the_stop_line(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    _train_until_it_stops()
    text = screen.getvalue()
    assert "4/4" in text and "100%" in text and text.rstrip().endswith("stopped at epoch 4 (best 2, val RMSE 0.8000)")


def test_no_progress_output_when_not_verbose(capsys):
    _train_until_it_stops(verbose=False)
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- the real split
@pytest.mark.slow
def test_cv_given_u1_files_equals_official_fold_1(ml100k_root, tmp_path, capsys):
    folder = ml100k_root / "ml-100k"
    code, _, _ = run(["cv", "--train", str(folder / "u1.base"), "--test", str(folder / "u1.test"), "--model",
                      "baseline", "--json", str(tmp_path / "given.json")], capsys)
    assert code == 0
    code, _, _ = run(["cv", "ml-100k", "--data-dir", str(ml100k_root), "--model", "baseline", "--folds", "official",
                      "--fold", "1", "--json", str(tmp_path / "official.json")], capsys)
    given = json.loads((tmp_path / "given.json").read_text())["folds"][0]
    official = json.loads((tmp_path / "official.json").read_text())["folds"][0]
    assert code == 0 and given["rmse"] == official["rmse"] and given["n_unknown"] == official["n_unknown"]


def test_the_one_is_main_process_decides_without_torch_in_a_plain_run():
    import os

    probe = ("import sys; from dlfm.cli.common import is_main_process; from dlfm.cli.main import build_parser; "
             "build_parser(); print(is_main_process(), 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "WORLD_SIZE": "1"})
    assert proc.returncode == 0 and proc.stdout.split() == ["True", "False"], proc.stderr
    import dlfm.training.distributed as distributed

    assert not hasattr(distributed, "is_main_process")  # one test of "process 0", in dlfm.cli.common

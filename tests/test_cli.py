"""The command line: clear errors without tracebacks, JSON outputs, the main commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dlfm.cli.main import main
from dlfm.datasets import synthetic, write_ratings
from tests.conftest import write


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_rejects_bad_rating_naming_line_2(tmp_path):
    path = write(tmp_path, "1\t2\t3\n1\t3\tfive\n")
    proc = subprocess.run([sys.executable, "-m", "dlfm", "info", str(path)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "line 2" in proc.stderr and "Traceback" not in proc.stderr


def test_info_json(tmp_path, capsys):
    path = tmp_path / "r.csv"
    write_ratings(synthetic(50, 40, 400, seed=0), path)
    code, out, _ = run(["info", str(path), "--json", str(tmp_path / "o.json")], capsys)
    info = json.loads((tmp_path / "o.json").read_text())
    assert code == 0 and (info["users"], info["items"], info["ratings"]) == (50, 40, 400)


def test_unknown_dataset_and_model_are_clear(tmp_path, capsys):
    code, _, err = run(["info", "no-such-thing"], capsys)
    assert code == 2 and "neither a known data set" in err
    path = tmp_path / "r.csv"
    write_ratings(synthetic(30, 20, 200, seed=0), path)
    code, _, err = run(["cv", str(path), "--folds", "kfold", "--model", "nope"], capsys)
    assert code == 2 and "unknown model" in err
    code, _, err = run(["cv", str(path), "--folds", "kfold", "--param", "oops"], capsys)
    assert code == 2 and "key=value" in err


def test_cv_kfold_on_a_file_writes_json(tmp_path, capsys):
    path = tmp_path / "r.csv"
    write_ratings(synthetic(60, 40, 800, seed=0), path)
    out_json = tmp_path / "cv.json"
    code, out, _ = run(["cv", str(path), "--model", "baseline", "--folds", "kfold", "--k", "3", "--seed", "1",
                        "--json", str(out_json)], capsys)
    assert code == 0 and "mean" in out
    doc = json.loads(out_json.read_text())
    assert doc["model"] == "baseline" and len(doc["folds"]) == 3
    for key in ("fold", "rmse", "mae", "fit_seconds", "predict_seconds", "n_test"):
        assert key in doc["folds"][0]
    assert {"rmse", "mae"} <= set(doc["mean"]) and "versions" in doc


def test_train_predict_recommend(tmp_path, capsys):
    path = tmp_path / "r.csv"
    data = synthetic(60, 40, 800, seed=0)
    write_ratings(data, path)
    model = tmp_path / "m.dlfm"
    assert run(["train", str(path), "--model", "mf", "-o", str(model)], capsys)[0] == 0
    user, item = data.raw_users()[0], data.raw_items()[0]
    code, out, _ = run(["predict", str(model), "--user", str(user), "--item", str(item), "--json", str(tmp_path / "p.json")], capsys)
    assert code == 0 and json.loads((tmp_path / "p.json").read_text())[0]["prediction"] > 0
    code, out, _ = run(["recommend", str(model), "--user", str(user), "-k", "5", "--json", str(tmp_path / "r.json")], capsys)
    rec = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and len(rec) == 5 and [r["rank"] for r in rec] == [1, 2, 3, 4, 5]
    code, _, _ = run(["recommend", str(model), "--ratings", f"{item}:5", "-k", "3", "--json", str(tmp_path / "n.json")], capsys)
    assert code == 0 and str(item) not in [str(r["item"]) for r in json.loads((tmp_path / "n.json").read_text())]
    code, _, err = run(["predict", str(model), "--user", "ghost", "--item", str(item), "--strict"], capsys)
    assert code == 2 and "unknown user" in err


def test_datasets_lists_known_sets(capsys, tmp_path):
    code, out, _ = run(["datasets", "--data-dir", str(tmp_path)], capsys)
    assert code == 0
    for name in ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small"):
        assert name in out


def test_help_on_each_command():
    for command in ("datasets", "info", "cv", "train", "predict", "recommend"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0


@pytest.mark.slow
def test_cv_official_baseline_on_ml100k(ml100k_root, tmp_path, capsys):
    out_json = tmp_path / "cv.json"
    code, _, _ = run(["cv", "ml-100k", "--data-dir", str(ml100k_root), "--model", "baseline", "--json", str(out_json)], capsys)
    doc = json.loads(out_json.read_text())
    assert code == 0 and 0.935 <= doc["mean"]["rmse"] <= 0.950

"""Tuning: Optuna over each model's declared space, on a validation part of the data it is
given; nested inside cv, fold k's search never reads fold k's test ratings."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dlfm.data.splits import kfold
from dlfm.datasets import synthetic, write_ratings
from dlfm.evaluation.cv import cross_validate, summarize
from dlfm.evaluation.tuning import tune
from dlfm.models import MODELS, model_class

TINY_DLF = dict(hidden=8, latent=2, decoder_hidden=4, max_epochs=3, verbose=False, device="cpu", mc_samples=0)


@pytest.fixture(scope="module")
def data():
    return synthetic(80, 50, 2000, rank=2, noise=0.3, seed=2)


def test_tune_searches_the_declared_space_on_a_validation_part(data):
    result = tune("baseline", data, trials=6, seed=1)
    space = model_class("baseline").search_space
    assert result["n_trials"] == 6 and result["metric"] == "val_rmse"
    assert result["n_fit"] + result["n_validation"] == len(data)
    for trial in result["trials"]:
        for name, value in trial["params"].items():
            assert space[name].low <= value <= space[name].high
    values = [t["value"] for t in result["trials"]]
    assert result["best_value"] == min(values)
    assert result["best_params"]["reg_user"] == result["trials"][int(np.argmin(values))]["params"]["reg_user"]
    # seeded: the same search again
    assert tune("baseline", data, trials=6, seed=1)["best_params"] == result["best_params"]


def test_fixed_parameters_are_not_searched(data):
    result = tune("dlf", data, fixed={**TINY_DLF, "hidden": 8}, trials=2, seed=0)
    assert all("hidden" not in t["params"] for t in result["trials"])
    assert result["best_params"]["hidden"] == 8


def test_nested_cv_searches_inside_each_fold_only(data, monkeypatch):
    import dlfm.evaluation.tuning as tuning

    seen = []
    real = tuning.tune

    def spy(model_name, ratings, **kw):
        seen.append(ratings)
        return real(model_name, ratings, **kw)

    monkeypatch.setattr(tuning, "tune", spy)
    folds = list(kfold(data, 3, seed=0))
    result = cross_validate("baseline", {}, folds, seed=0, tune_trials=3)
    assert len(seen) == 3
    for fold, ratings, record in zip(folds, seen, result["folds"]):
        assert ratings is fold.train  # the search was handed the training part alone
        assert set(record["tuned"]) == set(model_class("baseline").search_space)
        assert record["tuning"]["n_fit"] + record["tuning"]["n_validation"] == len(fold.train)


def test_every_model_with_parameters_declares_a_space():
    model_class("dlf")
    for name, cls in MODELS.items():
        for param in cls.search_space:
            assert param in cls.param_names(), f"{name}: {param} is not a parameter"


def test_cv_json_records_everything_needed_to_rerun(tmp_path, data):
    path = tmp_path / "r.csv"
    write_ratings(data, path)
    out = tmp_path / "cv.json"
    run = subprocess.run([sys.executable, "-m", "dlfm", "cv", str(path), "--model", "mf", "--folds", "kfold", "--k",
                          "2", "--param", "gibbs_sweeps=3", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert set(doc["params"]) == set(model_class("mf").param_names())  # defaults included
    assert doc["params"]["gibbs_sweeps"] == 3 and doc["params"]["n_factors"] == 10
    assert doc["seed"] == 0 and doc["fold_names"] == ["fold1", "fold2"]
    assert {"dlfm", "torch", "numpy"} <= set(doc["versions"])


def test_one_summary_rule_for_non_finite_folds():
    mean, std, counted = summarize([{"fold": "a", "auc": float("nan"), "rmse": 1.0},
                                    {"fold": "b", "auc": 0.8, "rmse": 3.0}])
    assert mean == {"auc": 0.8, "rmse": 2.0} and std == {"auc": 0.0, "rmse": 1.0}
    assert counted == {"auc": 1}


def test_tune_cli(tmp_path, data):
    path = tmp_path / "r.csv"
    write_ratings(data, path)
    out = tmp_path / "tune.json"
    run = subprocess.run([sys.executable, "-m", "dlfm", "tune", str(path), "--model", "baseline", "--trials", "3",
                          "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--param reg_user=" in run.stdout
    assert json.loads(out.read_text())["n_trials"] == 3
    bad = subprocess.run([sys.executable, "-m", "dlfm", "tune", str(path), "--model", "mean", "--trials", "3"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "nothing to tune" in bad.stderr and "Traceback" not in bad.stderr


def test_a_deprecated_name_held_fixed_holds_its_new_name_out_of_the_space(data):
    with pytest.warns(FutureWarning, match="noise_scale"):
        result = tune("mf", data, fixed={"noise": 1.0, "gibbs_sweeps": 2, "n_epochs": 2}, trials=2, seed=0)
    assert result["best_params"]["noise_scale"] == 1.0 and "noise" not in result["best_params"]
    assert "noise_scale" not in result["search_space"]

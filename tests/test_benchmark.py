"""The benchmark: JSON shape, tables, resume, published rows, and Surprise rows that equal
what Surprise itself computes on the same folds."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from dlfm.cli.main import main
from dlfm.datasets import kfold, synthetic, write_ratings
from dlfm.errors import ConfigError
from dlfm.evaluation import surprise_bridge
from dlfm.evaluation.benchmark import Method, parse_method_params, published_rows, resolve_methods, run_benchmark

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
needs_surprise = pytest.mark.skipif(not surprise_bridge.available(), reason="scikit-surprise is not installed")


@pytest.fixture(scope="module")
def tiny_folds():
    ratings = synthetic(60, 40, 700, rank=2, noise=0.4, seed=3)
    return list(kfold(ratings, 3, seed=0))


def _run(folds, tmp_path, names, **kwargs):
    methods, notes = resolve_methods(names)
    return run_benchmark(folds, dataset="tiny", scheme="kfold", k=3, methods=methods, notes=notes,
                         out_dir=tmp_path, log=lambda text: None, **kwargs)


def test_json_shape_tables_and_pictures(tiny_folds, tmp_path):
    run = _run(tiny_folds, tmp_path, "mean,baseline", published=True)
    assert not run.failed
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["dataset"] == "tiny" and doc["folds"] == "kfold" and doc["fold_names"] == ["fold1", "fold2", "fold3"]
    assert {"versions", "machine", "methods", "seed"} <= set(doc)
    for name in ("mean", "baseline"):
        entry = doc["methods"][name]
        assert entry["source"] == "dlfm" and len(entry["folds"]) == 3
        for key in ("rmse", "mae", "fit_seconds", "predict_seconds"):
            assert key in entry["folds"][0] and key in entry["mean"] and key in entry["std"]
        rmses = [f["rmse"] for f in entry["folds"]]
        assert entry["mean"]["rmse"] == pytest.approx(np.mean(rmses))
        assert entry["std"]["rmse"] == pytest.approx(np.std(rmses))
    assert doc["methods"]["baseline"]["mean"]["rmse"] < doc["methods"]["mean"]["mean"]["rmse"]

    md = (tmp_path / "results.md").read_text()
    assert "| Method | Source | RMSE | MAE |" in md and "| baseline | dlfm |" in md
    assert "Published in the report (not run here)" in md
    with open(tmp_path / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["fold"] for r in rows if r["method"] == "mean"] == ["fold1", "fold2", "fold3", "mean", "std"]
    assert float(rows[0]["rmse"]) > 0
    assert any(r["source"] == "published" for r in rows)

    for name in ("rmse.png", "slice.png"):
        data = (tmp_path / name).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)
    assert not (tmp_path / "curves.png").exists()  # no neural model ran
    assert set(run.models) == {"mean", "baseline"}  # fold-1 models kept in memory


def test_published_rows_are_marked_and_only_on_ml100k_by_default(tiny_folds, tmp_path):
    rows = published_rows()
    assert len(rows) == 16
    assert all(name.startswith("published: ") and e["source"] == "published" and e["folds"] == []
               for name, e in rows.items())
    assert rows["published: SVD++ (report)"]["mean"] == {"rmse": 0.9200, "mae": 0.7253}
    assert rows["published: report model 1 (vdlf)"]["mean"]["rmse"] == 0.9689
    assert rows["published: mSDA-CF (report)"]["mean"]["mae"] is None
    run = _run(tiny_folds, tmp_path, "mean")  # dataset "tiny": no published rows unless asked
    assert all(e["source"] != "published" for e in run.results["methods"].values())
    json.loads((tmp_path / "results.json").read_text())  # strict JSON (no NaN)


def test_resume_skips_methods_already_done(tiny_folds, tmp_path):
    first = _run(tiny_folds, tmp_path, "mean")
    before = first.results["methods"]["mean"]
    second = _run(tiny_folds, tmp_path, "mean,baseline", resume=True)
    assert set(second.models) == {"baseline"}  # mean was not fitted again
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["methods"]["mean"]["folds"] == before["folds"]
    assert "baseline" in doc["methods"]
    assert any(note.startswith("resume: mean") for note in doc["notes"])
    with pytest.raises(ConfigError, match="another benchmark"):
        _run(tiny_folds[:2], tmp_path, "mean", resume=True)


def test_unregistered_and_unavailable_methods_are_skipped_with_a_note(monkeypatch):
    from dlfm.models import MODELS

    resolve_methods("mean")  # registers whatever neural models exist
    monkeypatch.delitem(MODELS, "vdlf", raising=False)
    methods, notes = resolve_methods("mean,vdlf")
    assert [m.name for m in methods] == ["mean"]
    assert len(notes) == 1 and notes[0].startswith("vdlf:")
    monkeypatch.setattr(surprise_bridge, "available", lambda: False)
    methods, notes = resolve_methods("baseline,SVD,knnbasic")
    assert [m.name for m in methods] == ["baseline"]
    assert len(notes) == 1 and "scikit-surprise is not installed" in notes[0] and "KNNBasic" in notes[0]
    with pytest.raises(ConfigError, match="unknown method"):
        resolve_methods("mean,nosuchthing")


def test_groups_and_params():
    methods, _ = resolve_methods("dlfm,surprise,mean")
    names = [m.name for m in methods]
    assert names.count("mean") == 1 and "baseline" in names
    if surprise_bridge.available():
        assert "SVDpp" in names and "CoClustering" in names
    params = parse_method_params(["mf.n_factors=7", "baseline.reg_user=3"],
                                 [Method("mf", "dlfm"), Method("baseline", "dlfm")])
    assert params == {"mf": {"n_factors": 7}, "baseline": {"reg_user": 3.0}}
    with pytest.raises(ConfigError, match="MODEL.KEY=VALUE"):
        parse_method_params(["n_factors=7"], [Method("mf", "dlfm")])
    with pytest.raises(ConfigError, match="not among the methods"):
        parse_method_params(["pmf.n_factors=7"], [Method("mf", "dlfm")])


def _surprise_on_files(folds, tmp_path, algo_name, seed=0):
    """Surprise's own pipeline on the same folds, written to files: load_from_folds, PredefinedKFold,
    cross_validate. Returns the per-fold test RMSE and MAE."""
    from surprise import Dataset, Reader
    from surprise.model_selection import PredefinedKFold, cross_validate

    files = []
    for fold in folds:
        pair = []
        for part, ratings in (("base", fold.train), ("test", fold.test)):
            path = tmp_path / f"{fold.name}.{part}"
            lines = [f"{u},{i},{float(r)!r}" for u, i, r in zip(ratings.raw_users(), ratings.raw_items(), ratings.ratings)]
            path.write_text("\n".join(lines) + "\n")
            pair.append(str(path))
        files.append(tuple(pair))
    reader = Reader(line_format="user item rating", sep=",", rating_scale=folds[0].train.scale)
    data = Dataset.load_from_folds(files, reader=reader)
    algo = surprise_bridge.make_algorithm(algo_name, seed)
    out = cross_validate(algo, data, measures=["rmse", "mae"], cv=PredefinedKFold(), n_jobs=1)
    return out["test_rmse"], out["test_mae"]


@needs_surprise
@pytest.mark.parametrize("algo", ["BaselineOnly", "SVD"])
def test_surprise_rows_equal_surprise_itself(tiny_folds, tmp_path, algo):
    run = _run(tiny_folds, tmp_path / "bench", algo)
    entry = run.results["methods"][algo]
    assert entry["source"] == "surprise" and not run.failed
    theirs_rmse, theirs_mae = _surprise_on_files(tiny_folds, tmp_path, algo)
    ours_rmse = [f["rmse"] for f in entry["folds"]]
    ours_mae = [f["mae"] for f in entry["folds"]]
    np.testing.assert_allclose(ours_rmse, theirs_rmse, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours_mae, theirs_mae, rtol=0, atol=1e-10)
    assert entry["mean"]["rmse"] == pytest.approx(np.mean(theirs_rmse), abs=1e-10)


def test_cli_benchmark_on_a_file(tmp_path, capsys):
    path = tmp_path / "r.csv"
    write_ratings(synthetic(50, 30, 500, seed=2), path)
    out = tmp_path / "out"
    argv = ["benchmark", str(path), "--folds", "kfold", "--k", "3", "--seed", "1", "--models", "mean,baseline",
            "--param", "baseline.reg_user=5", "--out", str(out), "--quiet", "--no-plots"]
    assert main(argv) == 0
    text = capsys.readouterr()
    assert "baseline" in text.out and "results.json" in text.out
    doc = json.loads((out / "results.json").read_text())
    assert doc["seed"] == 1 and doc["k"] == 3 and doc["methods"]["baseline"]["params"]["reg_user"] == 5.0
    assert not (out / "rmse.png").exists()
    assert main(argv[:-1] + ["--resume"]) == 0
    assert "resume: mean" in capsys.readouterr().err
    assert (out / "rmse.png").read_bytes().startswith(PNG_SIGNATURE)
    assert main(["benchmark", str(path), "--out", str(out), "--quiet"]) == 2  # official folds of a file
    assert "official folds" in capsys.readouterr().err
    assert main(["benchmark", str(path), "--folds", "kfold", "--param", "oops", "--out", str(out), "--quiet"]) == 2
    assert main(["benchmark", str(path), "--folds", "kfold", "--seed", "-1", "--out", str(out), "--quiet"]) == 2


@pytest.mark.slow
def test_ml100k_surprise_and_dlfm_rows(ml100k_root, tmp_path):
    """On the official folds u1-u5, BaselineOnly's row is Surprise's own 0.9457 and dlfm's
    ``baseline`` (the same estimator) agrees with it."""
    from dlfm import datasets

    folds = list(datasets.official_folds("ml-100k", data_dir=ml100k_root))
    names = "baseline,BaselineOnly" if surprise_bridge.available() else "baseline"
    methods, notes = resolve_methods(names)
    run = run_benchmark(folds, dataset="ml-100k", scheme="official", methods=methods, notes=notes,
                        out_dir=tmp_path, log=lambda text: None)
    doc = run.results
    assert doc["methods"]["published: SVD++ (report)"]["source"] == "published"
    assert doc["methods"]["baseline"]["mean"]["rmse"] == pytest.approx(0.9457, abs=0.003)
    if surprise_bridge.available():
        assert doc["methods"]["BaselineOnly"]["mean"]["rmse"] == pytest.approx(0.9457, abs=0.003)


@needs_surprise
@pytest.mark.parametrize("algo", ["BaselineOnly", "SVD", "SVDpp", "NMF", "SlopeOne"])
def test_surprise_ranking_scores_are_surprise_estimates(tiny_folds, algo):
    """The vectorised scores (and the pair-by-pair path) equal Surprise's own unclipped estimate,
    including pairs it cannot predict (a user or item without training ratings)."""
    fold = tiny_folds[0]
    model = surprise_bridge.SurpriseModel(surprise_bridge.make_algorithm(algo, 0), algo, 0).fit(fold.train)
    users = np.array([0, 3, int(np.argmin(fold.train.user_counts))])
    items = np.arange(fold.train.n_items)
    got = model.score_matrix(users, items)
    raw_u, raw_i = fold.train.user_vocab.raw(users), fold.train.item_vocab.raw(items)
    want = np.array([[model.algo.predict(u, i, clip=False).est for i in raw_i] for u in raw_u])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_benchmark_ranks_every_method(tiny_folds, tmp_path):
    from dlfm.evaluation.ranking import parse_metrics

    names = "popular,baseline" + (",SVD" if surprise_bridge.available() else "")
    run = _run(tiny_folds, tmp_path, names, ranking=parse_metrics("rmse,ndcg@5,recall@5"), plots=False)
    assert not run.failed
    for name, entry in run.results["methods"].items():
        for key in ("ndcg@5", "recall@5"):
            assert key in entry["folds"][0] and 0 <= entry["mean"][key] <= 1, (name, key)
        assert "map@5" not in entry["mean"]
    popular, baseline = (run.results["methods"][n]["mean"] for n in ("popular", "baseline"))
    assert popular["rmse"] == pytest.approx(baseline["rmse"])  # popular predicts the baseline's rating...
    assert popular["ndcg@5"] != baseline["ndcg@5"]  # ...but ranks by popularity
    md = (tmp_path / "results.md").read_text()
    assert "| Method | ndcg@5 | recall@5 | Rank (s) |" in md and "| popular |" in md
    with open(tmp_path / "results.csv", newline="") as handle:
        assert "ndcg@5" in next(csv.reader(handle))

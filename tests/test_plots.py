"""Pictures: valid, non-empty PNGs from results, slices and training histories; the plot commands."""

from __future__ import annotations

import numpy as np
import pytest

from dlfm import plots
from dlfm.cli.main import main
from dlfm.data.ratings import Ratings
from dlfm.datasets import synthetic, write_ratings
from dlfm.errors import ConfigError
from dlfm.evaluation.benchmark import published_rows
from dlfm.models import create

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_SIGNATURE)


HISTORY = [{"epoch": e, "train_loss": 1.0 / e, "val_rmse": 1.0 + (e - 4) ** 2 / 50, "seconds": 0.1} for e in range(1, 9)]


class FakeDistributionModel:
    """Anything with predict (and predict_distribution) on raw ids can be drawn."""

    def predict(self, users, items):
        return np.array([1.0 + (hash((u, i)) % 40) / 10 for u, i in zip(users, items)])

    def predict_distribution(self, users, items, n_samples=10):
        mean = self.predict(users, items)
        std = np.full(len(mean), 0.4)
        return {"mean": mean, "std": std, "q05": mean - 0.66, "q95": mean + 0.66}


def test_rmse_figure_marks_published_rows(tmp_path):
    results = {"dataset": "ml-100k", "folds": "official", "fold_names": ["u1", "u2"],
               "methods": {"mf": {"source": "dlfm", "folds": [{}, {}], "mean": {"rmse": 0.90}, "std": {"rmse": 0.01}},
                           "SVD": {"source": "surprise", "folds": [{}, {}], "mean": {"rmse": 0.93},
                                   "std": {"rmse": 0.004}},
                           **published_rows()}}
    fig = plots.rmse_figure(results)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0] == "mf" and "published: SVD++ (report)" in labels
    styles = {t.get_text(): t.get_style() for t in fig.axes[0].get_yticklabels()}
    assert styles["published: SVD (report)"] == "italic" and styles["SVD"] == "normal"
    path = tmp_path / "sub" / "rmse.png"
    plots.save_png(fig, path)
    assert _is_png(path)
    assert [p.name for p in path.parent.iterdir()] == ["rmse.png"]  # no temporary file left behind
    with pytest.raises(ConfigError):
        plots.rmse_figure({"methods": {}})


def test_choose_and_extract_a_dense_slice():
    ratings = Ratings.from_raw(["a", "a", "a", "b", "b", "c", "d"], ["x", "y", "z", "x", "y", "x", "w"],
                               [5, 0, 3, 4, 2, 1, 2], scale=(0, 5))
    users, items = plots.choose_slice(ratings, 2, 2)
    assert users == ["a", "b"] and items == ["x", "y"]
    block = plots.matrix_slice(ratings, ["a", "c", "zz"], ["y", "x"])
    assert block[0].tolist() == [0.0, 5.0]  # a rating of 0 is a rating, not a gap
    assert np.isnan(block[1, 0]) and block[1, 1] == 1.0 and np.isnan(block[2]).all()


def test_slice_figure_with_predictions_and_std(tmp_path):
    ratings = synthetic(40, 30, 500, seed=0)
    model = create("baseline").fit(ratings)
    users, items = plots.choose_slice(ratings, 12, 10)
    observed = plots.matrix_slice(ratings, users, items)
    fake = FakeDistributionModel()
    predictions = {"baseline": plots.predict_grid(model, users, items), "fake": plots.predict_grid(fake, users, items)}
    stds = {"fake": plots.distribution_grid(fake, users, items, n_samples=5)}
    assert plots.distribution_grid(model, users, items) is None
    assert predictions["baseline"].shape == (12, 10) and stds["fake"].shape == (12, 10)
    held_out = ~np.isnan(observed) & (np.arange(10)[None, :] % 3 == 0)
    fig = plots.slice_figure(observed, predictions, held_out=held_out, stds=stds, scale=ratings.scale, title="t")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "Observed ratings" in titles and "fake: predictive std" in titles
    plots.save_png(fig, tmp_path / "slice.png")
    assert _is_png(tmp_path / "slice.png")


def test_curves_figure(tmp_path):
    fig = plots.curves_figure({"dlf": HISTORY, "vdlf": [{"epoch": 1, "train_loss": 3.0, "val_rmse": 1.1}], "mf": []})
    loss_ax, val_ax = fig.axes[:2]
    assert len(loss_ax.lines) == 2 and "epoch" in val_ax.get_xlabel() and "RMSE" in val_ax.get_ylabel()
    plots.save_png(fig, tmp_path / "curves.png")
    assert _is_png(tmp_path / "curves.png")
    with pytest.raises(ConfigError, match="no training history"):
        plots.curves_figure({"mf": []})


def test_plot_commands(tmp_path, capsys):
    data = tmp_path / "r.csv"
    write_ratings(synthetic(40, 30, 500, seed=1), data)
    model_path = tmp_path / "m.dlfm"
    assert main(["train", str(data), "--model", "baseline", "-o", str(model_path)]) == 0
    out = tmp_path / "slice.png"
    assert main(["plot", "slice", str(model_path), "--users", "15", "--items", "12", "--out", str(out)]) == 0
    assert _is_png(out)
    out2 = tmp_path / "slice2.png"
    assert main(["plot", "slice", str(model_path), "--data", str(data), "--out", str(out2)]) == 0
    assert _is_png(out2)
    capsys.readouterr()
    assert main(["plot", "curves", str(model_path), "--out", str(tmp_path / "c.png")]) == 2
    assert "no per-epoch history" in capsys.readouterr().err
    # a model file that carries a training history (as the neural models save one)
    from dlfm.models import Recommender

    model = Recommender.load(model_path)
    model.history_ = HISTORY
    model.save(tmp_path / "h.dlfm")
    assert main(["plot", "curves", str(tmp_path / "h.dlfm"), "--out", str(tmp_path / "c.png")]) == 0
    assert _is_png(tmp_path / "c.png")

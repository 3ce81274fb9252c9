"""Pictures of results and models (PNG, matplotlib's Agg renderer, written atomically).

- :func:`rmse_figure`: test RMSE of every method of a benchmark, mean ± std over the folds, as a
  sorted horizontal bar chart; methods run here and numbers copied from a publication look
  different.
- :func:`slice_figure`: the report's Figure 3 — a dense slice of the rating matrix (the most
  active users × the most rated items) beside each model's predictions on the same cells, on one
  colour scale; models with ``predict_distribution`` also show their predictive standard
  deviation.
- :func:`curves_figure`: training loss and validation RMSE per epoch of the neural models, read
  from a fitted model's ``history_`` (a list of ``{"epoch", "train_loss", "val_rmse", ...}``).

Figures are built with :class:`matplotlib.figure.Figure` (no pyplot state, no display needed)
and written by :func:`save_png` through :func:`dlfm.persistence.atomic_write`.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from dlfm.data.ratings import Ratings
from dlfm.errors import ConfigError

SOURCE_COLORS = {"dlfm": "#1f77b4", "surprise": "#ff7f0e", "published": "#bdbdbd"}
SOURCE_LABELS = {"dlfm": "dlfm model, run here", "surprise": "Surprise algorithm, run here",
                 "published": "published in the report (not run here)"}
MISSING_COLOR = "#dcdcdc"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Any, dpi: int = 100, *, palette: bool = True) -> bytes:
    """The figure rendered as PNG bytes (Agg); with ``palette`` reduced to at most 256 colours
    (indistinguishable for these charts, and several times smaller)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    if not palette:
        return buffer.getvalue()
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return buffer.getvalue()
    buffer.seek(0)
    with Image.open(buffer) as image:
        reduced = image.convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
    out = io.BytesIO()
    reduced.save(out, format="PNG", optimize=True)
    return out.getvalue()


def save_png(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Render ``fig`` to PNG in memory, then write the bytes atomically to ``path``."""
    from dlfm.persistence import atomic_write

    data = png_bytes(fig, dpi)
    with atomic_write(path) as handle:
        handle.write(data)


# ---------------------------------------------------------------------------- RMSE per method
def folds_caption(results: Mapping[str, Any]) -> str:
    """``official folds u1–u5`` or ``5-fold cross-validation (seed 0)``, for titles."""
    names = list(results.get("fold_names") or [])
    span = f"{names[0]}–{names[-1]}" if len(names) > 1 else (names[0] if names else "")
    if results.get("folds") == "kfold":
        seed = results.get("seed")
        return f"{len(names)}-fold cross-validation" + (f" (seed {seed})" if seed is not None else "")
    return f"{results.get('folds', '')} folds {span}".strip()


def rmse_figure(results: Mapping[str, Any], *, metric: str = "rmse") -> Any:
    """Horizontal bars of ``metric`` (mean ± std over folds) per method, best at the top.

    ``results`` is a benchmark document (``{"dataset", "folds", "methods": {name: {"source",
    "mean", "std", "folds"}}}``)."""
    rows = []
    for name, entry in results.get("methods", {}).items():
        value = entry.get("mean", {}).get(metric)
        if value is None or not math.isfinite(value):
            continue
        std = entry.get("std", {}).get(metric) or 0.0
        rows.append((name, entry.get("source", "dlfm"), float(value), float(std), len(entry.get("folds", []))))
    if not rows:
        raise ConfigError(f"no method has a {metric.upper()} to plot")
    rows.sort(key=lambda r: (r[2], r[0]))
    n = len(rows)
    fig = _figure(10.0, 1.6 + 0.34 * n)
    ax = fig.add_subplot()
    y = np.arange(n)
    values = np.array([r[2] for r in rows])
    stds = np.array([r[3] for r in rows])
    lo_edge = float(np.min(values - stds))
    left = max(0.0, math.floor((lo_edge - 0.04) * 20) / 20)  # a multiple of 0.05 below the best
    # methods far behind the best (e.g. random guessing) would squash the rest: cut them off
    close = values <= values.min() + max(3 * (values.min() - left), 0.1)
    hi_edge = float(np.max((values + stds)[close]))
    span = hi_edge - left
    cut = hi_edge + 0.04 * span
    for k, (name, source, value, std, n_folds) in enumerate(rows):
        published = source == "published"
        beyond = value > cut
        end = cut if beyond else value
        ax.barh(k, end - left, left=left, height=0.7, color=SOURCE_COLORS.get(source, "#7f7f7f"),
                edgecolor="#555555" if published else "none", hatch="///" if published else None, linewidth=0.6)
        if n_folds > 1 and std > 0 and not beyond:
            ax.errorbar(value, k, xerr=std, fmt="none", ecolor="black", elinewidth=1.0, capsize=3)
        text = f"{value:.4f}" + (f" ± {std:.4f}" if n_folds > 1 else "") + ("  (published)" if published else "")
        if beyond:
            ax.plot([end], [k], marker=">", color=SOURCE_COLORS.get(source, "#7f7f7f"), markersize=9, clip_on=False)
            text += "  (off scale)"
        ax.text((end if beyond else value + std) + span * 0.015, k, text, va="center", fontsize=8,
                color="#444444" if published else "black", style="italic" if published else "normal")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=9)
    for label, row in zip(ax.get_yticklabels(), rows):
        if row[1] == "published":
            label.set_color("#555555")
            label.set_style("italic")
    ax.invert_yaxis()
    ax.set_xlim(left, cut + span * 0.34)
    ax.grid(axis="x", color="#e0e0e0", linewidth=0.8)
    ax.set_axisbelow(True)
    unit = "rating points" if metric in ("rmse", "mae") else ""
    start = f"; axis starts at {left:g}" if left > 0 else ""
    ax.set_xlabel(f"test {metric.upper()} ({unit}; lower is better{start})" if unit else f"test {metric}")
    n_folds = len(results.get("fold_names") or [])
    ax.set_title(f"Test {metric.upper()} per method on {results.get('dataset', '?')}, {folds_caption(results)}\n"
                 f"(mean ± std over {n_folds} folds; the same train/test pairs for every method run here)", fontsize=11)
    from matplotlib.patches import Patch

    present = [s for s in ("dlfm", "surprise", "published") if any(r[1] == s for r in rows)]
    handles = [Patch(facecolor=SOURCE_COLORS[s], edgecolor="#555555" if s == "published" else "none",
                     hatch="///" if s == "published" else None, label=SOURCE_LABELS[s]) for s in present]
    if any(r[4] > 1 for r in rows):
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="black", marker="|", markersize=8, linewidth=1,
                              label="error bar: ± 1 std over the folds"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8, frameon=False)
    return fig


# ---------------------------------------------------------------------------- matrix slice
def choose_slice(ratings: Ratings, n_users: int = 40, n_items: int = 40) -> tuple[list[Any], list[Any]]:
    """A dense slice: the ``n_users`` users with the most ratings, then the ``n_items`` items
    those users rated most (ties by index). Returns raw user ids and raw item ids."""
    if n_users < 1 or n_items < 1:
        raise ConfigError("a slice needs at least one user and one item")
    counts = ratings.user_counts
    users = np.lexsort((np.arange(len(counts)), -counts))[: min(n_users, int((counts > 0).sum()))]
    chosen = np.isin(ratings.users, users)
    item_counts = np.bincount(ratings.items[chosen], minlength=ratings.n_items)
    items = np.lexsort((np.arange(len(item_counts)), -item_counts))[: min(n_items, int((item_counts > 0).sum()))]
    return ratings.user_vocab.raw(users), ratings.item_vocab.raw(items)


def matrix_slice(ratings: Ratings, users: Sequence[Any], items: Sequence[Any]) -> np.ndarray:
    """The ``len(users) × len(items)`` block of the rating matrix, NaN where unrated."""
    u = ratings.user_vocab.lookup(list(users))
    i = ratings.item_vocab.lookup(list(items))
    block = np.full((len(u), len(i)), np.nan)
    row = np.full(ratings.n_users, -1)
    col = np.full(ratings.n_items, -1)
    row[u[u >= 0]] = np.flatnonzero(u >= 0)
    col[i[i >= 0]] = np.flatnonzero(i >= 0)
    r, c = row[ratings.users], col[ratings.items]
    inside = (r >= 0) & (c >= 0)
    block[r[inside], c[inside]] = ratings.ratings[inside]
    return block


def predict_grid(model: Any, users: Sequence[Any], items: Sequence[Any]) -> np.ndarray:
    """A model's predictions for every (user, item) cell of the slice."""
    grid_u = [u for u in users for _ in items]
    grid_i = [i for _ in users for i in items]
    return np.asarray(model.predict(grid_u, grid_i), dtype=np.float64).reshape(len(users), len(items))


def distribution_grid(model: Any, users: Sequence[Any], items: Sequence[Any], n_samples: int = 100) -> np.ndarray | None:
    """The predictive standard deviation per cell, for models with ``predict_distribution``."""
    method = getattr(model, "predict_distribution", None)
    if method is None:
        return None
    grid_u = [u for u in users for _ in items]
    grid_i = [i for _ in users for i in items]
    dist = method(grid_u, grid_i, n_samples=n_samples)
    return np.asarray(dist["std"], dtype=np.float64).reshape(len(users), len(items))


def _cmap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=MISSING_COLOR)


def slice_figure(observed: np.ndarray, predictions: Mapping[str, np.ndarray], *,
                 held_out: np.ndarray | None = None, stds: Mapping[str, np.ndarray] | None = None,
                 scale: tuple[float, float] = (1.0, 5.0), title: str = "", n_columns: int = 6) -> Any:
    """Panels: the observed slice (grey = unrated, dots = held-out test ratings), each model's
    predictions on the same cells (one colour scale), and predictive standard deviations.

    Args:
        observed: ``U × I`` ratings with NaN where unrated.
        predictions: model name → ``U × I`` predicted ratings.
        held_out: ``U × I`` booleans marking observed cells that were not used for training;
            each prediction panel's title gives its RMSE on those cells.
        stds: model name → ``U × I`` predictive standard deviations.
    """
    stds = dict(stds or {})
    panels: list[tuple[str, str, np.ndarray]] = [("observed", "Observed ratings", observed)]
    for name, grid in predictions.items():
        label = name
        if held_out is not None and held_out.any():
            err = float(np.sqrt(np.mean((grid[held_out] - observed[held_out]) ** 2)))
            label = f"{name}\nRMSE on • cells {err:.3f}"
        panels.append(("rating", label, grid))
        if name in stds:
            panels.append(("std", f"{name}: predictive std", stds[name]))
    n = len(panels)
    cols = min(n_columns, n)
    rows = math.ceil(n / cols)
    fig = _figure(2.45 * cols + 1.4, 2.75 * rows + 0.9)
    axes = fig.subplots(rows, cols, squeeze=False)
    rating_cmap, std_cmap = _cmap("viridis"), _cmap("magma")
    std_max = max((float(np.nanmax(s)) for s in stds.values() if np.isfinite(s).any()), default=1.0)
    rating_image = std_image = None
    n_users, n_items = observed.shape
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.set_axis_off()
            continue
        kind, label, grid = panels[k]
        masked = np.ma.masked_invalid(grid)
        if kind == "std":
            std_image = ax.imshow(masked, cmap=std_cmap, vmin=0.0, vmax=std_max, interpolation="nearest", aspect="equal")
        else:
            rating_image = ax.imshow(masked, cmap=rating_cmap, vmin=scale[0], vmax=scale[1], interpolation="nearest",
                                     aspect="equal")
        if kind == "observed" and held_out is not None and held_out.any():
            yy, xx = np.nonzero(held_out)
            ax.scatter(xx, yy, s=3, c="white", edgecolors="black", linewidths=0.3)
        ax.set_title(label, fontsize=8.5, fontweight="bold" if kind == "observed" else "normal")
        ax.set_xticks([])
        ax.set_yticks([])
        if k % cols == 0:
            ax.set_ylabel(f"{n_users} users\n(most active first)", fontsize=7.5)
        if k >= n - cols:
            ax.set_xlabel(f"{n_items} items (most rated first)", fontsize=7.5)
    if rating_image is not None:
        bar = fig.colorbar(rating_image, ax=axes, shrink=0.6, pad=0.01, aspect=30)
        bar.set_label("rating (stars)")
    if std_image is not None:
        bar = fig.colorbar(std_image, ax=axes, shrink=0.6, pad=0.01, aspect=30)
        bar.set_label("predictive std (stars)")
    note = "grey = unrated"
    if held_out is not None and held_out.any():
        note += "; • = held-out test rating (not seen in training)"
    import textwrap

    width_chars = int(fig.get_figwidth() * 12)
    heading = "\n".join(textwrap.wrap(title, width_chars)) + "\n" if title else ""
    fig.suptitle(heading + note, fontsize=10)
    return fig


# ---------------------------------------------------------------------------- training curves
def has_curves(history: Sequence[Mapping[str, Any]] | None) -> bool:
    return bool(history) and any("train_loss" in h or "val_rmse" in h for h in history or [])


def curves_figure(histories: Mapping[str, Sequence[Mapping[str, Any]]], *, title: str = "") -> Any:
    """Training loss and validation RMSE per epoch, one line per model."""
    histories = {name: list(h) for name, h in histories.items() if has_curves(h)}
    if not histories:
        raise ConfigError("no training history to plot: only neural models (dlf, vdlf) record one per epoch")
    fig = _figure(11.0, 4.4)
    ax_loss, ax_val = fig.subplots(1, 2)
    losses_positive = True
    for k, (name, history) in enumerate(histories.items()):
        color = f"C{k % 10}"
        epochs = np.array([h.get("epoch", n + 1) for n, h in enumerate(history)], dtype=float)
        loss = np.array([h.get("train_loss", np.nan) for h in history], dtype=float)
        val = np.array([h.get("val_rmse", np.nan) for h in history], dtype=float)
        if np.isfinite(loss).any():
            ax_loss.plot(epochs, loss, "-o", color=color, markersize=2.5, linewidth=1.4, label=name)
            losses_positive &= bool(np.nanmin(loss) > 0)
        if np.isfinite(val).any():
            ax_val.plot(epochs, val, "-o", color=color, markersize=2.5, linewidth=1.4, label=name)
            best = int(np.nanargmin(val))
            ax_val.scatter([epochs[best]], [val[best]], s=60, facecolors="none", edgecolors=color, linewidths=1.5,
                           zorder=3)
            right_half = epochs[best] > (np.nanmin(epochs) + np.nanmax(epochs)) / 2
            ax_val.annotate(f"best {val[best]:.4f} (epoch {epochs[best]:g})", (epochs[best], val[best]),
                            textcoords="offset points", xytext=(-8 if right_half else 8, 8 + 10 * k),
                            ha="right" if right_half else "left", fontsize=7.5, color=color)
    spans = [np.nanmax(a) / np.nanmin(a) for a in
             (np.array([h.get("train_loss", np.nan) for h in hist], dtype=float) for hist in histories.values())
             if np.isfinite(a).any() and np.nanmin(a) > 0]
    if losses_positive and spans and max(spans) > 20:
        ax_loss.set_yscale("log")
    ax_loss.set_title("Training loss per epoch")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss (model's objective per rating)")
    ax_val.set_title("Validation RMSE per epoch (○ = best epoch)")
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("validation RMSE (rating points)")
    for ax in (ax_loss, ax_val):
        ax.grid(color="#e0e0e0", linewidth=0.8)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig

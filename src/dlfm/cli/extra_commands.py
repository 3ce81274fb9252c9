"""``dlfm benchmark`` and ``dlfm plot slice|curves``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dlfm.cli.common import (add_data_dir_option, add_data_options, add_k_option, add_threads_option, apply_threads,
                             format_table, select_folds)
from dlfm.cli.model_commands import add_metric_options, ranking_spec
from dlfm.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark", help="run every method on the same folds: table, CSV, JSON and pictures",
        description="Fit dlfm's models and Surprise's algorithms on the identical folds and write DIR/results.json, "
                    "DIR/results.md, DIR/results.csv, DIR/rmse.png, DIR/slice.png and (for neural models) "
                    "DIR/curves.png. On ml-100k the report's published numbers (Figure 4) are added as reference "
                    "rows marked 'published'.")
    add_data_options(p)
    p.add_argument("--folds", choices=["official", "kfold"], default="official",
                   help="official folds (ML-100k: u1-u5) or seeded random K-fold (default official)")
    add_k_option(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the random folds and of every model (default 0)")
    p.add_argument("--models", default="all", metavar="A,B,...",
                   help="methods: dlfm's (mean, baseline, pmf, mf, dlf, vdlf), Surprise's class names (SVD, SVDpp, "
                        "KNNBaseline, ...), or the groups all, dlfm, surprise (default all)")
    p.add_argument("--param", action="append", default=[], metavar="MODEL.KEY=VALUE",
                   help="a hyper-parameter of one method (repeatable), e.g. --param mf.n_factors=50 "
                        "--param SVD.n_epochs=30")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--resume", action="store_true", help="skip the methods already in DIR/results.json")
    pub = p.add_mutually_exclusive_group()
    pub.add_argument("--published", dest="published", action="store_true", default=None,
                     help="add the report's published rows (default: only for ml-100k)")
    pub.add_argument("--no-published", dest="published", action="store_false", help="leave the published rows out")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    p.add_argument("--slice-size", type=int, default=40, metavar="N",
                   help="users and items in the slice picture (default 40)")
    add_threads_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress display")
    add_metric_options(p)
    p.set_defaults(handler=run_benchmark)

    p = sub.add_parser("plot", help="pictures of a saved model: a slice of the rating matrix, training curves",
                       description="Draw a saved model: `slice` (observed ratings beside the model's predictions, "
                                   "and its predictive std when it has one) or `curves` (loss and validation RMSE "
                                   "per epoch).")
    kinds = p.add_subparsers(dest="plot_kind", metavar="KIND", parser_class=type(p))
    kinds.required = True
    s = kinds.add_parser("slice", help="a dense slice of the rating matrix beside the model's predictions",
                         description="The most active users × the most rated items: the observed ratings "
                                     "(grey = unrated; dots = ratings of --data the model did not train on) beside "
                                     "the model's predictions on the same colour scale, and its predictive "
                                     "standard deviation when the model has a predictive distribution.")
    s.add_argument("model_path", metavar="MODEL", help="a saved model file")
    s.add_argument("--data", metavar="DATASET|FILE",
                   help="ratings to show and choose the slice from (default: the model's training ratings)")
    add_data_dir_option(s)
    s.add_argument("--users", type=int, default=40, help="how many users (default 40)")
    s.add_argument("--items", type=int, default=40, help="how many items (default 40)")
    s.add_argument("--samples", type=int, default=100, help="samples of the predictive distribution (default 100)")
    s.add_argument("--out", required=True, metavar="FILE.png")
    s.set_defaults(handler=run_plot_slice)

    c = kinds.add_parser("curves", help="training loss and validation RMSE per epoch of a neural model",
                         description="Training loss and validation RMSE per epoch, from the history saved "
                                     "with a neural model (dlf, vdlf).")
    c.add_argument("model_path", metavar="MODEL", help="a saved model file")
    c.add_argument("--out", required=True, metavar="FILE.png")
    c.set_defaults(handler=run_plot_curves)


def run_benchmark(args: argparse.Namespace) -> int:
    from dlfm.evaluation.benchmark import order_methods, parse_method_params, resolve_methods, run_benchmark as bench

    if args.slice_size < 1:
        raise ConfigError("--slice-size must be at least 1")
    if args.seed < 0:
        raise ConfigError("--seed must be a non-negative integer")
    apply_threads(args)
    ranking = ranking_spec(args)
    methods, notes = resolve_methods(args.models)
    params = parse_method_params(args.param, methods)
    for method in methods:
        method.params = params.get(method.name, {})
    folds, dataset = select_folds(args, args.seed)
    folds = list(folds)
    out = Path(args.out)
    print(f"dlfm benchmark: {len(methods)} methods on {dataset} ({args.folds} folds: "
          f"{', '.join(f.name for f in folds)}) -> {out}", file=sys.stderr, flush=True)
    run = bench(folds, dataset=dataset, scheme=args.folds, methods=methods, seed=args.seed,
                k=args.k if args.folds == "kfold" else None, out_dir=out, resume=args.resume,
                published=args.published, plots=not args.no_plots, slice_size=args.slice_size,
                progress=not args.quiet, notes=notes, ranking=ranking)
    entries = run.results["methods"]
    run_names, published = order_methods(run.results)
    ordered = run_names + published
    ranked = list(ranking.names) if ranking is not None else []
    rows = []
    for name in ordered:
        e = entries[name]
        mean, std = e["mean"], e.get("std", {})
        rows.append([name, e["source"], _cell(mean.get("rmse")), _cell(std.get("rmse")), _cell(mean.get("mae")),
                     *[_cell(mean.get(k)) for k in ranked],
                     _cell(mean.get("fit_seconds")), _cell(mean.get("predict_seconds"))])
    print(format_table(["method", "source", "rmse", "rmse_std", "mae", *ranked, "fit_s", "predict_s"], rows))
    for path in run.written:
        print(f"wrote {path}")
    if run.failed:
        print(f"dlfm benchmark: {len(run.failed)} method(s) failed: {', '.join(run.failed)}", file=sys.stderr)
        return 1
    return 0


def _cell(value: Any) -> Any:
    return "-" if value is None else value


def run_plot_slice(args: argparse.Namespace) -> int:
    import numpy as np

    from dlfm import datasets, plots
    from dlfm.models import Recommender

    if args.users < 1 or args.items < 1:
        raise ConfigError("--users and --items must be at least 1")
    model = Recommender.load(args.model_path)
    if args.data:
        data = datasets.load_any(args.data, data_dir=args.data_dir)
        source = args.data
    else:
        data = model.train_
        source = f"{model.train_.name} (training ratings)"
    users, items = plots.choose_slice(data, args.users, args.items)
    observed = plots.matrix_slice(data, users, items)
    held_out = None
    if args.data:
        trained = plots.matrix_slice(model.train_, users, items)
        held_out = ~np.isnan(observed) & np.isnan(trained)
    predictions = {model.name: plots.predict_grid(model, users, items)}
    stds = {}
    std = plots.distribution_grid(model, users, items, n_samples=args.samples)
    if std is not None:
        stds[model.name] = std
    title = (f"{source}: {len(users)} most active users × {len(items)} most rated items — observed ratings and "
             f"{model.name}'s predictions (same colour scale)")
    fig = plots.slice_figure(observed, predictions, held_out=held_out, stds=stds, scale=tuple(model.rating_scale_),
                             title=title, n_columns=3)
    plots.save_png(fig, args.out)
    print(f"wrote {args.out}")
    return 0


def run_plot_curves(args: argparse.Namespace) -> int:
    from dlfm import plots
    from dlfm.models import Recommender

    model = Recommender.load(args.model_path)
    if not plots.has_curves(model.history_):
        raise ConfigError(f"{args.model_path}: this {model.name} model has no per-epoch history to plot "
                          "(only neural models such as dlf and vdlf record one)")
    name = model.train_.name
    fig = plots.curves_figure({model.name: model.history_}, title=f"{model.name} trained on {name}")
    plots.save_png(fig, args.out)
    print(f"wrote {args.out}")
    return 0

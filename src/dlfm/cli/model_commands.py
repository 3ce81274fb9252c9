"""``dlfm cv``, ``dlfm train``, ``dlfm predict`` and ``dlfm recommend``."""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from typing import Any

import numpy as np

from dlfm.cli.common import (add_data_options, add_device_option, add_json_option, add_k_option, add_reading_options,
                             add_threads_option, apply_threads, emit_json, format_table, is_main_process, load_source,
                             select_folds)
from dlfm.errors import ConfigError


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="baseline", help="model name: mean, baseline, pmf, mf, dlf, vdlf (default baseline)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a model hyper-parameter (repeatable), e.g. --param n_factors=50")
    # no argparse choices: the names are dlfm.nn.likelihoods.LIKELIHOODS (checked by the model's declared
    # hyper-parameter in model_params), which imports torch — the parser is built for every command
    parser.add_argument("--likelihood", metavar="NAME",
                        help="observation model of dlf/vdlf (default gaussian; `dlfm params dlf` lists the others)")
    parser.add_argument("--binarize", type=float, metavar="THRESHOLD",
                        help="turn ratings into like (>= THRESHOLD) = 1 / dislike = 0")
    parser.add_argument("--seed", type=int, default=None, help="seed for the model and the random folds")
    add_device_option(parser, default="auto")
    add_threads_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--distributed", action="store_true",
                        help="train data-parallel in --nproc-per-node processes on this machine (torchrun)")
    parser.add_argument("--nproc-per-node", type=int, default=2, help="processes for --distributed (default 2)")


def add_metric_options(parser: argparse.ArgumentParser) -> None:
    """``--metrics`` and ``--relevance-threshold`` (shared by cv and benchmark)."""
    from dlfm.evaluation.ranking import DEFAULT_METRICS

    parser.add_argument("--metrics", default=DEFAULT_METRICS, metavar="M,M,...",
                        help="rmse, mae (always reported) and top-N metrics precision@K, recall@K, ndcg@K, map@K "
                             f"(default {DEFAULT_METRICS}); --metrics rmse,mae skips the ranking")
    parser.add_argument("--relevance-threshold", type=float, metavar="R",
                        help="a test rating >= R makes the item relevant for the top-N metrics (default: "
                             "low + 3/4 (high - low) of the rating scale, i.e. 4 on 1-5)")


def ranking_spec(args: argparse.Namespace) -> Any:
    """The :class:`~dlfm.evaluation.ranking.RankingSpec` of ``--metrics`` (``None``: rating metrics only)."""
    from dlfm.evaluation.ranking import parse_metrics

    return parse_metrics(args.metrics, args.relevance_threshold)


def maybe_launch(args: argparse.Namespace) -> int | None:
    """With --distributed outside torchrun, re-run this command under torchrun."""
    import os

    if not args.distributed or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    if args.nproc_per_node < 1:
        raise ConfigError("--nproc-per-node must be at least 1")
    from dlfm.training.distributed import launch

    argv = [a for a in args.argv if a != "--distributed"]
    return launch(argv, args.nproc_per_node)


def model_params(args: argparse.Namespace) -> dict[str, Any]:
    from dlfm.models import model_class, parse_params

    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be 0 or more, not {args.seed}")
    if args.binarize is not None and not np.isfinite(args.binarize):
        raise ConfigError("--binarize needs a finite threshold")
    params = parse_params(args.model, args.param)
    cls = model_class(args.model)
    names, specs = set(cls.param_names()), cls.param_specs()
    for flag, key, value in (("--likelihood", "likelihood", args.likelihood), ("--device", "device", args.device),
                             ("--seed", "seed", args.seed)):
        if value is None:
            continue
        if key not in names:
            if key == "seed":
                continue
            raise ConfigError(f"{flag} does not apply to model {args.model!r}")
        if key in specs:  # the model's declaration is the one list of allowed values
            try:
                specs[key].check(value, args.model)
            except ConfigError as exc:
                raise ConfigError(f"{flag}: {str(exc).split(': ', 1)[1]}") from None
        params.setdefault(key, value)
    if args.quiet and "verbose" in names:
        params.setdefault("verbose", False)
    apply_threads(args)
    return params


def binarizer(args: argparse.Namespace) -> Any:
    if args.binarize is None:
        return None
    threshold = float(args.binarize)

    def transform(ratings: Any) -> Any:
        return ratings.with_ratings((ratings.ratings >= threshold).astype(np.float64), scale=(0.0, 1.0))

    return transform


def add_transform_option(parser: argparse.ArgumentParser) -> None:
    """``--transform NAME`` (train, cv): fit on t(rating), predict and score in the original scale."""
    from dlfm.models.transforms import TRANSFORMS

    parser.add_argument("--transform", choices=list(TRANSFORMS), default=None,
                        help="fit on a transform of the ratings, inverted at prediction (log1p: log(1 + r), for "
                             "heavy-tailed counts; a Gaussian model only); predictions and scores are in the "
                             "original scale")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cv", help="cross-validate a model (official folds or K-fold)",
                       description="Fit and score a model on each fold; prints per-fold and mean RMSE, MAE and times. "
                                   "Folds: a named data set's official ones (ML-100k's u1-u5, the default there), "
                                   "seeded K-fold (the default for a file), or one fixed split given as two files "
                                   "(--train FILE --test FILE).")
    add_data_options(p, source_optional=True)
    add_model_options(p)
    add_transform_option(p)
    p.add_argument("--folds", default=None,
                   help="official (u1-u5), a fold name (u1, ua, ub), or kfold (default: official where the data set "
                        "has official folds, else kfold)")
    p.add_argument("--train", metavar="FILE", help="score one fixed split: fit on this rating file (with --test)")
    p.add_argument("--test", metavar="FILE", help="... and score on this one; its ids are mapped onto the training "
                                                  "file's, unknown ones get the fallback")
    add_k_option(p)
    p.add_argument("--fold", type=int, help="run only the N-th fold (1-based)")
    p.add_argument("--tune", type=int, default=0, metavar="TRIALS",
                   help="nested tuning: search TRIALS configurations inside each fold, on a validation part of "
                        "that fold's training ratings, then refit with the best (see `dlfm tune`)")
    p.add_argument("--tune-timeout", type=float, metavar="SECONDS", help="stop each fold's search after SECONDS")
    add_metric_options(p)
    p.add_argument("--protocol", choices=["ratings", "new-users", "new-items"], default="ratings",
                   help="ratings: the folds above (default); new-users / new-items: cold start — --k disjoint "
                        "sets of whole users (items) held out, each folded in from --given of its ratings")
    p.add_argument("--given", default="5,10,20", metavar="N,N,...",
                   help="cold start: ratings folded in per held-out user or item (default 5,10,20)")
    p.add_argument("--no-reference", action="store_true",
                   help="cold start: skip the reference model retrained with the given ratings")
    add_json_option(p)
    p.set_defaults(handler=run_cv)

    p = sub.add_parser("tune", help="search a model's hyper-parameters on a validation part (Optuna)",
                       description="Search the model's declared space with Optuna's TPE sampler and median "
                                   "pruning, on a validation part carved from the given ratings; prints and saves "
                                   "the best configuration. --param values are held fixed.")
    add_data_options(p)
    add_model_options(p)
    p.add_argument("--trials", type=int, default=20, help="number of configurations (default 20)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop the search after SECONDS")
    p.add_argument("--validation-ratio", type=float, default=0.1,
                   help="share of the ratings held out to score each configuration (default 0.1)")
    add_json_option(p)
    p.set_defaults(handler=run_tune)

    p = sub.add_parser("train", help="fit a model on a whole data set and save it",
                       description="Fit a model on all ratings of a data set or file and save it to one file.")
    add_data_options(p)
    add_model_options(p)
    add_transform_option(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="where to save the model")
    p.add_argument("--checkpoint-dir", metavar="DIR", help="write a checkpoint after every epoch (neural models)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    add_json_option(p)
    p.set_defaults(handler=run_train)

    p = sub.add_parser("predict", help="predict ratings with a saved model",
                       description="Predicted rating of a user for one or more items (--user, --item), or of "
                                   "every (user, item) pair of a file (--input pairs.csv --output preds.csv).")
    p.add_argument("model_path", metavar="MODEL")
    p.add_argument("--user", help="raw user id")
    p.add_argument("--item", action="append", help="raw item id (repeatable)")
    p.add_argument("--input", metavar="FILE", help="a delimited file of (user, item) pairs, one per line; extra "
                                                   "columns (a rating) are ignored")
    p.add_argument("--samples", type=int, default=0,
                   help="draw this many samples of the predictive distribution: adds std and a 90%% interval")
    p.add_argument("--strict", action="store_true", help="unknown ids are an error instead of the fallback")
    add_device_option(p)
    add_table_options(p, "user,item")
    add_json_option(p)
    p.set_defaults(handler=run_predict)

    p = sub.add_parser("recommend", help="top-N items for known users or for new ratings",
                       description="Top-k items a user has not rated, by predicted rating: for one user (--user), "
                                   "for many (--users FILE or --users all, with --output recs.csv), or for a user the "
                                   "model never saw, from their ratings: --ratings \"50:5,172:5,181:4\".")
    p.add_argument("model_path", metavar="MODEL")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="raw id of a known user")
    who.add_argument("--users", metavar="FILE|all", help="a file of user ids (one per line, or a user column), "
                                                         "or 'all' for every user of the model")
    who.add_argument("--ratings", help="a new user's ratings as ITEM:RATING,ITEM:RATING,...")
    p.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    p.add_argument("--include-seen", action="store_true", help="also rank items the user already rated")
    add_device_option(p)
    add_table_options(p, "user")
    add_json_option(p)
    p.set_defaults(handler=run_recommend)


def add_table_options(parser: argparse.ArgumentParser, roles: str) -> None:
    """``--output`` and the options that read a file of ids (``--input``, ``--users``)."""
    parser.add_argument("--output", dest="output_path", metavar="FILE",
                        help="write the rows as CSV, or JSON lines when FILE ends in .jsonl ('-' for stdout)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    group = add_reading_options(parser, "reading the file of ids")
    group.add_argument("--columns", help=f"the {roles} column(s) by name or 0-based position (default: a header's "
                                         "user/item names, else the first columns)")


def _only_fold(folds: Any, number: int | None) -> Any:
    """``--fold N``: the N-th fold alone (counting from 1)."""
    if number is None:
        return folds
    if number < 1:
        raise ConfigError("--fold counts from 1")
    chosen = list(itertools.islice(folds, number - 1, number))
    if not chosen:
        raise ConfigError(f"--fold {number}: there are fewer folds")
    return chosen


def run_cv(args: argparse.Namespace) -> int:
    from dlfm.evaluation.cv import cross_validate

    launched = maybe_launch(args)
    if launched is not None:
        return launched
    params = model_params(args)
    ranking = ranking_spec(args)
    if args.protocol != "ratings":
        if args.train is not None or args.test is not None:
            raise ConfigError("--train/--test is a fixed split; a cold-start protocol makes its own folds")
        return run_coldstart(args, params, ranking)
    if args.train is not None or args.test is not None:
        folds = _given_split(args)
    else:
        if args.source is None:
            raise ConfigError("dlfm cv needs a data set or rating file, or --train FILE --test FILE")
        folds, _ = select_folds(args, 0 if args.seed is None else args.seed)
    folds = _warn_small(_only_fold(folds, args.fold))
    if is_main_process():
        scheme = "one given split" if args.folds == "given" else f"{args.folds} folds"
        print(f"dlfm cv: {args.model} on {args.source} ({scheme}) params={params}", file=sys.stderr)

    def show(record: dict[str, Any]) -> None:
        if not is_main_process():
            return
        ranked = "".join(f"  {name} {record[name]:.4f}" for name in (ranking.names if ranking else ()) if name in record)
        print(f"  {record['fold']}: RMSE {record['rmse']:.4f}  MAE {record['mae']:.4f}{ranked}  "
              f"fit {record['fit_seconds']:.1f}s", file=sys.stderr, flush=True)

    if args.tune < 0:
        raise ConfigError(f"--tune must be 0 or more trials, not {args.tune}")
    if args.transform is not None and args.tune:
        raise ConfigError("--transform does not combine with --tune yet (the search fits untransformed ratings)")
    seed = 0 if args.seed is None else args.seed  # the folds' seed, and every model's default seed
    result = cross_validate(args.model, params, folds, dataset=args.source, seed=seed, tune_trials=args.tune,
                            tune_timeout=args.tune_timeout, on_fold=show, on_trial=_show_trial(args),
                            transform=binarizer(args), ranking=ranking, rating_transform=args.transform)
    result["folds_scheme"] = args.folds
    result["transform"] = args.transform
    if ranking is not None:
        result["ranking"] = ranking_record(ranking)
    if args.binarize is not None:
        result["binarize"] = args.binarize
    if args.train is not None:
        result.update({"train_file": args.train, "test_file": args.test})
    metrics = cv_columns(result["folds"])
    rows = [[r["fold"], *[r.get(m, float("nan")) for m in metrics], r["n_test"], r["n_unknown"]] for r in result["folds"]]
    rows.append(["mean", *[result["mean"].get(m, float("nan")) for m in metrics], "", ""])
    rows.append(["std", *[result["std"].get(m, float("nan")) for m in metrics], "", ""])
    print(format_table(["fold", *metrics, "n_test", "n_unknown"], rows))
    emit_json(args.json_path, result)
    return 0


#: the order of the ``cv`` table's columns: accuracy, then the likelihood's own metrics, then
#: the times; any other metric a model reports comes after these, alphabetically
CV_COLUMN_ORDER = ("rmse", "mae", "nll", "coverage50", "coverage90", "auc", "log_loss", "fit_seconds",
                   "predict_seconds", "epochs")


def cv_columns(records: list[dict[str, Any]]) -> list[str]:
    """The numeric metric columns of a ``cv`` table, in :data:`CV_COLUMN_ORDER` (fold, n_test
    and n_unknown are the table's first and last columns; other fields, such as a tuned
    fold's chosen parameters, are in the JSON only)."""
    present = {k for r in records for k, v in r.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)} - {"fold", "n_test", "n_unknown",
                                                                                "n_rank_users", "relevance_threshold"}
    fixed = [k for k in CV_COLUMN_ORDER if k in present]
    return fixed + sorted(present - set(fixed))


#: below this many test ratings a fold's RMSE is mostly noise, and ``cv`` warns
SMALL_TEST = 100


def _warn_small(folds: Any) -> Any:
    """Pass the folds through, warning (once) when a test part is too small to evaluate."""
    warned = False
    for fold in folds:
        if not warned and len(fold.test) < SMALL_TEST and is_main_process():
            print(f"dlfm: warning: {fold.name} tests on only {len(fold.test)} rating"
                  f"{'s' if len(fold.test) != 1 else ''} ({len(fold.train)} to train on): with fewer than "
                  f"{SMALL_TEST} test ratings its RMSE is mostly noise; use more data or fewer folds",
                  file=sys.stderr)
            warned = True
        yield fold


def _given_split(args: argparse.Namespace) -> list[Any]:
    """``--train FILE --test FILE``: one fixed fold, the test file's ids mapped onto the
    training file's (unknown ones counted in n_unknown and predicted by the fallback)."""
    from pathlib import Path

    from dlfm.data.splits import given_split

    if args.train is None or args.test is None:
        raise ConfigError("--train and --test go together: give both files")
    if args.source is not None:
        raise ConfigError(f"--train/--test give the data: leave out {args.source!r}")
    if args.folds not in (None, "given") or args.fold not in (None, 1):
        raise ConfigError("--train/--test score one fixed split: leave out --folds and --fold")
    train = load_source(args, args.train)
    test = load_source(args, args.test)
    fold = given_split(train, test, name=Path(args.test).name)
    args.folds, args.source = "given", f"{args.train} + {args.test}"
    if is_main_process():
        n_unknown = fold.n_unknown
        if n_unknown:
            print(f"dlfm: {n_unknown} of {len(test)} test ratings have a user or item without a rating in "
                  f"{args.train}: the model's fallback predicts them (n_unknown)", file=sys.stderr)
        train_keys = fold.train.users * fold.train.n_items + fold.train.items
        both = int(np.isin(fold.test.users * fold.test.n_items + fold.test.items, train_keys).sum())
        if both:
            print(f"dlfm: warning: {both} (user, item) pairs of {args.test} are in {args.train} too", file=sys.stderr)
    return [fold]


def _show_trial(args: argparse.Namespace) -> Any:
    """A one-line report per finished tuning trial (on stderr)."""
    def show(record: dict[str, Any]) -> None:
        if not is_main_process():
            return
        value = f"{record['value']:.4f}" if record["state"] == "complete" else "pruned"
        print(f"    trial {record['number']}: {value}  {record['params']}", file=sys.stderr, flush=True)

    return show


def run_tune(args: argparse.Namespace) -> int:
    from dlfm.evaluation.tuning import tune

    params = model_params(args)
    if not 0.0 < args.validation_ratio < 1.0:
        raise ConfigError(f"--validation-ratio must be between 0 and 1, not {args.validation_ratio}")
    ratings = load_source(args)
    transform = binarizer(args)
    if transform is not None:
        ratings = transform(ratings)
    result = tune(args.model, ratings, fixed=params, trials=args.trials, timeout=args.timeout,
                  seed=0 if args.seed is None else args.seed, validation_ratio=args.validation_ratio,
                  on_trial=_show_trial(args))
    result["dataset"] = args.source
    best = result["best_params"]
    print(f"best {result['metric']} {result['best_value']:.4f} (trial {result['best_trial']} of {result['n_trials']}, "
          f"{result['n_pruned']} pruned, {result['seconds']:.0f} s)")
    print("  " + " ".join(f"--param {k}={v}" for k, v in best.items() if k not in ("verbose", "device")))
    emit_json(args.json_path, result)
    return 0


def ranking_record(ranking: Any) -> dict[str, Any]:
    """What the JSON says about the top-N protocol (each fold records the ``relevance_threshold`` it used)."""
    return {"metrics": list(ranking.names), "threshold_option": ranking.threshold,
            "protocol": "all items with a training rating that the user did not rate in training; relevant = "
                        "test rating >= threshold (default: low + 3/4 (high - low) of the scale)"}


def run_coldstart(args: argparse.Namespace, params: dict[str, Any], ranking: Any) -> int:
    """``dlfm cv --protocol new-users|new-items``: :func:`dlfm.evaluation.coldstart.cold_start`."""
    from dlfm.evaluation.coldstart import cold_start, parse_given, summary_rows

    given = parse_given(args.given)
    if args.folds not in (None, "official", "kfold"):
        raise ConfigError(f"--folds {args.folds}: a cold-start protocol makes its own folds of whole users or items "
                          "(--k of them); leave --folds out")
    if args.binarize is not None:
        raise ConfigError("--binarize does not apply to a cold-start protocol")
    if args.k < 2:
        raise ConfigError(f"--k must be at least 2 (folds of held-out users or items), not {args.k}")
    ratings = load_source(args)
    side = "user" if args.protocol == "new-users" else "item"
    print(f"dlfm cv: {args.model} on {args.source}, protocol {args.protocol}, given {','.join(map(str, given))}, "
          f"{args.k} folds{'' if args.fold is None else f' (fold {args.fold} only)'}, params={params}", file=sys.stderr)

    def show(record: dict[str, Any]) -> None:
        ref = record.get("retrained", {})
        print(f"  {record['fold']} given {record['given']}: fold-in RMSE {record['fold_in']['rmse']:.4f}"
              + (f"  retrained RMSE {ref['rmse']:.4f}" if ref else ""), file=sys.stderr, flush=True)

    result = cold_start(args.model, params, ratings, side=side, given=given, k=args.k,
                        seed=0 if args.seed is None else args.seed, ranking=ranking, reference=not args.no_reference,
                        only_fold=args.fold, on_record=show, dataset=args.source)
    headers, rows = summary_rows(result)
    print(format_table(headers, rows))
    emit_json(args.json_path, result)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from dlfm.models import create

    launched = maybe_launch(args)
    if launched is not None:
        return launched
    params = model_params(args)
    if args.checkpoint_dir:
        from dlfm.training.checkpoint import check_directory

        check_directory(args.checkpoint_dir)  # before reading data and training, not after an epoch
    ratings = load_source(args)
    transform = binarizer(args)
    if transform is not None:
        ratings = transform(ratings)
    model = create(args.model, **params)
    started = time.perf_counter()
    if args.checkpoint_dir or args.resume:
        if not args.checkpoint_dir:
            raise ConfigError("--resume needs --checkpoint-dir")
        from dlfm.models.neural import NeuralFactorModel

        if not isinstance(model, NeuralFactorModel):
            raise ConfigError(f"--checkpoint-dir applies to the neural models (dlf, vdlf), not {args.model!r}")
        model.fit(ratings, checkpoint_dir=args.checkpoint_dir, resume=args.resume, transform=args.transform)
    else:
        model.fit(ratings, transform=args.transform)
    seconds = time.perf_counter() - started
    if not is_main_process():
        return 0
    model.save(args.output)
    print(f"trained {args.model} on {ratings.name} ({len(ratings)} ratings) in {seconds:.1f}s; saved {args.output}",
          file=sys.stderr if args.output == "-" else sys.stdout)  # -o -: stdout holds the model alone
    emit_json(args.json_path, {"model": args.model, "params": model.get_params(), "output": args.output,
                               "transform": args.transform, "fit_seconds": seconds, "ratings": len(ratings)})
    return 0


def _load_model(path: str, device: str | None = None) -> Any:
    from dlfm.models import Recommender

    return Recommender.load(path, device=device)


def _one_id(value: Any, flag: str) -> str:
    """argparse hands '--user=--' over as an empty list; ids must be plain strings."""
    if not isinstance(value, str):
        raise ConfigError(f"{flag} needs an id")
    return value


def _read_ids(args: argparse.Namespace, path: str, roles: tuple[str, ...]) -> Any:
    from dlfm.data.pairs import read_id_columns

    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    return read_id_columns(path, roles, sep=args.sep, header=args.header, columns=columns)


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and is_main_process()


def run_predict(args: argparse.Namespace) -> int:
    from dlfm.cli.outputs import write_table
    from dlfm.serving.queries import predict_table, records

    if args.input is None:
        if args.user is None or not args.item:
            raise ConfigError("dlfm predict needs --user and --item, or --input FILE of (user, item) pairs")
        users_text = [_one_id(args.user, "--user")] * len(args.item)
        items_text = [_one_id(item, "--item") for item in args.item]
    elif args.user is not None or args.item:
        raise ConfigError("--input reads the pairs from a file: leave out --user and --item")
    if args.samples < 0 or args.samples == 1:
        raise ConfigError(f"--samples needs at least 2 draws, not {args.samples}")
    model = _load_model(args.model_path, args.device)
    if args.samples and not hasattr(model, "distribution_indices"):
        raise ConfigError(f"--samples: a {model.name!r} model has no predictive distribution (dlf and vdlf have "
                          "one); leave out --samples for its point predictions")
    lines = source = None
    if args.input is not None:
        pairs = _read_ids(args, args.input, ("user", "item"))
        users_text, items_text, lines, source = pairs.columns["user"], pairs.columns["item"], pairs.lines, pairs.source
    table = predict_table(model, users_text, items_text, samples=args.samples, strict=args.strict, lines=lines,
                          source=source, progress=_progress(args))
    n, n_fallback = len(users_text), int(len(users_text) - sum(table["known"]))
    if args.input is None:
        rows = records(table)
        keys = [k for k in table if k not in ("user", "item", "known")]
        print(format_table(["user", "item", *keys, "known"], [[r["user"], r["item"], *[r[k] for k in keys], r["known"]]
                                                             for r in rows]))
    if args.output_path:
        write_table(args.output_path, table)
    if args.input is not None or args.output_path:
        note = f"; {n_fallback} with an unknown user or item got the fallback (known=false)" if n_fallback else ""
        where = f" to {args.output_path}" if args.output_path and args.output_path != "-" else ""
        print(f"predicted {n} pair{'s' if n != 1 else ''}{where}{note}", file=sys.stderr)
    emit_json(args.json_path, records(table))
    return 0


def parse_new_ratings(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        item, sep, value = part.rpartition(":")
        if not sep or not item.strip():
            raise ConfigError(f"--ratings expects ITEM:RATING pairs separated by commas, got {part!r}")
        try:
            rating = float(value)
        except ValueError:
            raise ConfigError(f"--ratings: rating {value!r} of item {item!r} is not a number") from None
        if not np.isfinite(rating):
            raise ConfigError(f"--ratings: rating of item {item!r} must be finite")
        out[item.strip()] = rating
    if not out:
        raise ConfigError("--ratings is empty")
    return out


def run_recommend(args: argparse.Namespace) -> int:
    from dlfm.cli.outputs import write_table
    from dlfm.serving.queries import display_ids, records

    if args.k < 1:
        raise ConfigError(f"-k must be at least 1, not {args.k}")
    if args.ratings is not None:
        args.ratings = _one_id(args.ratings, "--ratings")
    elif args.users is not None:
        args.users = _one_id(args.users, "--users")
    else:
        args.user = _one_id(args.user, "--user")
    model = _load_model(args.model_path, args.device)
    if args.users is not None:
        return _recommend_many(args, model)
    if args.ratings is not None:
        given = parse_new_ratings(args.ratings)
        lo, hi = model.rating_scale_
        for item, rating in given.items():
            if not lo <= rating <= hi:
                raise ConfigError(f"--ratings: rating {rating:g} of item {item!r} is outside the model's rating "
                                  f"scale [{lo:g}, {hi:g}]")
        top = model.recommend_new_user(given, args.k)
        who, user_id = "new user", None
    else:
        top = model.recommend(args.user, args.k, exclude_seen=not args.include_seen)
        user_id = display_ids(model.user_vocab_, [args.user], model.user_vocab_.lookup([args.user]))[0]
        who = f"user {user_id}"
    table = {"user": [user_id] * len(top), "rank": list(range(1, len(top) + 1)),
             "item": [item for item, _ in top], "score": [score for _, score in top]}
    print(f"top {len(top)} for {who}:")
    print(format_table(["rank", "item", "score"], [[n + 1, item, score] for n, (item, score) in enumerate(top)]))
    if args.output_path:
        write_table(args.output_path, table)
    emit_json(args.json_path, records(table))
    return 0


def _recommend_many(args: argparse.Namespace, model: Any) -> int:
    """``--users FILE|all``: the top-k of many users, vectorised, to --output (and --json)."""
    from dlfm.cli.outputs import write_table
    from dlfm.errors import DataError
    from dlfm.serving.queries import records

    if not (args.output_path or args.json_path):
        raise ConfigError("--users writes a table: give --output FILE (CSV, or .jsonl) or --json FILE")
    if args.users == "all":
        counts = model.train_.user_counts
        users = model.user_vocab_.raw(np.flatnonzero(counts > 0))
        if int((counts == 0).sum()):
            print(f"note: {int((counts == 0).sum())} users of the vocabulary have no training rating; left out",
                  file=sys.stderr)
    else:
        ids = _read_ids(args, args.users, ("user",))
        users = ids.columns["user"]
        known = model.user_vocab_.lookup(users)
        has = (known >= 0) & (model.train_.user_counts[np.maximum(known, 0)] > 0)
        if not has.all():
            k = int(np.argmin(has))
            raise DataError(f"unknown user {users[k]!r}: the model has no rating of it", source=ids.source,
                            line=int(ids.lines[k]))
        users = model.user_vocab_.raw(known)
    table = model.recommend_batch(users, args.k, exclude_seen=not args.include_seen, progress=_progress(args))
    if args.output_path:
        write_table(args.output_path, table)
    n_users = len(users)
    short = int((np.bincount(model.user_vocab_.lookup(table["user"]), minlength=model.train_.n_users)[
        model.user_vocab_.lookup(users)] < args.k).sum()) if n_users else 0
    if short:
        print(f"note: {short} users have fewer than {args.k} unseen items: they get fewer rows", file=sys.stderr)
    where = f" to {args.output_path}" if args.output_path and args.output_path != "-" else ""
    print(f"recommended {len(table['item'])} items for {n_users} user{'s' if n_users != 1 else ''}{where}",
          file=sys.stderr)
    emit_json(args.json_path, records(table))
    return 0

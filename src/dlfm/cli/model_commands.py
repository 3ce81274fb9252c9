"""``dlfm cv``, ``dlfm train``, ``dlfm predict`` and ``dlfm recommend``."""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from typing import Any

import numpy as np

from dlfm.cli.common import (add_data_options, add_json_option, emit_json, format_table, is_main_process, load_source,
                             select_folds)
from dlfm.errors import ConfigError


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="baseline", help="model name: mean, baseline, pmf, mf, dlf, vdlf (default baseline)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a model hyper-parameter (repeatable), e.g. --param n_factors=50")
    parser.add_argument("--likelihood", choices=["gaussian", "poisson", "bernoulli"],
                        help="observation model of dlf/vdlf (default gaussian)")
    parser.add_argument("--binarize", type=float, metavar="THRESHOLD",
                        help="turn ratings into like (>= THRESHOLD) = 1 / dislike = 0")
    parser.add_argument("--seed", type=int, default=None, help="seed for the model and the random folds")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], help="where neural models train (default auto)")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch")
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
    names = set(model_class(args.model).param_names())
    for flag, key, value in (("--likelihood", "likelihood", args.likelihood), ("--device", "device", args.device),
                             ("--seed", "seed", args.seed)):
        if value is None:
            continue
        if key not in names:
            if key == "seed":
                continue
            raise ConfigError(f"{flag} does not apply to model {args.model!r}")
        params.setdefault(key, value)
    if args.quiet and "verbose" in names:
        params.setdefault("verbose", False)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError("--threads must be at least 1")
        import torch

        torch.set_num_threads(args.threads)
    return params


def binarizer(args: argparse.Namespace) -> Any:
    if args.binarize is None:
        return None
    threshold = float(args.binarize)

    def transform(ratings: Any) -> Any:
        return ratings.with_ratings((ratings.ratings >= threshold).astype(np.float64), scale=(0.0, 1.0))

    return transform


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cv", help="cross-validate a model (official folds or K-fold)",
                       description="Fit and score a model on each fold; prints per-fold and mean RMSE, MAE and times.")
    add_data_options(p)
    add_model_options(p)
    p.add_argument("--folds", default="official", help="official (u1-u5), a fold name (u1, ua, ub), or kfold")
    p.add_argument("--k", type=int, default=5, help="number of folds for --folds kfold (default 5)")
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
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="where to save the model")
    p.add_argument("--checkpoint-dir", metavar="DIR", help="write a checkpoint after every epoch (neural models)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    add_json_option(p)
    p.set_defaults(handler=run_train)

    p = sub.add_parser("predict", help="predict ratings with a saved model",
                       description="Predicted rating of a user for one or more items.")
    p.add_argument("model_path", metavar="MODEL")
    p.add_argument("--user", required=True, help="raw user id")
    p.add_argument("--item", required=True, action="append", help="raw item id (repeatable)")
    p.add_argument("--samples", type=int, default=0, help="draw this many samples of the predictive distribution")
    p.add_argument("--strict", action="store_true", help="unknown ids are an error instead of the fallback")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], help="where a neural model computes (default: as saved)")
    add_json_option(p)
    p.set_defaults(handler=run_predict)

    p = sub.add_parser("recommend", help="top-N items for a known user or for new ratings",
                       description="Top-k items a user has not rated, by predicted rating. For a user the "
                                   "model never saw, give their ratings: --ratings \"50:5,172:5,181:4\".")
    p.add_argument("model_path", metavar="MODEL")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="raw id of a known user")
    who.add_argument("--ratings", help="a new user's ratings as ITEM:RATING,ITEM:RATING,...")
    p.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    p.add_argument("--include-seen", action="store_true", help="also rank items the user already rated")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], help="where a neural model computes (default: as saved)")
    add_json_option(p)
    p.set_defaults(handler=run_recommend)


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
        return run_coldstart(args, params, ranking)
    folds, _ = select_folds(args, 0 if args.seed is None else args.seed)
    folds = _only_fold(folds, args.fold)
    if is_main_process():
        print(f"dlfm cv: {args.model} on {args.source} ({args.folds} folds) params={params}", file=sys.stderr)

    def show(record: dict[str, Any]) -> None:
        if not is_main_process():
            return
        ranked = "".join(f"  {name} {record[name]:.4f}" for name in (ranking.names if ranking else ()) if name in record)
        print(f"  {record['fold']}: RMSE {record['rmse']:.4f}  MAE {record['mae']:.4f}{ranked}  "
              f"fit {record['fit_seconds']:.1f}s", file=sys.stderr, flush=True)

    if args.tune < 0:
        raise ConfigError(f"--tune must be 0 or more trials, not {args.tune}")
    seed = 0 if args.seed is None else args.seed  # the folds' seed, and every model's default seed
    result = cross_validate(args.model, params, folds, dataset=args.source, seed=seed, tune_trials=args.tune,
                            tune_timeout=args.tune_timeout, on_fold=show, on_trial=_show_trial(args),
                            transform=binarizer(args), ranking=ranking)
    result["folds_scheme"] = args.folds
    if ranking is not None:
        result["ranking"] = ranking_record(ranking)
    if args.binarize is not None:
        result["binarize"] = args.binarize
    metrics = [k for k, v in result["folds"][0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and k not in ("fold", "n_test", "n_unknown", "epochs", "n_rank_users", "rank_seconds",
                             "relevance_threshold")]
    rows = [[r["fold"], *[r.get(m, float("nan")) for m in metrics], r["n_test"]] for r in result["folds"]]
    rows.append(["mean", *[result["mean"].get(m, float("nan")) for m in metrics], ""])
    rows.append(["std", *[result["std"].get(m, float("nan")) for m in metrics], ""])
    print(format_table(["fold", *metrics, "n_test"], rows))
    emit_json(args.json_path, result)
    return 0


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
    if args.folds not in ("official", "kfold"):
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
        model.fit(ratings, checkpoint_dir=args.checkpoint_dir, resume=args.resume)
    else:
        model.fit(ratings)
    seconds = time.perf_counter() - started
    if not is_main_process():
        return 0
    model.save(args.output)
    print(f"trained {args.model} on {ratings.name} ({len(ratings)} ratings) in {seconds:.1f}s; saved {args.output}",
          file=sys.stderr if args.output == "-" else sys.stdout)  # -o -: stdout holds the model alone
    emit_json(args.json_path, {"model": args.model, "params": model.get_params(), "output": args.output,
                               "fit_seconds": seconds, "ratings": len(ratings)})
    return 0


def _load_model(path: str, device: str | None = None) -> Any:
    from dlfm.models import Recommender

    return Recommender.load(path, device=device)


def _one_id(value: Any, flag: str) -> str:
    """argparse hands '--user=--' over as an empty list; ids must be plain strings."""
    if not isinstance(value, str):
        raise ConfigError(f"{flag} needs an id")
    return value


def run_predict(args: argparse.Namespace) -> int:
    args.user = _one_id(args.user, "--user")
    args.item = [_one_id(item, "--item") for item in args.item]
    model = _load_model(args.model_path, args.device)
    unknown = "error" if args.strict else "fallback"
    known_user = args.user in model.user_vocab_
    rows = []
    for item in args.item:
        record: dict[str, Any] = {"user": args.user, "item": item,
                                  "known": bool(known_user and item in model.item_vocab_)}
        if args.samples and hasattr(model, "predict_distribution"):
            dist = model.predict_distribution([args.user], [item], n_samples=args.samples, unknown=unknown)
            record.update({"prediction": float(dist["mean"][0]), "std": float(dist["std"][0]),
                           "q05": float(dist["q05"][0]), "q95": float(dist["q95"][0])})
        else:
            record["prediction"] = float(model.predict(args.user, item, unknown=unknown))
        rows.append(record)
    keys = [k for k in rows[0] if k not in ("user", "item", "known")]
    print(format_table(["user", "item", *keys, "known"], [[r["user"], r["item"], *[r[k] for k in keys], r["known"]] for r in rows]))
    emit_json(args.json_path, rows if len(rows) > 1 else rows[0])
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
    if args.ratings is not None:
        args.ratings = _one_id(args.ratings, "--ratings")
    else:
        args.user = _one_id(args.user, "--user")
    model = _load_model(args.model_path, args.device)
    if args.ratings is not None:
        given = parse_new_ratings(args.ratings)
        top = model.recommend_new_user(given, args.k)
        who = "new user"
    else:
        top = model.recommend(args.user, args.k, exclude_seen=not args.include_seen)
        who = f"user {args.user}"
    print(f"top {len(top)} for {who}:")
    print(format_table(["rank", "item", "score"], [[n + 1, item, score] for n, (item, score) in enumerate(top)]))
    emit_json(args.json_path, {"user": args.user, "k": args.k,
                               "items": [item for item, _ in top], "scores": [score for _, score in top]})
    return 0

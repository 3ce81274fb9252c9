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
    add_json_option(p)
    p.set_defaults(handler=run_cv)

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
    folds, _ = select_folds(args, 0 if args.seed is None else args.seed)
    folds = _only_fold(folds, args.fold)
    if is_main_process():
        print(f"dlfm cv: {args.model} on {args.source} ({args.folds} folds) params={params}", file=sys.stderr)

    def show(record: dict[str, Any]) -> None:
        if not is_main_process():
            return
        print(f"  {record['fold']}: RMSE {record['rmse']:.4f}  MAE {record['mae']:.4f}  "
              f"fit {record['fit_seconds']:.1f}s", file=sys.stderr, flush=True)

    result = cross_validate(args.model, params, folds, dataset=args.source, on_fold=show, transform=binarizer(args))
    result["folds_scheme"] = args.folds
    if args.binarize is not None:
        result["binarize"] = args.binarize
    metrics = [k for k in result["folds"][0] if k not in ("fold", "n_test", "n_unknown", "epochs")]
    rows = [[r["fold"], *[r.get(m, float("nan")) for m in metrics], r["n_test"]] for r in result["folds"]]
    rows.append(["mean", *[result["mean"].get(m, float("nan")) for m in metrics], ""])
    rows.append(["std", *[result["std"].get(m, float("nan")) for m in metrics], ""])
    print(format_table(["fold", *metrics, "n_test"], rows))
    emit_json(args.json_path, result)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from dlfm.models import create

    launched = maybe_launch(args)
    if launched is not None:
        return launched
    params = model_params(args)
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
    print(f"trained {args.model} on {ratings.name} ({len(ratings)} ratings) in {seconds:.1f}s; saved {args.output}")
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
    from dlfm.serving.queries import predict_record  # shared with `dlfm serve`

    unknown = "error" if args.strict else "fallback"
    rows = [predict_record(model, args.user, item, args.samples, unknown=unknown) for item in args.item]
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

"""Options and helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import numpy as np

from dlfm.data.ratings import Ratings
from dlfm.errors import ConfigError


def resolve_folds(args: argparse.Namespace) -> str:
    """``--folds`` left out: ``official`` for a named data set that ships folds (ML-100k's
    u1-u5), ``kfold`` for a file or any other set (said on stderr). Sets ``args.folds``."""
    from dlfm import datasets

    if args.folds is None:
        spec = datasets.DATASETS.get(args.source)
        args.folds = "official" if spec is not None and spec.official_folds else "kfold"
        if args.folds == "kfold" and is_main_process():
            print(f"dlfm: {args.source} has no official folds: using --folds kfold --k {args.k}", file=sys.stderr)
    return args.folds


def select_folds(args: argparse.Namespace, seed: int | None) -> tuple[Any, str]:
    """The folds ``--folds`` names — ``kfold`` (seeded, of the loaded source) or official folds
    (``official``, ``u1``, ``ua``…; named data sets only, fetched as ``--no-download`` and
    ``--quiet`` say); without ``--folds``, :func:`resolve_folds` — and the data set's name."""
    from dlfm import datasets

    resolve_folds(args)
    is_named = args.source in datasets.DATASETS
    if args.folds != "kfold":
        if not is_named:
            raise ConfigError("official folds exist only for named data sets; use --folds kfold for a file")
        datasets.require(args.source, args.data_dir, download_missing=not args.no_download, quiet=args.quiet)
        return datasets.official_folds(args.source, args.folds, data_dir=args.data_dir), args.source
    ratings = load_source(args)
    return datasets.kfold(ratings, args.k, seed=seed), args.source if is_named else ratings.name


def add_reading_options(parser: argparse.ArgumentParser, title: str) -> Any:
    """``--sep`` and ``--header``/``--no-header`` in an argument group ``title`` (every reader
    of delimited files takes them); returns the group for the reader's other options."""
    group = parser.add_argument_group(title)
    group.add_argument("--sep", help="field separator (default: sniffed: tab, '::', ',', ';', '|', space)")
    hdr = group.add_mutually_exclusive_group()
    hdr.add_argument("--header", dest="header", action="store_true", default=None, help="the first line names the columns")
    hdr.add_argument("--no-header", dest="header", action="store_false", help="the first line is data")
    return group


#: where a neural model computes (``--device``): the values of its ``device`` hyper-parameter
DEVICES = ("cpu", "cuda", "auto")


def add_data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data directory (default: $DLFM_DATA_DIR, else ~/.cache/dlfm)")


def add_device_option(parser: argparse.ArgumentParser, default: str = "as saved") -> None:
    parser.add_argument("--device", choices=DEVICES, help=f"where a neural model computes (default: {default})")


def add_threads_option(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """``--threads N`` (checked and applied by :func:`check_threads` / :func:`apply_threads`)."""
    parser.add_argument("--threads", type=int, help=f"CPU threads for PyTorch{scope}")


def check_threads(args: argparse.Namespace) -> None:
    if args.threads is not None and args.threads < 1:
        raise ConfigError("--threads must be at least 1")


def apply_threads(args: argparse.Namespace) -> None:
    """``--threads N``: checked, then PyTorch's intra-op threads set (importing torch only then)."""
    check_threads(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)


def add_k_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--k", type=int, default=5, help="number of folds for --folds kfold (default 5)")


def add_data_options(parser: argparse.ArgumentParser, *, source_optional: bool = False) -> None:
    """Where data comes from: a named data set or a file, and how to read a file
    (``source_optional``: the data may come from other options, as ``cv --train --test``)."""
    parser.add_argument("source", metavar="DATASET|FILE", nargs="?" if source_optional else None,
                        help="a known data set (see `dlfm datasets`) or a rating file")
    add_data_dir_option(parser)
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing data set")
    group = add_reading_options(parser, "reading a rating file")
    group.add_argument("--columns", help="user,item,rating[,timestamp] columns by name or 0-based position (default 0,1,2[,3])")
    group.add_argument("--scale", help="declared rating scale LOW,HIGH; ratings outside it are an error")
    group.add_argument("--duplicates", choices=["error", "last", "mean"], default="error",
                       help="a (user, item) pair rated twice: error (default), keep the last, or average")


def parse_scale(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--scale expects LOW,HIGH (e.g. 1,5), not {text!r}") from None
    if not lo <= hi:
        raise ConfigError(f"--scale {text}: LOW must not exceed HIGH")
    return lo, hi


def load_source(args: argparse.Namespace, source: str | None = None) -> Ratings:
    """The ratings of ``source`` (default ``args.source``), read as the reading options say."""
    from dlfm import datasets

    options: dict[str, Any] = {"sep": args.sep, "header": args.header, "scale": parse_scale(args.scale),
                               "duplicates": args.duplicates}
    if args.columns:
        options["columns"] = [c.strip() for c in args.columns.split(",")]
    return datasets.load_any(args.source if source is None else source, data_dir=args.data_dir, download=not args.no_download,
                             quiet=getattr(args, "quiet", False), **options)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", dest="json_path", metavar="FILE", help="also write the result as JSON to FILE ('-' for stdout)")


def is_main_process() -> bool:
    """Whether this process speaks and writes: true in a plain run; under torchrun only in
    process 0 (rank 0 of the process group, which :func:`dlfm.training.distributed.world`
    joins). The one such test of dlfm; it imports torch only when ``WORLD_SIZE`` > 1, so every
    command's start stays free of it."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True
    from dlfm.training.distributed import world

    return world()[0] == 0


#: where ``--json -`` (and ``--output -``) write: the real standard output, while everything
#: else a command prints goes to standard error (set by :func:`dlfm.cli.main.main`)
machine_stdout: TextIO | None = None


def result_stream() -> TextIO:
    """The stream for a machine-readable result sent to ``-``: standard output, even while
    the human-readable output of the command is diverted to standard error."""
    return machine_stdout if machine_stdout is not None else sys.stdout


def json_default(obj: Any) -> Any:
    """JSON for numpy scalars and arrays (``np.int64(196)`` → ``196``, not ``"196"``) and paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def emit_json(path: str | None, obj: Any) -> None:
    """Write ``obj`` as strict JSON (NaN and infinities become null, with the reason under
    ``null_reasons``) to ``path`` (atomically), or alone on standard output for ``-``."""
    if not path or not is_main_process():
        return
    from dlfm.persistence import dumps_json, write_json

    if path == "-":
        stream = result_stream()
        stream.write(dumps_json(obj))
        stream.flush()
        return
    write_json(path, obj)


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain-text table: numeric columns right-aligned, text columns left-aligned."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[k]) for r in cells)) if cells else len(h) for k, h in enumerate(headers)]
    numeric = [bool(cells) and all(_is_numeric(row[k]) for row in rows if row[k] not in ("", "-", None))
               for k in range(len(headers))]

    def align(text: str, k: int) -> str:
        return text.rjust(widths[k]) if numeric[k] else text.ljust(widths[k])

    out = ["  ".join(align(h, k) for k, h in enumerate(headers)).rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(align(c, k) for k, c in enumerate(row)).rstrip() for row in cells]
    return "\n".join(out)


def _is_numeric(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)

"""``dlfm datasets`` and ``dlfm info``."""

from __future__ import annotations

import argparse

from dlfm.cli.common import (add_data_dir_option, add_data_options, add_json_option, emit_json, format_table,
                             load_source)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datasets", help="list the known data sets, or install one",
                       description="List the known data sets and whether each is in the data directory; "
                                   "`dlfm datasets install NAME [--archive FILE]` installs one (verified).")
    p.add_argument("action", nargs="?", choices=["list", "install"], default="list")
    p.add_argument("name", nargs="?", help="data set to install")
    p.add_argument("--archive", help="install from this downloaded archive instead of downloading")
    p.add_argument("--force", action="store_true", help="reinstall even when present")
    add_data_dir_option(p)
    p.add_argument("--quiet", action="store_true")
    add_json_option(p)
    p.set_defaults(handler=run_datasets)

    p = sub.add_parser("info", help="size, density and rating scale of a data set or file",
                       description="Users, items, ratings, density and rating scale of a data set or rating file.")
    add_data_options(p)
    add_json_option(p)
    p.set_defaults(handler=run_info)


def run_datasets(args: argparse.Namespace) -> int:
    from dlfm.datasets import DATASETS, data_dir, install, is_installed
    from dlfm.errors import ConfigError

    root = data_dir(args.data_dir)
    if args.action == "install":
        if not args.name:
            raise ConfigError("dlfm datasets install needs a data set name")
        folder = install(args.name, directory=root, archive=args.archive, force=args.force, quiet=args.quiet)
        print(f"installed {args.name} in {folder}")
        return 0
    rows = [[s.name, "yes" if is_installed(s.name, root) else "no", f"{s.size_mb:g} MB", s.description]
            for s in DATASETS.values()]
    print(f"data directory: {root}")
    print(format_table(["name", "installed", "archive", "contents"], rows))
    emit_json(args.json_path, {"data_dir": str(root), "datasets": [
        {"name": r[0], "installed": r[1] == "yes", "url": DATASETS[r[0]].url} for r in rows]})
    return 0


def run_info(args: argparse.Namespace) -> int:
    ratings = load_source(args)
    info = {"name": ratings.name, "users": ratings.n_users, "items": ratings.n_items, "ratings": len(ratings),
            "density": ratings.density, "scale": list(ratings.scale), "mean_rating": ratings.global_mean,
            "min_user_ratings": int(ratings.user_counts.min()), "max_item_ratings": int(ratings.item_counts.max())}
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key.rjust(width)}  {value:.6g}" if isinstance(value, float) else f"{key.rjust(width)}  {value}")
    emit_json(args.json_path, info)
    return 0

"""The README's cold-start tables, from the JSON files of ``dlfm cv --protocol new-users|new-items``.

Each argument is one model's run (``dlfm cv DATA --model M --protocol P --given 5,10,20 --json
F``); the table has a row per given count and model, with the fold-in and the retrained
reference side by side, means over the folds the run made (± the standard deviation of the
fold-in RMSE when there is more than one fold), and, when several models ran on the same
folds, the per-fold difference of the first model's fold-in RMSE from each other's.

    python benchmarks/coldstart_table.py dlf.json mf.json baseline.json
    python benchmarks/coldstart_table.py dlf.json mf.json --reference dlf_with_reference.json

``--reference FILE``: the first run's retrained reference is read from FILE, an earlier run of
the same model, protocol, folds and seed (checked fold by fold: the same held-out rows, given and
scored ratings) — for a run made with ``--no-reference`` after a change that the retrained model
does not read (the fold-in settings: warm predictions do not depend on them, tested).
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def cell(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.4f}"


def borrow_reference(run: dict, other: dict, source: str) -> None:
    """Put ``other``'s retrained reference into ``run`` (per fold, and the means), after checking
    that the two runs split the data the same way."""
    same = ("dataset", "model", "protocol", "k", "seed")
    if any(run[key] != other[key] for key in same):
        raise SystemExit(f"coldstart_table: {source} is not a run of the same {', '.join(same)}")
    theirs = {(f["fold"], f["given"]): f for f in other["folds"]}
    for fold in run["folds"]:
        match = theirs.get((fold["fold"], fold["given"]))
        if match is None or any(match[k] != fold[k] for k in ("n_heldout", "n_given", "n_test")) or "retrained" not in match:
            raise SystemExit(f"coldstart_table: {source} has no matching reference for {fold['fold']}, given {fold['given']}")
        fold["retrained"] = match["retrained"]
    for given, mean in run["mean"].items():
        mean["retrained"] = other["mean"][given]["retrained"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="JSON files of dlfm cv --protocol new-users|new-items")
    parser.add_argument("--reference", help="read the first run's retrained reference from this earlier run")
    args = parser.parse_args()
    runs = [json.load(open(path)) for path in args.runs]
    if args.reference:
        borrow_reference(runs[0], json.load(open(args.reference)), args.reference)
    protocols = {run["protocol"] for run in runs}
    if len(protocols) != 1:
        raise SystemExit(f"coldstart_table: the runs mix protocols {sorted(protocols)}")
    givens = sorted({int(g) for run in runs for g in run["mean"]})
    print("| given | model | folds | fold-in RMSE | retrained RMSE | fold-in MAE | fold-in NDCG@10 | retrained NDCG@10 "
          "| fold-in recall@10 |")
    print("|--:|---|--:|---|---|---|---|---|---|")
    for given in givens:
        for run in runs:
            mean, std = run["mean"].get(str(given)), run["std"].get(str(given))
            if mean is None:
                continue
            folds = [f for f in run["folds"] if f["given"] == given]
            fold_in, retrained = mean["fold_in"], mean.get("retrained", {})
            spread = f" ± {std['fold_in']['rmse']:.4f}" if len(folds) > 1 else ""
            print(f"| {given} | {run['model']} | {len(folds)} | {cell(fold_in['rmse'])}{spread} | "
                  f"{cell(retrained.get('rmse'))} | {cell(fold_in['mae'])} | {cell(fold_in.get('ndcg@10'))} | "
                  f"{cell(retrained.get('ndcg@10'))} | {cell(fold_in.get('recall@10'))} |")
    if len(runs) > 1:
        first = runs[0]
        print()
        for given in givens:
            mine = {f["fold"]: f["fold_in"]["rmse"] for f in first["folds"] if f["given"] == given}
            for other in runs[1:]:
                theirs = {f["fold"]: f["fold_in"]["rmse"] for f in other["folds"] if f["given"] == given}
                shared = sorted(set(mine) & set(theirs))
                if not shared:
                    continue
                diffs = " / ".join(f"{mine[k] - theirs[k]:+.4f}" for k in shared)
                print(f"- given {given}: {first['model']} − {other['model']} fold-in RMSE per fold ({', '.join(shared)}): "
                      f"{diffs}")


if __name__ == "__main__":
    main()

"""Benchmark: every method on the identical folds, one table, one set of pictures.

dlfm's own models (``mean``, ``baseline``, ``popular``, ``pmf``, ``mf``, ``dlf``, ``vdlf``) and
Surprise's algorithms (through :mod:`dlfm.evaluation.surprise_bridge`) are fitted on each fold's
training part and scored on its test part: RMSE, MAE and, with a ranking spec, the top-N metrics
of :mod:`dlfm.evaluation.ranking` (every method ranked the same way). The report's published numbers (its Figure 4, MovieLens 100k)
can be added as reference rows, marked ``"source": "published"`` and never run.

Outputs in the output folder, each written atomically:

- ``results.json``: ``{"dataset", "folds", "fold_names", "seed", "methods": {NAME: {"source":
  "dlfm" | "surprise" | "published", "params", "folds": [per-fold records], "mean": {"rmse",
  "mae", "fit_seconds", "predict_seconds", ...}, "std": {...}}}, "notes", "versions",
  "machine"}``; rewritten after every method, so ``resume=True`` skips what is already there;
- ``results.md``: the table (like the report's Figure 4) with the run's settings;
- ``results.csv``: one row per method and fold, plus ``mean`` and ``std`` rows;
- ``rmse.png``, ``slice.png`` and (when a neural model ran) ``curves.png``, from the fold-1
  models kept in memory.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from dlfm.data.ratings import Ratings
from dlfm.data.splits import Fold
from dlfm.errors import ConfigError
from dlfm.evaluation import surprise_bridge
from dlfm.evaluation.cv import fit_and_score, summarize

#: dlfm's models in table order; a name not registered yet is skipped with a note
DLFM_METHODS: tuple[str, ...] = ("mean", "baseline", "popular", "pmf", "mf", "dlf", "vdlf")

#: The report's Figure 4 (MovieLens 100k): (row name, label in the report, RMSE, MAE or None,
#: the method here that it corresponds to, if any)
PUBLISHED_REPORT: tuple[tuple[str, str, float, float | None, str | None], ...] = (
    ("published: KNN-Basic (report)", "KNN-Basic", 0.9789, 0.7732, "KNNBasic"),
    ("published: KNN-With Means (report)", "KNN-With Means", 0.9514, 0.7500, "KNNWithMeans"),
    ("published: KNN Baseline (report)", "KNN Baseline", 0.9306, 0.7334, "KNNBaseline"),
    ("published: SVD (report)", "SVD", 0.9364, 0.7381, "SVD"),
    ("published: SVD++ (report)", "SVD++", 0.9200, 0.7253, "SVDpp"),
    ("published: NMF (report)", "NMF", 0.9634, 0.7532, "NMF"),
    ("published: Slope One (report)", "Slope One", 0.9454, 0.7430, "SlopeOne"),
    ("published: Co-clustering (report)", "Co clustering", 0.9678, 0.7579, "CoClustering"),
    ("published: PMF (report)", "PMF", 0.9190, None, "pmf"),
    ("published: Biased PMF (report)", "Biased PMF", 0.9087, None, "mf"),
    ("published: BMFSI (report)", "BMFSI", 0.9065, None, None),
    ("published: SCMF (report)", "SCMF", 0.9068, None, None),
    ("published: mDA-CF (report)", "mDA-CF", 0.9040, None, None),
    ("published: mSDA-CF (report)", "mSDA-CF", 0.9024, None, None),
    ("published: report model 1 (vdlf)", "my model1", 0.9689, 0.7687, "vdlf"),
    ("published: report model 2 (dlf)", "my model2", 0.9271, 0.7330, "dlf"),
)
PUBLISHED_DATASET = "ml-100k"
PUBLISHED_SOURCE = ("Akbayrak, Deep Latent Factor Models for Collaborative Filtering (2017), Figure 4; "
                    "MovieLens 100k; copied from the report, not run here")

_STANDARD_KEYS = ("rmse", "mae", "fit_seconds", "predict_seconds")


@dataclass
class Method:
    name: str
    source: str  # "dlfm" | "surprise"
    params: dict[str, Any] = field(default_factory=dict)


def _registered_models() -> dict[str, Any]:
    from dlfm.models import MODELS, model_class

    model_class("mean")  # imports the neural models, which register themselves
    return MODELS


def resolve_methods(spec: str | Sequence[str] | None) -> tuple[list[Method], list[str]]:
    """The methods a ``--models`` value names, and one-line notes on those skipped.

    Accepts dlfm's model names, Surprise's class names (any case), and the groups ``all``
    (the default), ``dlfm`` and ``surprise``. A dlfm model that is not registered (yet), or a
    Surprise algorithm when scikit-surprise is not installed, is skipped with a note; a name
    that is neither is an error."""
    registered = _registered_models()
    dlfm_all = list(DLFM_METHODS) + [n for n in registered if n not in DLFM_METHODS]
    if spec is None:
        tokens = ["all"]
    elif isinstance(spec, str):
        tokens = [t.strip() for t in spec.split(",") if t.strip()]
    else:
        tokens = [str(t).strip() for t in spec if str(t).strip()]
    if not tokens:
        raise ConfigError("--models names no method")
    wanted: list[tuple[str, str]] = []
    for token in tokens:
        low = token.lower()
        if low in ("all", "dlfm"):
            wanted += [(n, "dlfm") for n in dlfm_all]
        if low in ("all", "surprise"):
            wanted += [(n, "surprise") for n in surprise_bridge.SURPRISE_ALGORITHMS]
        if low in ("all", "dlfm", "surprise"):
            continue
        if token in registered or token in DLFM_METHODS:
            wanted.append((token, "dlfm"))
        elif surprise_bridge.canonical_name(token):
            wanted.append((surprise_bridge.canonical_name(token), "surprise"))  # type: ignore[arg-type]
        else:
            raise ConfigError(f"unknown method {token!r}: dlfm models are {', '.join(dlfm_all)}; Surprise's are "
                              f"{', '.join(surprise_bridge.SURPRISE_ALGORITHMS)}; groups: all, dlfm, surprise")
    methods: list[Method] = []
    notes: list[str] = []
    seen: set[str] = set()
    missing_surprise: list[str] = []
    have_surprise = surprise_bridge.available()
    for name, source in wanted:
        if name in seen:
            continue
        seen.add(name)
        if source == "dlfm" and name not in registered:
            notes.append(f"{name}: not available in this dlfm (model not registered); skipped")
        elif source == "surprise" and not have_surprise:
            missing_surprise.append(name)
        else:
            methods.append(Method(name, source))
    if missing_surprise:
        notes.append(f"scikit-surprise is not installed (pip install 'dlfm[surprise]'); skipped "
                     f"{', '.join(missing_surprise)}")
    return methods, notes


def parse_method_params(pairs: Iterable[str], methods: Sequence[Method]) -> dict[str, dict[str, Any]]:
    """``["mf.n_factors=50", "SVD.n_epochs=30"]`` → ``{"mf": {"n_factors": 50}, "SVD": {...}}``,
    typed by the method's own parameters."""
    by_name = {m.name: m for m in methods}
    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        target, dot, rest = pair.partition(".")
        if not dot or "=" not in rest or "=" in target:
            raise ConfigError(f"--param expects MODEL.KEY=VALUE (e.g. mf.n_factors=50), not {pair!r}")
        name = target.strip()
        if name not in by_name:
            canonical = surprise_bridge.canonical_name(name)
            name = canonical if canonical in by_name else name
        if name not in by_name:
            raise ConfigError(f"--param {pair}: {target!r} is not among the methods run ({', '.join(by_name)})")
        grouped.setdefault(name, []).append(rest)
    out: dict[str, dict[str, Any]] = {}
    for name, items in grouped.items():
        if by_name[name].source == "dlfm":
            from dlfm.models import parse_params

            out[name] = parse_params(name, items)
        else:
            out[name] = surprise_bridge.parse_params(name, items)
    return out


def published_rows() -> dict[str, dict[str, Any]]:
    """The report's Figure 4 as benchmark entries with ``"source": "published"``."""
    rows = {}
    for name, label, rmse_value, mae_value, corresponds in PUBLISHED_REPORT:
        rows[name] = {"source": "published", "label": label, "corresponds_to": corresponds,
                      "dataset": PUBLISHED_DATASET, "reference": PUBLISHED_SOURCE, "folds": [],
                      "mean": {"rmse": rmse_value, "mae": mae_value}, "std": {}}
    return rows


def machine() -> dict[str, Any]:
    """What ran the benchmark (for reading the timings)."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "processor": platform.processor() or None, "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    info["processor"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


def all_versions() -> dict[str, Any]:
    from dlfm.models.base import versions

    out: dict[str, Any] = dict(versions())
    out["scikit-surprise"] = surprise_bridge.version()
    try:
        import matplotlib

        out["matplotlib"] = matplotlib.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fit_dlfm(method: Method, fold: Fold, seed: int | None, ranking: Any = None) -> tuple[dict[str, Any], Any]:
    from dlfm.models import create, model_class

    params = dict(method.params)
    names = set(model_class(method.name).param_names())
    if seed is not None and "seed" in names:
        params.setdefault("seed", seed)
    if "verbose" in names:
        params.setdefault("verbose", False)
    model = create(method.name, **params)
    return fit_and_score(model, fold.train, fold.test, fold.n_unknown, ranking), model


def _fit_surprise(method: Method, fold: Fold, seed: int | None, ranking: Any = None) -> tuple[dict[str, Any], Any]:
    record, model = surprise_bridge.evaluate_fold(method.name, fold.train, fold.test, seed=seed, params=method.params,
                                                  ranking=ranking)
    record["n_unknown"] = fold.n_unknown
    return record, model


@dataclass
class BenchmarkRun:
    """What :func:`run_benchmark` returns: the JSON document and the fold-1 models."""

    results: dict[str, Any]
    models: dict[str, Any]
    notes: list[str]
    failed: dict[str, str]
    written: list[Path]


def run_benchmark(
    folds: Sequence[Fold],
    *,
    dataset: str,
    scheme: str,
    methods: Sequence[Method] | None = None,
    seed: int | None = 0,
    k: int | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    published: bool | None = None,
    plots: bool = True,
    slice_size: int = 40,
    progress: bool = False,
    notes: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
    ranking: Any = None,
) -> BenchmarkRun:
    """Run ``methods`` on ``folds`` (all the same pairs) and write the outputs to ``out_dir``.

    Args:
        folds: the (train, test) pairs; every method sees exactly these.
        dataset, scheme, k, seed: recorded in the results (``seed`` also seeds every model).
        methods: from :func:`resolve_methods` (default: all available).
        resume: keep the methods already in ``out_dir/results.json`` (same data set, folds and
            seed) and run only the others.
        published: add the report's Figure 4 as reference rows (default: only for ml-100k).
        progress: a tqdm bar over methods × folds on stderr.
        log: where one-line notes go (default: stderr).
        ranking: a :class:`~dlfm.evaluation.ranking.RankingSpec`: also the top-N metrics of every
            method (``None``: RMSE and MAE only).
    """
    folds = list(folds)
    if not folds:
        raise ConfigError("the benchmark needs at least one fold")
    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    notes = list(notes)
    if methods is None:
        methods, more = resolve_methods(None)
        notes += more
    fold_names = [f.name for f in folds]
    out = Path(out_dir) if out_dir is not None else None
    entries: dict[str, dict[str, Any]] = {}
    if resume and out is not None and (out / "results.json").is_file():
        entries = _previous_entries(out / "results.json", dataset, scheme, fold_names, seed)
    elif resume and out is None:
        raise ConfigError("resume needs an output folder")
    if published is None:
        published = dataset == PUBLISHED_DATASET
    doc: dict[str, Any] = {"dataset": dataset, "folds": scheme, "fold_names": fold_names, "seed": seed}
    if k is not None:
        doc["k"] = k
    if ranking is not None:
        doc["ranking"] = {"metrics": list(ranking.names), "threshold_option": ranking.threshold}
    doc.update({"methods": {}, "notes": notes, "versions": all_versions(), "machine": machine(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    for line in notes:
        say(f"dlfm benchmark: {line}")

    todo = []
    for method in methods:
        if method.name in entries and entries[method.name].get("source") != "published":
            line = f"resume: {method.name} is already in {out / 'results.json'}; skipped"  # type: ignore[operator]
            notes.append(line)
            say(f"dlfm benchmark: {line}")
        else:
            todo.append(method)
    kept = {name: e for name, e in entries.items() if e.get("source") != "published"}
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo) * len(folds), desc="benchmark", unit="fit", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, leave=True)
    models: dict[str, Any] = {}
    failed: dict[str, str] = {}
    written: list[Path] = []

    def emit(text: str) -> None:
        if progress:
            bar.write(text, file=sys.stderr)
        else:
            say(text)

    def assemble() -> dict[str, Any]:
        result = dict(doc)
        result["methods"] = dict(kept)
        if published:
            result["methods"].update(published_rows())
        result["notes"] = list(notes)
        if failed:
            result["failed"] = dict(failed)
        return _clean(result)

    try:
        for method in todo:
            records = []
            try:
                for n, fold in enumerate(folds):
                    bar.set_description(f"{method.name} {fold.name}")
                    runner = _fit_dlfm if method.source == "dlfm" else _fit_surprise
                    record, model = runner(method, fold, seed, ranking)
                    records.append({"fold": fold.name, **record})
                    if n == 0:
                        models[method.name] = model
                    bar.set_postfix_str(f"RMSE {record['rmse']:.4f}")
                    bar.update(1)
            except Exception as exc:  # one broken method must not sink the others; it is reported
                message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                failed[method.name] = message
                notes.append(f"{method.name} failed on fold {folds[len(records)].name}: {message}")
                emit(f"dlfm benchmark: {method.name} failed: {message}")
                models.pop(method.name, None)
                bar.update(len(folds) - len(records))
                continue
            mean, std, counted = summarize(records)
            entry: dict[str, Any] = {"source": method.source, "params": _params_of(method, models.get(method.name)),
                                     "folds": records, "mean": mean, "std": std}
            if counted:
                entry["folds_counted"] = counted
            kept[method.name] = entry
            if not progress:
                say(f"  {method.name}: RMSE {mean['rmse']:.4f} ± {std['rmse']:.4f}  MAE {mean['mae']:.4f}  "
                    f"fit {mean['fit_seconds']:.2f}s/fold")
            if out is not None and method is not todo[-1]:  # the last one is written below
                write_results(assemble(), out)
    finally:
        bar.close()

    results = assemble()
    if out is not None:
        written += write_results(results, out)
        if plots:
            written += write_plots(results, models, folds[0], out, slice_size=slice_size, say=say)
    return BenchmarkRun(results, models, notes, failed, written)


def _params_of(method: Method, model: Any) -> dict[str, Any]:
    if method.source == "dlfm" and model is not None and hasattr(model, "get_params"):
        return _clean(model.get_params())
    params = dict(method.params)
    algo = getattr(model, "algo", None)
    if algo is not None:
        names = surprise_bridge._param_names(type(algo)) or set()
        if "random_state" in names and "random_state" not in params:
            params["random_state"] = getattr(model, "seed", None)
    return _clean(params)


def _previous_entries(path: Path, dataset: str, scheme: str, fold_names: list[str], seed: int | None) -> dict[str, Any]:
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--resume: cannot read {path} ({exc})") from None
    mismatch = [what for what, mine, theirs in (("data set", dataset, previous.get("dataset")),
                                                ("folds", scheme, previous.get("folds")),
                                                ("fold names", fold_names, previous.get("fold_names")),
                                                ("seed", seed, previous.get("seed"))) if mine != theirs]
    if mismatch:
        raise ConfigError(f"--resume: {path} holds another benchmark (different {', '.join(mismatch)}); "
                          "choose another --out or drop --resume")
    methods = previous.get("methods")
    return dict(methods) if isinstance(methods, dict) else {}


# ---------------------------------------------------------------------------- outputs
def order_methods(results: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Run methods by mean RMSE, then published ones in the report's order."""
    methods = results.get("methods", {})
    run = [n for n, e in methods.items() if e.get("source") != "published"]
    run.sort(key=lambda n: (methods[n]["mean"].get("rmse") if methods[n]["mean"].get("rmse") is not None else math.inf, n))
    pub = [n for n, e in methods.items() if e.get("source") == "published"]
    return run, pub


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _pm(entry: Mapping[str, Any], key: str, digits: int = 4) -> str:
    mean = entry.get("mean", {}).get(key)
    std = entry.get("std", {}).get(key)
    if mean is None:
        return "–"
    if std is None or len(entry.get("folds", [])) < 2:
        return _num(mean, digits)
    return f"{_num(mean, digits)} ± {_num(std, digits)}"


def markdown(results: Mapping[str, Any]) -> str:
    """The results as a Markdown page: the table (like the report's Figure 4) and the settings."""
    methods = results.get("methods", {})
    run, pub = order_methods(results)
    names = results.get("fold_names", [])
    scheme = results.get("folds")
    lines = [f"# Benchmark: {results.get('dataset')}, {scheme} folds", ""]
    lines.append(f"Folds: {', '.join(names)} ({len(names)} folds"
                 + (f", k = {results['k']}" if results.get("k") else "")
                 + (f"; {'folds and ' if scheme == 'kfold' else ''}models seeded with {results['seed']}"
                    if results.get("seed") is not None else "") + "). "
                 "Every method below was fitted on each fold's training part and scored on the same test part; "
                 "RMSE and MAE are mean ± standard deviation over the folds, in rating points (lower is better); "
                 "fit and predict are seconds per fold (mean).")
    lines.append("")
    if run:
        lines += ["| # | Method | Source | RMSE | MAE | Fit (s) | Predict (s) |",
                  "|--:|---|---|---|---|--:|--:|"]
        for rank, name in enumerate(run, 1):
            e = methods[name]
            lines.append(f"| {rank} | {name} | {e['source']} | {_pm(e, 'rmse')} | {_pm(e, 'mae')} | "
                         f"{_num(e['mean'].get('fit_seconds'), 2)} | {_num(e['mean'].get('predict_seconds'), 2)} |")
        lines.append("")
    ranked = [k for k in results.get("ranking", {}).get("metrics", [])]
    if ranked and any(k in methods[n]["mean"] for n in run for k in ranked):
        threshold = next((methods[n]["mean"].get("relevance_threshold") for n in run
                          if methods[n]["mean"].get("relevance_threshold") is not None), None)
        lines += [f"Top-N (mean ± std over folds): every test user ranks all items with a training rating that it "
                  f"did not rate in training; relevant = its test items rated ≥ {_num(threshold, 2)}; higher is "
                  "better.", "",
                  "| Method | " + " | ".join(ranked) + " | Rank (s) |", "|---|" + "---|" * len(ranked) + "--:|"]
        order = sorted(run, key=lambda n: -(methods[n]["mean"].get(ranked[0]) or -math.inf))
        for name in order:
            e = methods[name]
            lines.append(f"| {name} | " + " | ".join(_pm(e, k) for k in ranked)
                         + f" | {_num(e['mean'].get('rank_seconds'), 2)} |")
        lines.append("")
    hidden = {"n_test", "n_unknown", "epochs", "n_rank_users", "rank_seconds", "relevance_threshold", *ranked}
    extras = sorted({k for n in run for k in methods[n]["mean"]
                     if k not in _STANDARD_KEYS and k not in hidden})
    if extras:
        lines += ["Other metrics (mean over folds; n_impossible: test pairs Surprise could not predict and gave "
                  "its fallback, the training mean):", "",
                  "| Method | " + " | ".join(extras) + " |", "|---|" + "---|" * len(extras)]
        for name in run:
            mean = methods[name]["mean"]
            if any(k in mean for k in extras):
                lines.append(f"| {name} | " + " | ".join(_num(mean.get(k), 1 if k.startswith("n_") else 4)
                                                         for k in extras) + " |")
        lines.append("")
    if pub:
        lines += ["## Published in the report (not run here)", "",
                  f"Source: {PUBLISHED_SOURCE}. MAE is – where the report gives none.", "",
                  "| Method (report's label) | Compare with | RMSE | MAE |", "|---|---|---|---|"]
        for name in pub:
            e = methods[name]
            lines.append(f"| {name} | {e.get('corresponds_to') or '–'} | {_num(e['mean'].get('rmse'))} | "
                         f"{_num(e['mean'].get('mae'))} |")
        lines.append("")
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in results["notes"]] + [""]
    params = [(n, methods[n].get("params")) for n in run if methods[n].get("params")]
    if params:
        lines += ["## Parameters", ""] + [f"- {n}: `{json.dumps(p, sort_keys=True)}`" for n, p in params] + [""]
    versions = results.get("versions", {})
    mach = results.get("machine", {})
    lines += ["## Environment", "",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None),
              "- machine: " + ", ".join(f"{k} {v}" for k, v in mach.items() if v is not None),
              f"- created: {results.get('created', '')}", ""]
    return "\n".join(lines)


def csv_text(results: Mapping[str, Any]) -> str:
    """One row per method and fold, then its ``mean`` and ``std`` rows; published rows last."""
    methods = results.get("methods", {})
    run, pub = order_methods(results)
    extra: list[str] = []
    for name in run:
        for record in methods[name].get("folds", []):
            extra += [k for k in record if k not in ("fold", *_STANDARD_KEYS) and k not in extra]
    header = ["method", "source", "fold", *_STANDARD_KEYS, *extra]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, float):
            return repr(value) if math.isfinite(value) else ""
        return value

    for name in run:
        e = methods[name]
        for record in e.get("folds", []):
            writer.writerow([name, e["source"], record.get("fold")] + [cell(record.get(k)) for k in header[3:]])
        for label in ("mean", "std"):
            writer.writerow([name, e["source"], label] + [cell(e[label].get(k)) for k in header[3:]])
    for name in pub:
        e = methods[name]
        writer.writerow([name, "published", "published"] + [cell(e["mean"].get(k)) for k in header[3:]])
    return buffer.getvalue()


def write_results(results: Mapping[str, Any], out: Path) -> list[Path]:
    """``results.json``, ``results.md`` and ``results.csv`` in ``out`` (atomically)."""
    from dlfm.persistence import write_json, write_text

    paths = [out / "results.json", out / "results.md", out / "results.csv"]
    write_json(paths[0], results)
    write_text(paths[1], markdown(results))
    write_text(paths[2], csv_text(results))
    return paths


def _combined(fold: Fold) -> Ratings:
    """A fold's training and test ratings in one container (they share a vocabulary)."""
    t, s = fold.train, fold.test
    return Ratings(np.concatenate([t.users, s.users]), np.concatenate([t.items, s.items]),
                   np.concatenate([t.ratings, s.ratings]), t.user_vocab, t.item_vocab, t.scale,
                   name=f"{t.name} + {s.name}")


def write_plots(results: Mapping[str, Any], models: Mapping[str, Any], fold: Fold, out: Path, *,
                slice_size: int = 40, n_samples: int = 100, say: Callable[[str], None] | None = None) -> list[Path]:
    """``rmse.png`` from the results; ``slice.png`` and ``curves.png`` from the fold-1 models."""
    from dlfm import plots

    say = say or (lambda text: print(text, file=sys.stderr))
    written = []
    path = out / "rmse.png"
    plots.save_png(plots.rmse_figure(results), path)
    written.append(path)
    if models:
        combined = _combined(fold)
        users, items = plots.choose_slice(combined, slice_size, slice_size)
        observed = plots.matrix_slice(combined, users, items)
        held_out = ~np.isnan(plots.matrix_slice(fold.test, users, items))
        run, _ = order_methods(results)
        order = [n for n in run if n in models] + [n for n in models if n not in run]
        predictions, stds = {}, {}
        for name in order:
            predictions[name] = plots.predict_grid(models[name], users, items)
            std = plots.distribution_grid(models[name], users, items, n_samples=n_samples)
            if std is not None:
                stds[name] = std
        title = (f"{results.get('dataset')}, first fold ({fold.name}): {len(users)} most active users × {len(items)} "
                 f"most rated items — observed ratings and each model's predictions (same colour scale)")
        path = out / "slice.png"
        plots.save_png(plots.slice_figure(observed, predictions, held_out=held_out, stds=stds,
                                          scale=tuple(fold.train.scale), title=title), path)
        written.append(path)
        histories = {n: getattr(models[n], "history_", None) for n in order}
        histories = {n: h for n, h in histories.items() if plots.has_curves(h)}
        if histories:
            path = out / "curves.png"
            plots.save_png(plots.curves_figure(histories, title=f"Training curves on {results.get('dataset')}, first "
                                                               f"fold ({fold.name}); validation part carved from "
                                                               "its training part"),
                           path)
            written.append(path)
    else:
        say("dlfm benchmark: no model was fitted in this run; slice.png and curves.png left as they were")
    return written

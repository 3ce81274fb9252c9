"""Reading speed: dlfm's rating-file reader against ``pandas.read_csv`` on one generated CSV.

Writes an ``n_lines``-line CSV (``userId,movieId,rating,timestamp``, a header and distinct
(user, item) pairs with MovieLens-like ranges) into a work folder, then times, each in a fresh
subprocess and alternately, ``dlfm.data.load_ratings`` (what ``dlfm info`` and every command
reading a file call) and ``pandas.read_csv`` with its defaults (the C engine, all four
columns: the same work). Reported: the median seconds of the call, its CPU seconds (all
threads) and the peak resident memory of each process (``ru_maxrss``, the interpreter and its
imports included), and their ratios. dlfm's reader parses with pyarrow on every core it may
use, pandas' C engine on one; so the pair is timed twice: free to use all cores (what a user
gets), and both pinned to CPU 0 (``one_core``: like with like). Then it plants a bad rating
on line 4,000,000 (or the file's last line, if shorter) and checks that the reader's error
names that line.

    python benchmarks/read_speed.py --json docs/speed/read_speed.json
    python benchmarks/read_speed.py --lines 200000 --repeats 1      # a quick look

The generated files go to ``--workdir`` (default: a temporary folder, removed afterwards);
they are never meant to be committed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HEADER = "userId,movieId,rating,timestamp"
BAD_LINE = 4_000_000

_CHILD = r"""
import json, os, resource, sys, time
kind, path, cpus = sys.argv[1], sys.argv[2], sys.argv[3]
if cpus:
    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})  # before any import starts a thread
if kind == "pandas":
    import pandas as pd
    start, cpu_start = time.perf_counter(), time.process_time()
    frame = pd.read_csv(path)
    rows = len(frame)
    error = None
else:
    from dlfm.data import load_ratings
    from dlfm.errors import DataError
    start, cpu_start = time.perf_counter(), time.process_time()
    error = None
    try:
        rows = len(load_ratings(path))
    except DataError as exc:
        rows, error = None, {"message": str(exc)[:300], "line": exc.line}
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": peak, "rows": rows,
                  "error": error}))
"""


def write_csv(path: Path, n_lines: int, *, seed: int = 0, bad_line: int | None = None) -> None:
    """``n_lines`` data lines under a header: 162,000 users, 59,000 items, half-star ratings,
    distinct pairs. ``bad_line``: the rating on that line (1-based, the header is line 1) is
    written as ``abc``."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    n_users, n_items = 162_000, 59_000
    keys = np.unique(rng.integers(0, n_users * n_items, int(n_lines * 1.02) + 100))
    keys = rng.permutation(keys)[:n_lines]
    if len(keys) < n_lines:
        raise ValueError("too many lines for the id ranges")
    table = pa.table({
        "userId": keys // n_items + 1,
        "movieId": keys % n_items + 1,
        "rating": rng.integers(1, 11, n_lines) / 2,
        "timestamp": rng.integers(800_000_000, 1_600_000_000, n_lines),
    })
    options = pacsv.WriteOptions(include_header=False)
    with open(path, "wb") as handle:
        handle.write((HEADER + "\n").encode())
        if bad_line is None:
            pacsv.write_csv(table, handle, write_options=options)
            return
        row = bad_line - 2  # data row of that line
        pacsv.write_csv(table.slice(0, row), handle, write_options=options)
        user, item, _, stamp = (table.column(k)[row].as_py() for k in range(4))
        handle.write(f"{user},{item},abc,{stamp}\n".encode())
        pacsv.write_csv(table.slice(row + 1), handle, write_options=options)


def _run_child(kind: str, path: Path, cpus: str = "") -> dict[str, Any]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    done = subprocess.run([sys.executable, "-c", _CHILD, kind, str(path), cpus], capture_output=True, text=True,
                          env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(runs: list[dict[str, Any]], n_lines: int, kind: str) -> dict[str, Any]:
    if any(run["rows"] != n_lines for run in runs):
        raise RuntimeError(f"{kind} read {[run['rows'] for run in runs]} rows, not {n_lines}")
    seconds = [round(run["seconds"], 3) for run in runs]
    return {"seconds": seconds, "median_seconds": round(statistics.median(seconds), 3),
            "cpu_seconds": [round(run["cpu_seconds"], 3) for run in runs],
            "peak_rss_mb": round(max(run["peak_rss_mb"] for run in runs), 1)}


def _compare(path: Path, n_lines: int, repeats: int, cpus: str = "") -> dict[str, Any]:
    """Both readers, alternately, ``repeats`` times each (``cpus``: the CPUs both may use)."""
    runs: dict[str, list[dict[str, Any]]] = {"pandas": [], "dlfm": []}
    for _ in range(repeats):
        for kind in ("pandas", "dlfm"):
            runs[kind].append(_run_child(kind, path, cpus))
    result = {kind: _summary(kind_runs, n_lines, kind) for kind, kind_runs in runs.items()}
    result["time_ratio"] = round(result["dlfm"]["median_seconds"] / result["pandas"]["median_seconds"], 3)
    result["memory_ratio"] = round(result["dlfm"]["peak_rss_mb"] / result["pandas"]["peak_rss_mb"], 3)
    return result


def measure_reading(n_lines: int, workdir: str | os.PathLike[str], *, repeats: int = 3,
                    bad_line: int = BAD_LINE, one_core: bool = True) -> dict[str, Any]:
    """Time and peak memory of dlfm's reader and ``pandas.read_csv`` (default settings: its C
    engine, all four columns) on the same generated file, alternately in fresh
    subprocesses, and the line a planted bad value is reported on.

    dlfm's reader parses with pyarrow on every core the process may use; pandas' C engine on
    one. So the comparison is made twice: on all the machine's cores (what a user gets), and
    with both processes pinned to one core (``one_core``: the same CPU for each).

    Returns a dictionary (JSON-ready): per reader the seconds of each run, their median, the
    CPU seconds (all threads) of each run and the largest peak RSS; ``time_ratio`` and
    ``memory_ratio`` (dlfm / pandas); the same under ``one_core``; ``bad_value`` with the line
    planted, the line reported and whether they agree.
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"ratings-{n_lines}.csv"
    write_csv(path, n_lines)
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "file": {"lines": n_lines + 1, "data_lines": n_lines, "megabytes": round(path.stat().st_size / 2**20, 1),
                 "columns": HEADER},
        "baseline": "pandas.read_csv(path) with default settings (C engine, all four columns)",
    }
    result.update(_compare(path, n_lines, repeats))
    if one_core:
        result["one_core"] = {"cpus": "0", **_compare(path, n_lines, repeats, "0")}
    path.unlink()

    planted = min(bad_line, n_lines + 1)
    bad_path = work / f"ratings-{n_lines}-bad.csv"
    write_csv(bad_path, n_lines, bad_line=planted)
    run = _run_child("dlfm", bad_path)
    bad_path.unlink()
    error = run["error"] or {}
    result["bad_value"] = {
        "planted_on_line": planted, "reported_line": error.get("line"), "message": error.get("message"),
        "seconds": round(run["seconds"], 3), "peak_rss_mb": round(run["peak_rss_mb"], 1),
        "ok": error.get("line") == planted and f"line {planted}:" in (error.get("message") or ""),
    }
    result["machine"] = {"cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
                         "load_average_after": [round(x, 2) for x in os.getloadavg()],
                         "python": platform.python_version()}
    import pandas as pd
    import pyarrow as pa

    result["versions"] = {"pandas": pd.__version__, "pyarrow": pa.__version__, "numpy": np.__version__}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=5_000_000, help="data lines (default 5,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each reader (default 3)")
    parser.add_argument("--no-one-core", dest="one_core", action="store_false",
                        help="skip the comparison with both readers pinned to one core")
    parser.add_argument("--workdir", help="folder for the generated files (default: a temporary one)")
    parser.add_argument("--json", dest="json_path", help="write the results here as JSON ('-': stdout)")
    args = parser.parse_args(argv)
    if args.workdir:
        result = measure_reading(args.lines, args.workdir, repeats=args.repeats, one_core=args.one_core)
    else:
        with tempfile.TemporaryDirectory(prefix="dlfm-read-") as work:
            result = measure_reading(args.lines, work, repeats=args.repeats, one_core=args.one_core)
    text = json.dumps(result, indent=2)
    if args.json_path == "-":
        print(text)
    else:
        p, d = result["pandas"], result["dlfm"]
        print(f"{result['file']['data_lines']:,} lines ({result['file']['megabytes']} MB)")
        print(f"pandas.read_csv  {p['median_seconds']:.2f} s  {p['peak_rss_mb']:.0f} MB")
        print(f"dlfm             {d['median_seconds']:.2f} s  {d['peak_rss_mb']:.0f} MB   "
              f"({result['time_ratio']:.2f}x time, {result['memory_ratio']:.2f}x memory)")
        if "one_core" in result:
            one = result["one_core"]
            print(f"one core: pandas {one['pandas']['median_seconds']:.2f} s, dlfm {one['dlfm']['median_seconds']:.2f} s "
                  f"({one['time_ratio']:.2f}x time)")
        bad = result["bad_value"]
        print(f"bad value on line {bad['planted_on_line']:,}: reported on line {bad['reported_line']} "
              f"({'ok' if bad['ok'] else 'WRONG'}), {bad['seconds']:.2f} s")
        if args.json_path:
            Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json_path).write_text(text + "\n")
    return 0 if result["bad_value"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

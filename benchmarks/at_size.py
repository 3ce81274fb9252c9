"""Issue 14's figures in one run: reading, training at size, and accuracy at size, as one JSON.

Each part runs the script that owns it in a fresh subprocess (so that every peak-memory figure
is that process's own) and the results are gathered under one key each:

* ``reading``: ``read_speed.py --lines L`` — dlfm's reader against ``pandas.read_csv`` on one
  generated CSV (time and peak memory, all cores and one core; the bad value on line
  4,000,000);
* ``throughput``: ``scale.py --sizes S`` — one ``dlf`` epoch at each size (training ratings/s,
  peak memory), and the cost per rating of the largest size over the smallest's;
* ``accuracy``: ``synthetic_accuracy.py --ratings N`` for ``dlf`` (the shipped
  defaults, no ``--param``), ``mf`` and ``baseline`` on the same synthetic split of each size
  in ``--accuracy-sizes``: held-out RMSE, and for ``dlf`` the epochs and seconds to its
  early-stopped best epoch.

The issue's bars are checked and reported under ``checks`` (``true``/``false`` per bar; a part
not run is left out). Timings on a shared machine are noisy: ``load_average`` is recorded
before and after each part.

    python benchmarks/at_size.py --json docs/speed/at_size.json
    python benchmarks/at_size.py --lines 1000000 --sizes 1000000 --accuracy-sizes 1000000 --json small.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run_part(script: str, args: list[str], out: Path) -> dict[str, Any]:
    """``python benchmarks/SCRIPT ARGS --json OUT`` in a fresh process; its JSON, with the wall
    time and the load average around it."""
    before = os.getloadavg()
    started = time.perf_counter()
    subprocess.run([sys.executable, str(HERE / script), *args, "--json", str(out)], check=True)
    result = json.loads(out.read_text())
    return {"result": result, "wall_seconds": time.perf_counter() - started,
            "load_average": {"before": before, "after": os.getloadavg()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=5_000_000, help="CSV lines for reading (0: skip)")
    parser.add_argument("--sizes", default="1000000,4000000,16000000", help="sizes for throughput ('': skip)")
    parser.add_argument("--accuracy-sizes", default="1000000,4000000", help="sizes for accuracy ('': skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", help="directory for the synthetic ratings of scale.py (reused across runs)")
    parser.add_argument("--json", dest="json_path", required=True)
    args = parser.parse_args(argv)
    out: dict[str, Any] = {"threads": args.threads, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    checks: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as work:
        tmp = Path(work)
        if args.lines:
            part = run_part("read_speed.py", ["--lines", str(args.lines)], tmp / "read.json")
            out["reading"] = part
            r = part["result"]
            checks["reading time ≤ 1.5× pandas (all cores)"] = r["time_ratio"] <= 1.5
            checks["reading memory ≤ 2× pandas"] = r["memory_ratio"] <= 2.0
            if "one_core" in r:
                checks["reading time ≤ 1.5× pandas (one core each)"] = r["one_core"]["time_ratio"] <= 1.5
            checks["bad value reported on its line"] = bool(r["bad_value"]["ok"])
        if args.sizes:
            extra = ["--cache", args.cache] if args.cache else []
            part = run_part("scale.py", ["--sizes", args.sizes, "--threads", str(args.threads), *extra],
                            tmp / "scale.json")
            out["throughput"] = part
            rows = part["result"]["sizes"]
            first, last = rows[0], rows[-1]
            cost = first["ratings_per_second"] / last["ratings_per_second"]
            out["throughput"]["cost_per_rating_ratio"] = cost
            if last["ratings"] >= 16_000_000:
                checks["16M: ≥ 250,000 ratings/s"] = last["ratings_per_second"] >= 250_000
                checks["16M: peak ≤ 2 GB"] = last["peak_rss_mb"] <= 2048
                checks["16M: cost per rating ≤ 1.2× 1M's"] = cost <= 1.2
        accuracy = {}
        for size in [int(s) for s in args.accuracy_sizes.split(",") if s]:
            row = {}
            for model in ("dlf", "mf", "baseline"):
                flags = ["--ratings", str(size), "--model", model, "--threads", str(args.threads)]
                if model == "dlf":
                    flags += ["--history"]
                part = run_part("synthetic_accuracy.py", flags, tmp / f"acc_{model}_{size}.json")
                row[model] = {"rmse": part["result"]["rmse"], "seconds": part["result"]["seconds"],
                              **({"best_epoch": part["result"]["best_epoch"], "epochs_run": part["result"]["epochs"],
                                  "seconds_to_best": part["result"]["seconds_to_best"]} if model == "dlf" else {})}
            accuracy[str(size)] = row
            checks[f"{size:,} ratings: dlf (defaults) ≤ mf"] = row["dlf"]["rmse"] <= row["mf"]["rmse"]
        if accuracy:
            out["accuracy"] = accuracy
    out["checks"] = checks
    text = json.dumps(out, indent=2)
    Path(args.json_path).write_text(text + "\n")
    print(json.dumps(checks, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

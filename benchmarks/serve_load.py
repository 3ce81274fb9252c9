"""How much load does ``dlfm serve`` take? Requests/s and latency of each endpoint under N clients.

Starts ``dlfm serve MODEL`` on a free port of 127.0.0.1 (loopback only) in a child process,
then drives it with ``--clients`` concurrent clients (one httpx async client, one connection
each) for at most ``--seconds`` and ``--max-requests`` per endpoint, and reports requests/s,
p50/p90/p99 latency and errors (any status other than 200, or a failed request) for:

- ``GET /recommend (cold)``: first one request per known user, in random order, every one a
  cache miss: the model's own cost of ranking all items for a user (bounded by
  ``--cold-seconds``);
- then, in ``--rounds`` interleaved slices (so that each endpoint sees the same load of the
  machine), for ``--seconds`` each in all:
  - ``GET /health``: the trivial endpoint of the same app, the framework's own ceiling;
  - ``GET /recommend``: k=10 for users drawn uniformly from those the cold pass reached, so
    answered from the server's ranking cache, as a long-running server mostly is;
  - ``POST /recommend``: a new user with 3 to 20 random ratings each time (never cached);
  - ``POST /predict``: 100 random known (user, item) pairs per request.

Every request is built before the clock starts. The client runs in this process and shares
the machine's cores with the server: on a small machine its CPU time (reported) is a large
part of the cost of a trivial request.

Without ``--model`` it first trains ``dlf`` on ml-100k (``dlfm train ml-100k --model dlf``, about
a minute on 2 cores). Stops the server by itself at the end.

    python benchmarks/serve_load.py --json docs/speed/serve_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import cpu_name, report  # noqa: E402

HOST = "127.0.0.1"
Request = tuple[str, str, dict[str, Any]]  # method, path, httpx keyword arguments
POOL = 5000  # distinct requests prepared per endpoint


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def train_model(path: Path) -> None:
    print(f"training dlf on ml-100k into {path} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "dlfm", "train", "ml-100k", "--model", "dlf", "-o", str(path), "--quiet"],
                   check=True, stdout=sys.stderr)


def start_server(model: Path, port: int, extra: list[str], log: Any) -> subprocess.Popen:
    """``dlfm serve`` in a child process, its output to the file ``log`` (a pipe nobody reads
    could fill up and stall the server)."""
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "dlfm", "serve", str(model), "--host", HOST, "--port", str(port),
                             *extra], stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited with status {proc.returncode}: {log.read()[-2000:]}")
        try:
            if httpx.get(f"http://{HOST}:{port}/health", timeout=1.0, trust_env=False).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise SystemExit("the server did not answer /health within 180 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Tally:
    """Latencies, errors and busy seconds of one endpoint, summed over its slices."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.seconds = 0.0
        self.server_cpu = 0.0
        self.client_cpu = 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies) * 1000.0

        def pct(q: float) -> float | None:
            return round(float(np.percentile(lat, q)), 2) if len(lat) else None

        return {"requests": len(lat), "seconds": round(self.seconds, 3),
                "requests_per_second": round(len(lat) / self.seconds, 1) if self.seconds else None,
                "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
                "errors": sum(self.errors.values()), "error_statuses": self.errors,
                "server_cpu_seconds": round(self.server_cpu, 2), "client_cpu_seconds": round(self.client_cpu, 2)}


async def drive(client: Any, make: Callable[[int], Request], tally: Tally, *, clients: int, seconds: float,
                first: int, count: int, server_pid: int) -> int:
    """``clients`` workers send requests ``make(first)``, ``make(first + 1)``… until ``seconds``
    pass or ``count`` are sent; adds them to ``tally`` and returns how many were sent."""
    counter = iter(range(first, first + count))
    sent = 0
    cpu0, client0 = cpu_seconds(server_pid), time.process_time()
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        nonlocal sent
        for n in counter:
            if time.perf_counter() >= deadline:
                return
            method, path, kwargs = make(n)
            t0 = time.perf_counter()
            try:
                response = await client.request(method, path, **kwargs)
                status = str(response.status_code)
            except Exception as exc:  # noqa: BLE001 - a failed request is counted, not fatal
                status = type(exc).__name__
            tally.latencies.append(time.perf_counter() - t0)
            sent += 1
            if status != "200":
                tally.errors[status] = tally.errors.get(status, 0) + 1

    await asyncio.gather(*(worker() for _ in range(clients)))
    tally.seconds += time.perf_counter() - started
    tally.server_cpu += cpu_seconds(server_pid) - cpu0
    tally.client_cpu += time.process_time() - client0
    return sent


async def run_all(port: int, server_pid: int, users: list[Any], items: list[Any], scale: tuple[float, float],
                  args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    rng = random.Random(args.seed)
    lo, hi = scale
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    # every request is built before the clock starts, so the client spends the same few
    # microseconds on each endpoint's requests and the figures compare the server's work
    cold_order = users[:]
    rng.shuffle(cold_order)
    cold_urls = [f"/recommend?{urlencode({'user': u, 'k': 10})}" for u in cold_order]
    hot_urls: list[str] = []  # filled after the cold pass, with the users it reached
    json_headers = {"content-type": "application/json"}
    new_bodies = [json.dumps({"ratings": {str(i): float(rng.randint(int(lo), int(hi)))
                                          for i in rng.sample(items, rng.randint(3, 20))}, "k": 10}).encode()
                  for _ in range(POOL)]
    predict_bodies = [json.dumps({"pairs": [[rng.choice(users), rng.choice(items)] for _ in range(args.pairs)]}).encode()
                      for _ in range(POOL // 10)]

    def health(n: int) -> Request:
        return "GET", "/health", {}

    def recommend_cold(n: int) -> Request:
        return "GET", cold_urls[n % len(cold_urls)], {}

    def recommend_known(n: int) -> Request:
        return "GET", hot_urls[n % POOL], {}

    def recommend_new(n: int) -> Request:
        return "POST", "/recommend", {"content": new_bodies[n % POOL], "headers": json_headers}

    def predict(n: int) -> Request:
        return "POST", "/predict", {"content": predict_bodies[n % len(predict_bodies)], "headers": json_headers}

    results: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", limits=limits, timeout=60.0, trust_env=False) as client:
        for make in (health, recommend_new, predict):  # connections opened, code paths warm; not measured
            await asyncio.gather(*(client.request(*make(n)[:2], **make(n)[2]) for n in range(args.clients)))
        cold = Tally()
        warmed = await drive(client, recommend_cold, cold, clients=args.clients, seconds=args.cold_seconds, first=0,
                             count=len(cold_urls), server_pid=server_pid)
        results["GET /recommend (cold)"] = cold.summary()
        show("GET /recommend (cold)", results["GET /recommend (cold)"])
        # the steady endpoints in interleaved slices, so that each sees the same machine load
        hot_users = cold_order[:warmed]
        hot_urls[:] = [f"/recommend?{urlencode({'user': rng.choice(hot_users), 'k': 10})}" for _ in range(POOL)]
        steady = [("GET /health", health), ("GET /recommend", recommend_known), ("POST /recommend", recommend_new),
                  (f"POST /predict ({args.pairs} pairs)", predict)]
        tallies = {name: Tally() for name, _ in steady}
        sent = {name: 0 for name, _ in steady}
        for _ in range(args.rounds):
            for name, make in steady:
                sent[name] += await drive(client, make, tallies[name], clients=args.clients,
                                          seconds=args.seconds / args.rounds, first=sent[name],
                                          count=max(0, args.max_requests - sent[name]), server_pid=server_pid)
        for name, _ in steady:
            results[name] = tallies[name].summary()
            show(name, results[name])
    results["GET /recommend"]["users"] = len(hot_users)
    return results


def show(name: str, result: dict[str, Any]) -> None:
    print(f"{name:28s} {result['requests_per_second']:8.1f} req/s  p50 {result['p50_ms']} ms  "
          f"p99 {result['p99_ms']} ms  errors {result['errors']}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a saved model (default: train dlf on ml-100k first)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="at most this long per endpoint (default 10)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleave the endpoints in this many slices of --seconds / ROUNDS each (default 5)")
    parser.add_argument("--cold-seconds", type=float, default=90.0,
                        help="at most this long for the cold pass (default 90)")
    parser.add_argument("--max-requests", type=int, default=50_000, help="at most this many requests per endpoint")
    parser.add_argument("--pairs", type=int, default=100, help="pairs per POST /predict (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for dlfm serve (repeatable), e.g. --server-arg=--threads=1")
    parser.add_argument("--json", dest="json_path", metavar="FILE", help="also write the result as JSON to FILE")
    args = parser.parse_args()
    if min(args.clients, args.rounds, args.max_requests) < 1 or min(args.seconds, args.cold_seconds) <= 0 \
            or not 1 <= args.pairs <= 1000:
        parser.error("--clients, --rounds, --seconds, --cold-seconds and --max-requests must be positive, "
                     "--pairs from 1 to 1000")

    from dlfm.models import Recommender

    with tempfile.TemporaryDirectory(prefix="dlfm-serve-load-") as tmp:
        model_path = Path(args.model) if args.model else Path(tmp) / "dlf-ml100k.dlfm"
        if not args.model:
            train_model(model_path)
        model = Recommender.load(model_path)
        users = model.user_vocab_.raw(np.flatnonzero(model.train_.user_counts > 0))
        items = model.item_vocab_.raw(np.flatnonzero(model.train_.item_counts > 0))
        scale = model.scale_
        name, dataset = model.name, model.card_.get("dataset")
        del model
        load_before = os.getloadavg()
        port = free_port()
        with open(Path(tmp) / "server.log", "w+") as log:
            server = start_server(model_path, port, args.server_arg, log)
            try:
                results = asyncio.run(run_all(port, server.pid, users, items, scale, args))
            finally:
                stop_server(server)
            log.seek(0)
            server_log = log.read().splitlines()
        load_after = os.getloadavg()

    ceiling = results["GET /health"]["requests_per_second"]
    out = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": sys.version.split()[0],
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after]},
        "model": {"name": name, "dataset": dataset, "path": str(args.model) if args.model else "trained by this run",
                  "users": len(users), "items": len(items)},
        "clients": args.clients, "seconds_per_endpoint": args.seconds, "rounds": args.rounds,
        "max_requests": args.max_requests, "command": " ".join(["python", *sys.argv]),
        "server_args": args.server_arg,
        "endpoints": results,
        "server_log_tail": server_log[-20:],
        "share_of_health": {name: round(r["requests_per_second"] / ceiling, 3) for name, r in results.items()},
        "must_show": {
            "get_recommend_share_of_health": round(results["GET /recommend"]["requests_per_second"] / ceiling, 3),
            "get_recommend_errors": results["GET /recommend"]["errors"],
            "passes": bool(results["GET /recommend"]["requests_per_second"] >= 0.5 * ceiling
                           and results["GET /recommend"]["errors"] == 0),
        },
    }
    report(out, args.json_path)


if __name__ == "__main__":
    main()

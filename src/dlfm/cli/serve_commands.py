"""``dlfm serve``: a saved model over HTTP (FastAPI + uvicorn, the ``serve`` extra)."""

from __future__ import annotations

import argparse
import errno
import inspect
import json
import os
import socket
import sys

from dlfm.cli.common import add_device_option, add_threads_option, apply_threads, check_threads
from dlfm.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a saved model over HTTP (JSON API, docs at /docs)",
                       description="Load a model once and answer GET/POST /recommend, GET/POST /predict, "
                                   "GET /health and GET /model over HTTP; OpenAPI docs at /docs. "
                                   "Needs the serve extra: pip install 'dlfm[serve]'.")
    p.add_argument("model_path", metavar="MODEL")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own copy of the model (default 1)")
    add_device_option(p)
    add_threads_option(p, " in each worker")
    p.add_argument("--cache-users", type=int, default=4096,
                   help="cache the rankings of this many known users (default 4096; 0: no cache)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20,
                   help="refuse request bodies larger than this with 413 (default 1 MiB)")
    p.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs throughput)")
    p.set_defaults(handler=run_serve)


def _check_port(host: str, port: int) -> None:
    """A clear error now, instead of uvicorn's log line, when the address cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--host {host!r}: not an address of this machine ({exc})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use; pick another with --port") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def run_serve(args: argparse.Namespace) -> int:
    if not isinstance(args.model_path, str):
        raise ConfigError("serve needs a model file")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, not {args.port}")
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    check_threads(args)
    if args.cache_users < 0:
        raise ConfigError("--cache-users must be 0 or more")
    if args.max_body_bytes < 1:
        raise ConfigError("--max-body-bytes must be positive")
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("dlfm serve needs the serve extra: pip install 'dlfm[serve]'") from None
    from dlfm.serving.app import CONFIG_ENV, create_app
    from dlfm.models import Recommender

    apply_threads(args)
    if args.port:
        _check_port(args.host, args.port)
    model = Recommender.load(args.model_path, device=args.device)  # once here: a bad file fails before serving
    options = {"host": args.host, "port": args.port, "access_log": args.access_log, "log_level": "info",
               "timeout_graceful_shutdown": 5}
    print(f"dlfm serve: {model.name} model {args.model_path} on http://{args.host}:{args.port} "
          f"(docs at /docs; Ctrl-C stops)", file=sys.stderr, flush=True)
    if args.workers == 1:
        uvicorn.run(create_app(model, max_body_bytes=args.max_body_bytes, cache_users=args.cache_users), **options)
        return 0
    os.environ[CONFIG_ENV] = json.dumps({"model_path": os.path.abspath(args.model_path), "device": args.device,
                                         "threads": args.threads, "cache_users": args.cache_users,
                                         "max_body_bytes": args.max_body_bytes})
    del model
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        # a worker loads the model before it serves: give it longer than uvicorn's 5 s, after
        # which the supervisor takes a busy worker for a hung one and restarts it
        options["timeout_worker_healthcheck"] = 300
    uvicorn.run("dlfm.serving.app:create_app_from_env", factory=True, workers=args.workers, **options)
    return 0

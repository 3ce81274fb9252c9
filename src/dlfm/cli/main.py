"""The ``dlfm`` command: a thin layer over library calls.

Each sub-command lives in its own module with a ``register(subparsers)`` function; errors
that a user can cause (:class:`~dlfm.errors.DlfmError`) print one clear message and exit with
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from dlfm import __version__
from dlfm.cli.common import is_main_process
from dlfm.errors import DlfmError

COMMAND_MODULES = ("dlfm.cli.data_commands", "dlfm.cli.model_commands", "dlfm.cli.extra_commands", "dlfm.cli.serve_commands")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but usage errors exit 2 with our prefix (no traceback)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"dlfm: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="dlfm", description="Deep latent factor models for collaborative filtering.")
    parser.add_argument("--version", action="version", version=f"dlfm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # ids with undecodable bytes must not crash printing
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    if not is_main_process():  # under torchrun: only process 0 speaks
        sys.stdout = open(os.devnull, "w")
    try:
        return int(args.handler(args) or 0)
    except DlfmError as exc:
        print(f"dlfm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dlfm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

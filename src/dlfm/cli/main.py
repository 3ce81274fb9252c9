"""The ``dlfm`` command: a thin layer over library calls.

Each sub-command lives in its own module with a ``register(subparsers)`` function; errors
that a user can cause (:class:`~dlfm.errors.DlfmError`) print one clear message and exit with
status 2, never a traceback. ``dlfm`` without a command prints the help and exits 0. A
:class:`FutureWarning` (e.g. a deprecated ``--param`` name, see :mod:`dlfm.models.base`) is
printed as one line ``dlfm: warning: ...`` on standard error, without Python's source line.

With ``--json -`` (or ``--output -``) standard output carries the result alone: everything
else the command prints (tables, notes) goes to standard error, so ``dlfm ... --json - |
python -m json.tool`` works for every command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import Any, Sequence

from dlfm import __version__
from dlfm.cli import common
from dlfm.cli.common import is_main_process
from dlfm.errors import DlfmError

COMMAND_MODULES = ("dlfm.cli.data_commands", "dlfm.cli.model_commands", "dlfm.cli.params_command",
                   "dlfm.cli.extra_commands", "dlfm.cli.serve_commands")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but usage errors exit 2 with our prefix (no traceback)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"dlfm: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="dlfm", description="Deep latent factor models for collaborative filtering.")
    parser.add_argument("--version", action="version", version=f"dlfm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def _one_line_warnings(show: Any) -> Any:
    """A :func:`warnings.showwarning` that prints dlfm's own warnings to the user — a
    FutureWarning (a renamed parameter) or a HeavyCountsWarning (heavy-tailed counts fitted by
    a Gaussian model) — as ``dlfm: warning: MESSAGE`` on standard error and hands any other
    warning to ``show``."""

    def showwarning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                    line: str | None = None) -> None:
        from dlfm.models.transforms import HeavyCountsWarning

        if issubclass(category, (FutureWarning, HeavyCountsWarning)):
            print(f"dlfm: warning: {message}", file=sys.stderr, flush=True)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def _exit_now(code: int) -> None:
    """Flush the standard streams and end the process at once, skipping the interpreter's
    teardown (seconds with PyTorch loaded on a busy machine): after Ctrl-C the user waits for
    nothing. Every file dlfm writes is complete or untouched by then (atomic writes)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; ``argv`` defaults to the process's own arguments (then this is
    the process: Ctrl-C ends it at once)."""
    own_process = argv is None
    for stream in (sys.stdout, sys.stderr):  # ids with undecodable bytes must not crash printing
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # bare `dlfm`: the help, as `dlfm --help` would print it
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 0
    args.argv = argv
    if not is_main_process():  # under torchrun: only process 0 speaks
        sys.stdout = open(os.devnull, "w")
    to_stdout = [flag for flag, dest in (("--json", "json_path"), ("--output", "output_path"))
                 if getattr(args, dest, None) == "-"]
    if len(to_stdout) > 1:
        parser.exit(2, "dlfm: error: --json - and --output - cannot both write to standard output\n")
    saved_stdout = sys.stdout
    if to_stdout:  # the result alone on stdout; tables and notes to stderr
        common.machine_stdout = saved_stdout
        sys.stdout = sys.stderr
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            return int(args.handler(args) or 0)
    except DlfmError as exc:
        print(f"dlfm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dlfm: interrupted", file=sys.stderr)
        if own_process:
            _exit_now(130)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        if to_stdout:
            sys.stdout = saved_stdout
            common.machine_stdout = None


if __name__ == "__main__":
    sys.exit(main())

"""The ``dlfm`` command line: argument parsing, printing, exit codes — a thin layer over library calls.

Owns: one module per group of sub-commands (``register(subparsers)`` + ``run_*`` handlers,
listed in :data:`dlfm.cli.main.COMMAND_MODULES`), the options they share and the one
``is_main_process`` test (:mod:`dlfm.cli.common`), and writing tables (:mod:`dlfm.cli.outputs`).
Every error a user can cause is one line ``dlfm: error: ...`` with exit status 2; a
FutureWarning is one line ``dlfm: warning: ...``.

The top layer: it may import every other package, and nothing in dlfm imports it (the
library must work without the CLI). Building the parser imports neither PyTorch nor pandas:
a module imports what a command needs inside its handler.
"""

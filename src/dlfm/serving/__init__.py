"""Serving a trained model over HTTP (``dlfm serve``).

- :mod:`dlfm.serving.queries`: the answers the CLI and the server share (one prediction
  record), so both give the same numbers for the same model;
- :mod:`dlfm.serving.service`: :class:`~dlfm.serving.service.ModelService`, the model behind a
  lock, its request limits and a bounded cache of rankings; no web framework;
- :mod:`dlfm.serving.app`: the FastAPI application, ``create_app(model)``.

Only :mod:`dlfm.serving.app` needs the optional ``serve`` extra (FastAPI, uvicorn); importing
this package does not import it.

May import :mod:`dlfm.models`, :mod:`dlfm.data`, :mod:`dlfm.errors`; must not import
:mod:`dlfm.cli` (the CLI imports :mod:`dlfm.serving.queries`, not the other way round) or
:mod:`dlfm.evaluation`.
"""

"""Scoring models: metrics, cross-validation, top-N ranking, cold start, tuning, benchmarks.

Owns: the metrics (:mod:`~dlfm.evaluation.metrics`: RMSE, MAE, the ranking metrics through one
``ranking_from_hits``, NLL-side ones), the protocols (:mod:`~dlfm.evaluation.cv`,
:mod:`~dlfm.evaluation.ranking`, :mod:`~dlfm.evaluation.coldstart`,
:mod:`~dlfm.evaluation.tuning`, :mod:`~dlfm.evaluation.benchmark`), the one summary of
per-fold records into mean and std (:func:`dlfm.evaluation.cv.summarize`) and the bridge to
Surprise (:mod:`~dlfm.evaluation.surprise_bridge`).

May import :mod:`dlfm.models`, :mod:`dlfm.data`, :mod:`dlfm.datasets`, :mod:`dlfm.errors`,
:mod:`dlfm.persistence` and (for benchmark pictures) :mod:`dlfm.plots`. Must not import
:mod:`dlfm.cli` or :mod:`dlfm.serving`; the models must not import it back.
"""

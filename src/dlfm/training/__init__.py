"""How the neural models learn: everything that exists only while a network is fitted.

Owns: the trainer, one object per fit that holds the fitting and validation parts, the
sampler, the optimizer, the hooks, checkpoints and the calibration of σ
(:mod:`~dlfm.training.trainer`); the one training loop (:mod:`~dlfm.training.loop`); the
sparse structure of the training matrix and the batches, including the removal of a rating
from its own encoders, the input-dropout masks and the row weighting
(:mod:`~dlfm.training.batching`); the regularisation scaled to the data's size
(:mod:`~dlfm.training.sizing`); crash-safe checkpoints (:mod:`~dlfm.training.checkpoint`);
and torchrun / DDP (:mod:`~dlfm.training.distributed`).

May import ``dlfm.data`` and ``dlfm.nn``; never ``dlfm.evaluation`` or the CLI. The models
(``dlfm.models.neural``) create a :class:`~dlfm.training.trainer.Trainer` in ``fit``.
"""

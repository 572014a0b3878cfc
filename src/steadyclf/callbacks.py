"""Training callbacks: the hooks a fit calls, and the callbacks steadyclf provides.

Subclass :class:`Callback` (every hook is a no-op there) and pass instances to
:meth:`~steadyclf.BinaryClassifier.fit` or ``fit_files`` (``callbacks=[...]``). Provided:

- :class:`Checkpoint`: saves the run every few epochs and on Ctrl-C, and resumes it;
- :class:`ProgressBar`: a tqdm bar over epochs.

A hook may raise :class:`StopTraining` to end training after the current epoch.

Examples
--------
>>> from steadyclf import BinaryClassifier
>>> from steadyclf.callbacks import Callback
>>> from steadyclf.datasets import heart_rate
>>> class Losses(Callback):
...     def __init__(self):
...         self.losses = []
...     def on_epoch_end(self, trainer, record):
...         self.losses.append(record["train_loss"])
>>> X, y = heart_rate(n=200, random_state=0)
>>> seen = Losses()
>>> clf = BinaryClassifier(max_epochs=3, validation_fraction=0.2, numeric_embedding="none")
>>> clf = clf.fit(X, y, callbacks=[seen])
>>> len(seen.losses)  # one network trained: 3 epochs
3
"""

from __future__ import annotations

from .train.checkpoint import (
    Checkpoint,
    check_checkpoint_dir,
    checkpoint_dir_for,
    remove_checkpoint,
)
from .train.progress import ProgressBar
from .train.trainer import Callback, EpochRecord, FitContext, StopTraining, TrainConfig, Trainer

__all__ = [
    "Callback",
    "Checkpoint",
    "EpochRecord",
    "FitContext",
    "ProgressBar",
    "StopTraining",
    "TrainConfig",
    "Trainer",
    "check_checkpoint_dir",
    "checkpoint_dir_for",
    "remove_checkpoint",
]

"""A progress bar over epochs, as a training callback."""

from __future__ import annotations

import sys
from typing import Any

from .trainer import Callback, EpochRecord, Trainer

__all__ = ["ProgressBar"]


class ProgressBar(Callback):
    """A tqdm progress bar over epochs, as a training callback (on stderr).

    ``tqdm_options`` go to :class:`tqdm.tqdm` (e.g. ``disable=True``, ``file=...``).

    Examples
    --------
    >>> import io
    >>> from steadyclf import BinaryClassifier
    >>> from steadyclf.callbacks import ProgressBar
    >>> from steadyclf.datasets import heart_rate
    >>> X, y = heart_rate(n=200, random_state=0)
    >>> bar = ProgressBar(file=io.StringIO())
    >>> clf = BinaryClassifier(random_state=0, max_epochs=3, validation_fraction=0.2)
    >>> clf = clf.fit(X, y, callbacks=[bar])
    >>> clf.n_iter_
    3
    """

    def __init__(self, **tqdm_options: Any) -> None:
        self.tqdm_options = tqdm_options
        self._bar: Any = None

    def on_train_setup(self, trainer: Trainer) -> None:
        """Nothing to restore."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Open the bar, sized to the epoch budget."""
        from tqdm import tqdm

        options = {"unit": "epoch", "file": sys.stderr, "leave": False, **self.tqdm_options}
        self._bar = tqdm(total=trainer.config.max_epochs, **options)

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        """Advance one epoch and show the losses."""
        if self._bar is None:
            return
        losses = {"loss": f"{record['train_loss']:.4f}"}
        if "valid_loss" in record:
            losses["valid"] = f"{record['valid_loss']:.4f}"
        self._bar.set_postfix(losses, refresh=False)
        self._bar.update(1)

    def on_train_end(self, trainer: Trainer) -> None:
        """Close the bar."""
        self.on_train_exit(trainer)

    def on_train_exit(self, trainer: Trainer) -> None:
        """Close the bar, also when training failed."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

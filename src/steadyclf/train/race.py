"""Choosing among networks on the hold-out, for data too large to cross-fit.

Small data chooses its network (with or without periodic embeddings, and each weight
decay) by out-of-fold log loss (:mod:`steadyclf.train.packed`). Larger data holds rows out
instead, and training every candidate to the end would multiply the cost of a fit. So
the candidates *race*: each trains its first epochs (:func:`race_epochs`: at least one,
and at least :data:`RACE_ROWS` rows seen), the one of lowest validation loss then goes on
from exactly where it stopped, and the others are dropped. On large data one epoch
already lands near the final loss (800,000 rows: the same test AUC after the first epoch
as at the end, ``benchmarks/large_data.py``), so the race's verdict is the final one's
in all but near ties, at the price of the losers' first epochs.

The winner continues through :meth:`Trainer.load_state_dict` (as a resumed checkpoint
does), so its model is the one an uninterrupted run of it alone would have given: the
race changes which network is trained, never how.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from torch import nn

from ..exceptions import TrainingDivergedError
from .batches import BatchSource
from .trainer import Callback, EpochRecord, StopTraining, TrainConfig, Trainer

if TYPE_CHECKING:
    from ..parallel import DistributedContext

__all__ = ["RACE_ROWS", "ContinueFrom", "RaceResult", "race", "race_epochs"]

#: The race lasts until each candidate has stepped through this many training rows (and
#: at least one epoch): 800,000 rows race for 1 epoch, 100,000 for 3, 20,000 for 14.
RACE_ROWS = 1 << 18


def race_epochs(n_train: int, max_epochs: int) -> int:
    """Epochs each candidate trains before the choice."""
    return max(1, min(max_epochs, math.ceil(RACE_ROWS / max(1, n_train))))


class _StopAfter(Callback):
    """Ends a candidate's run after ``epochs`` epochs (or its own early stop), keeping the
    trainer's state as it was then (before the best weights are restored)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.state: dict[str, Any] | None = None

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        stops = trainer.config.early_stopping and trainer.bad_epochs >= trainer.config.patience
        if trainer.epoch >= self.epochs or stops or trainer.epoch >= trainer.config.max_epochs:
            self.state = trainer.state_dict()
            raise StopTraining

    def stopped_by_another(self, trainer: Trainer) -> bool:
        """Whether another callback ended the run (the user's: it ends the whole fit)."""
        return self.state is None and trainer.stopped_early

    def on_train_setup(self, trainer: Trainer) -> None:
        """Nothing to restore."""

    def on_train_begin(self, trainer: Trainer) -> None:
        """Nothing to start."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Nothing to finish."""

    def on_train_exit(self, trainer: Trainer) -> None:
        """Nothing to release."""


class ContinueFrom(Callback):
    """Starts a run from a trainer's :meth:`~Trainer.state_dict` (the race's winner).

    Put it first among the callbacks: a checkpoint that resumes a later epoch then
    restores its own state over this one.
    """

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def on_train_setup(self, trainer: Trainer) -> None:
        """Restore the race's state of the winner."""
        trainer.load_state_dict(self.state)

    def on_train_begin(self, trainer: Trainer) -> None:
        """Nothing to start."""

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        """Nothing to do."""

    def on_train_end(self, trainer: Trainer) -> None:
        """Nothing to finish."""

    def on_train_exit(self, trainer: Trainer) -> None:
        """Nothing to release."""


@dataclass
class RaceResult:
    """The winner's index, its trainer state at the end of the race, and every
    candidate's best validation loss (``None``: it diverged)."""

    chosen: int
    state: dict[str, Any]
    losses: list[float | None]
    epochs: int
    #: A callback stopped training during the race: the fit ends with the winner so far.
    stopped: bool = False


def race(
    runs: Sequence[tuple[nn.Module, BatchSource, Any, Sequence[Any]]],
    config: TrainConfig,
    context: DistributedContext | None,
    epochs: int,
) -> RaceResult:
    """Train each ``(body, batches, validation rows, callbacks)`` of ``runs`` for
    ``epochs`` epochs with ``config`` and keep the one of lowest validation loss (of equal
    ones, the first listed). A callback that stops a run early ends that candidate's race."""
    losses: list[float | None] = []
    states: list[dict[str, Any] | None] = []
    stopped = False
    for body, batches, valid, callbacks in runs:
        stop = _StopAfter(epochs)
        trainer = Trainer(body, replace(config, callbacks=(*callbacks, stop)), context)
        try:
            trainer.fit(batches, valid)
        except TrainingDivergedError:
            losses.append(None)
            states.append(None)
            continue
        losses.append(trainer.best_loss if math.isfinite(trainer.best_loss) else None)
        states.append(stop.state if stop.state is not None else trainer.state_dict())
        if stop.stopped_by_another(trainer):
            stopped = True  # the candidates raced so far are the candidates
            break
    finite = [i for i, loss in enumerate(losses) if loss is not None]
    chosen = min(finite, key=lambda i: losses[i] or 0.0) if finite else 0
    state = states[chosen]
    if state is None:
        raise TrainingDivergedError(
            "every candidate network diverged in its first epochs; try a smaller lr or "
            "check the inputs for extreme values"
        )
    return RaceResult(chosen, state, losses, epochs, stopped)

"""Checkpoints: save a training run between epochs and continue it later, exactly.

:class:`Checkpoint` is the callback: it saves every few epochs, on Ctrl-C or SIGTERM, and
as training ends, and resumes a run from what it saved. What it writes, and how a crash
at any moment leaves the previous checkpoint or the new one and never a mix, is in
:mod:`steadyclf.train.checkpoint_files`.

Resuming restores everything the run depends on, so on the same machine (CPU) the resumed
run produces bit-for-bit the model an uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from ..exceptions import (
    DataError,
    Interrupted,
    ModelFileError,
    ParameterError,
    TrainingInterrupted,
)
from .checkpoint_files import (
    CONFIG_FIELDS,
    FORMAT,
    FORMAT_VERSION,
    INDEX_FILE,
    CheckpointData,
    StageData,
    check_checkpoint_dir,
    checkpoint_dir_for,
    config_json,
    context_json,
    is_stage_dir,
    latest_checkpoint,
    read_checkpoint,
    read_stage,
    remove_checkpoint,
    stage_dir,
    stage_dirs,
    write_checkpoint,
    write_stage,
)
from .state import check_like, check_optimizer_state, decode_state, encode_state
from .trainer import Callback, EpochRecord, FitContext, Trainer

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "Checkpoint",
    "check_checkpoint_dir",
    "checkpoint_dir_for",
    "context_json",
    "read_checkpoint",
    "remove_checkpoint",
    "write_checkpoint",
]

#: Estimator parameters that may change between the interrupted and the resumed run.
_FREE_PARAMS = frozenset({"verbose", "device"})


# -- the callback ----------------------------------------------------------------------------
#: The signals that stop a run after the epoch: Ctrl-C, and what Slurm, Kubernetes and
#: torchrun send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _SigintLatch:
    """Turn the first Ctrl-C or SIGTERM into a request to stop after the epoch; the second
    stops now."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.requested = False
        self.signum = int(signal.SIGINT)
        self._previous: dict[int, Any] = {}
        self._installed = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals are only delivered to the main thread
        self.requested = False
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)
        self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            self.uninstall()
            raise Interrupted(signum=signum)
        self.requested = True
        self.signum = signum
        name = "" if signum == signal.SIGINT else f"{signal.Signals(signum).name}: "
        print(f"steadyclf: {name}{self.message}", file=sys.stderr, flush=True)


class Checkpoint(Callback):
    """Callback that saves the run every ``every`` epochs and on Ctrl-C, and can resume it.

    Pass it to :meth:`BinaryClassifier.fit` (``callbacks=[...]``) or to a
    :class:`~steadyclf.train.trainer.Trainer`. The first Ctrl-C during training lets the
    current epoch finish, writes a checkpoint and raises
    :class:`~steadyclf.exceptions.TrainingInterrupted`; a second one stops at once.

    Parameters
    ----------
    directory : path
        Where the checkpoint lives (created if needed); see the module docstring.
    every : int or None, default=1
        Save after every ``every``-th epoch; ``None`` saves only on Ctrl-C (and, with
        ``at_end``, when training ends). With ``None``, small data's cross-fitted members
        train packed (:mod:`steadyclf.train.packed`, as without a checkpoint): the
        checkpoint then keeps each stage of their cross-fit as it ends, and Ctrl-C stops
        the stage in progress at once, keeping the stages before it (a resumed run trains
        that stage again, to the same result). A number trains them one after another,
        each checkpointed every ``every`` epochs.
    resume : bool, default=False
        Continue from the checkpoint in ``directory`` instead of starting afresh. The
        estimator parameters (except ``verbose`` and ``device``), the training data and
        the run settings must be those of the checkpointed run.
    catch_interrupt : bool, default=True
        Handle Ctrl-C (SIGINT) and SIGTERM as described above while training runs in the
        main thread.
    at_end : bool, default=False
        Also save when training ends (the command line does, so that an interruption
        during calibration or while the model is written loses no training).

    Attributes
    ----------
    resumed_epoch : int or None
        The epoch the run continued from, when ``resume`` was set.
    saved_epoch : int or None
        The epoch of the last checkpoint written.

    Examples
    --------
    >>> from steadyclf import BinaryClassifier
    >>> from steadyclf.callbacks import Checkpoint
    >>> from steadyclf.datasets import heart_rate
    >>> import tempfile
    >>> X, y = heart_rate(n=200, random_state=0)
    >>> run = tempfile.mkdtemp()
    >>> clf = BinaryClassifier(random_state=0, max_epochs=4)
    >>> clf = clf.fit(X, y, callbacks=[Checkpoint(run, every=2)])
    >>> again = BinaryClassifier(random_state=0, max_epochs=4)
    >>> resumed = Checkpoint(run, every=2, resume=True)
    >>> again = again.fit(X, y, callbacks=[resumed])
    >>> resumed.resumed_epoch
    4
    """

    #: A checkpoint tells whether it resumes on the same data: the fit digests its rows.
    needs_fingerprint = True

    def __init__(
        self,
        directory: str | os.PathLike[str],
        every: int | None = 1,
        *,
        resume: bool = False,
        catch_interrupt: bool = True,
        at_end: bool = False,
    ) -> None:
        if every is not None and (
            not isinstance(every, int) or isinstance(every, bool) or every < 1
        ):
            raise ParameterError(f"checkpoint every must be a positive integer; got {every!r}")
        self.directory = Path(directory)
        self.every = every
        self.resume = resume
        self.catch_interrupt = catch_interrupt
        self.resumed_epoch: int | None = None
        self.saved_epoch: int | None = None
        #: The last stage of packed members saved (:meth:`save_stage`), counted from 0.
        self.saved_stage: int | None = None
        self._context: FitContext | None = None
        self._pending: CheckpointData | None = None
        self.at_end = at_end
        self._parent: Checkpoint | None = None
        self._latch = _SigintLatch(
            "stopping after this epoch to save a checkpoint (press Ctrl-C again to stop at once)"
        )
        self._stage_latch = _SigintLatch(
            "stopping the cross-fitting stage in progress; the stages before it are kept "
            "(press Ctrl-C again to stop at once)"
        )

    # -- hooks -------------------------------------------------------------------------
    def on_fit_begin(self, context: FitContext) -> None:
        """Estimator hook: remember the run; when resuming, check it is the same run."""
        self._context = context
        if self.resume:
            latest = latest_checkpoint(self.directory)
            if latest is not None and is_stage_dir(self.directory, latest):
                # packed members: each stage is read when its turn comes
                _check_same_fit(read_stage(latest), context)
                return
            data = read_checkpoint(latest or self.directory)
            _check_same_fit(data, context)
            if latest == self.directory:
                self._pending = data
            else:  # a fit of several parts: each part resumes itself
                self.resumed_epoch = data.epoch

    def part(self, *index: int) -> Checkpoint:
        """The checkpoint of one part of a fit that trains several networks in turn (the
        cross-fitted members of small data), in a subdirectory ``part-i-j``.

        When resuming, a part with a checkpoint continues from it (a finished part stops
        at once with its final weights) and a part without one starts afresh.
        """
        directory = self.directory / ("part-" + "-".join(str(i) for i in index))
        resume = self.resume and (directory / INDEX_FILE).is_file()
        part = Checkpoint(
            directory,
            self.every,
            resume=resume,
            catch_interrupt=self.catch_interrupt,
            at_end=self.at_end,
        )
        part._context = self._context
        part._parent = self
        return part

    def on_train_setup(self, trainer: Trainer) -> None:
        """Restore the checkpointed state when resuming."""
        if self.resume:
            data = self._pending or read_checkpoint(self.directory)
            self._pending = None
            _check_same_training(data, trainer)
            trainer.load_state_dict(data.state)
            self.resumed_epoch = data.epoch

    def on_train_begin(self, trainer: Trainer) -> None:
        """Start catching Ctrl-C."""
        if self.catch_interrupt:
            self._latch.install()

    def on_epoch_end(self, trainer: Trainer, record: EpochRecord) -> None:
        """Save on schedule; after a Ctrl-C, save and stop."""
        due = self.every is not None and trainer.epoch % self.every == 0
        if due or self._latch.requested:
            self.save(trainer)
        if self._latch.requested:
            self._stop(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        """With ``at_end``, save the finished training: an interruption after it (during
        calibration, or while the model is written) then loses none of it. A signal that
        came after the last epoch's end stops the run here, once it is saved."""
        requested = self._latch.requested
        if (self.at_end or requested) and self.saved_epoch != trainer.epoch:
            self.save(trainer)
        if requested:
            self._stop(trainer)

    def _stop(self, trainer: Trainer) -> None:
        """End the run after a signal, once the checkpoint is saved."""
        self._latch.uninstall()
        raise TrainingInterrupted(
            f"training interrupted after epoch {trainer.epoch}; checkpoint saved in "
            f"{str(self.directory)!r}; resume from it to continue",
            signum=self._latch.signum,
        )

    def on_train_exit(self, trainer: Trainer) -> None:
        """Give Ctrl-C back its previous meaning."""
        self._latch.uninstall()

    # -- packed members ------------------------------------------------------------------
    @property
    def keeps_stages(self) -> bool:
        """Whether a cross-fit under this checkpoint may train its members packed, saving
        each stage as it ends: with ``every=None``, unless resuming a run that trained its
        members one after another (it continues so); when resuming packed stages, always."""
        if self.resume:
            if stage_dirs(self.directory):
                return True
            if latest_checkpoint(self.directory) is not None:
                return False
        return self.every is None

    def load_stage(self, stage: int) -> list[dict[str, Any]] | None:
        """When resuming, what stage ``stage`` of a packed cross-fit saved (see
        :meth:`save_stage`), or ``None`` when it must train."""
        path = stage_dir(self.directory, stage)
        if not (self.resume and (path / INDEX_FILE).is_file()):
            return None
        data = read_stage(path)
        if self._context is not None:
            _check_same_fit(data, self._context)
        return data.networks

    def save_stage(self, stage: int, networks: list[dict[str, Any]]) -> None:
        """Keep stage ``stage`` of a packed cross-fit: per network, its members' weights and
        what its cross-fit measured (tensors, numbers, strings, lists, dicts)."""
        write_stage(self.directory, stage, networks, self._context)
        self.saved_stage = stage

    @contextlib.contextmanager
    def stopping_stage(self) -> Iterator[Callable[[], bool]]:
        """Around a packed stage: Ctrl-C or SIGTERM asks the stage to stop (the callable
        yielded says whether one came). A stage stopped so raises
        :class:`~steadyclf.exceptions.TrainingInterrupted` through :meth:`interrupted`."""
        latch = self._stage_latch
        if self.catch_interrupt:
            latch.install()
        try:
            yield lambda: latch.requested
        finally:
            latch.uninstall()

    def interrupted(self, stage: int) -> TrainingInterrupted:
        """The error for a signal that stopped packed stage ``stage``."""
        kept = (
            f"checkpoint saved in {str(self.directory)!r} after stage {self.saved_stage + 1}; "
            "resume from it to continue"
            if self.saved_stage is not None
            else "no earlier stage had ended: nothing was saved"
        )
        return TrainingInterrupted(
            f"training interrupted during cross-fitting stage {stage + 1}; {kept}",
            signum=self._stage_latch.signum,
        )

    @property
    def saved_at(self) -> str | None:
        """What the last checkpoint written holds: ``"epoch N"``, ``"cross-fitting stage
        N"`` (counted from 1), or ``None`` before any."""
        if self.saved_stage is not None:
            return f"cross-fitting stage {self.saved_stage + 1}"
        return None if self.saved_epoch is None else f"epoch {self.saved_epoch}"

    # -- actions -------------------------------------------------------------------------
    def save(self, trainer: Trainer) -> Path:
        """Write a checkpoint of ``trainer`` now; returns the index path."""
        path = write_checkpoint(self.directory, trainer, self._context)
        checkpoint: Checkpoint | None = self
        while checkpoint is not None:  # a part's save is its whole fit's latest
            checkpoint.saved_epoch = trainer.epoch
            checkpoint = checkpoint._parent
        return path


def _check_same_fit(data: CheckpointData | StageData, context: FitContext) -> None:
    """Refuse to resume with other estimator parameters or other training data."""
    if data.fit is None:
        raise ModelFileError(
            f"the checkpoint in {str(data.path)!r} was not written by an estimator's fit"
        )
    saved = data.fit["params"]
    current = decode_state(encode_state(context.params, {}, "params"), {}, "params")
    for name in sorted(set(saved) | set(current)):
        if name in _FREE_PARAMS:
            continue
        if saved.get(name) != current.get(name):
            raise ParameterError(
                f"cannot resume: parameter {name!r} was {saved.get(name)!r} in the "
                f"checkpointed run and is {current.get(name)!r} now; use the same settings"
            )
    if data.fit.get("seed") != context.seed:
        raise ParameterError(
            f"cannot resume: the checkpointed run used seed {data.fit.get('seed')!r}, this one "
            f"{context.seed}; set random_state to the same value"
        )
    if data.fit["data_fingerprint"] != context.fingerprint:
        rows = data.fit.get("n_rows")
        raise DataError(
            f"cannot resume: the training data differs from the checkpointed run's "
            f"({rows} rows then, {context.n_rows} now, or different values); resume with "
            "the same data"
        )
    saved_reading = data.fit.get("reading")  # absent from checkpoints before it was kept
    if saved_reading is not None and saved_reading != context.reading:
        raise ParameterError(
            f"cannot resume: the checkpointed run read its rows otherwise ({_reading(saved_reading)}; "
            f"now {_reading(context.reading)}); resume with the same --memory-budget"
        )
    if data.preprocessing is not None:
        current_pre = context.preprocessing()
        check_like(data.preprocessing, current_pre, "preprocessing")
        for key, value in current_pre.items():
            if not torch.equal(value.cpu(), data.preprocessing[key]):
                raise DataError(
                    f"cannot resume: the fitted preprocessing ({key}) differs from the "
                    "checkpointed run's"
                )


def _reading(reading: dict[str, Any]) -> str:
    if reading.get("rows_in_memory"):
        return "rows held in memory"
    return "rows streamed, " + ", ".join(
        f"{k} {v}" for k, v in sorted(reading.items()) if k != "rows_in_memory"
    )


def _check_same_training(data: CheckpointData, trainer: Trainer) -> None:
    """Check the stored state fits this trainer before handing it to PyTorch."""
    current = config_json(trainer.config)
    for name in CONFIG_FIELDS:
        if data.config.get(name) != current[name]:
            raise ParameterError(
                f"cannot resume: setting {name!r} was {data.config.get(name)!r} in the "
                f"checkpointed run and is {current[name]!r} now; use the same settings"
            )
    state = data.state
    reference = trainer.state_dict()
    where = str(data.path / INDEX_FILE)
    check_like(state["module"], reference["module"], f"{where}: module")
    if state["best_state"] is not None:
        check_like(state["best_state"], reference["module"], f"{where}: best_state")
    check_like(state["generator"], reference["generator"], f"{where}: generator")
    check_optimizer_state(state["optimizer"], trainer, f"{where}: optimizer")
    if (state["scheduler"] is None) != (reference["scheduler"] is None):
        raise ModelFileError(f"{where}: the learning-rate schedule does not match this run")
    if state["scheduler"] is not None:
        check_like(state["scheduler"], reference["scheduler"], f"{where}: scheduler")
    if state["epoch"] > trainer.config.max_epochs:
        raise ModelFileError(
            f"{where}: the checkpoint is at epoch {state['epoch']}, past max_epochs "
            f"{trainer.config.max_epochs}"
        )
    for name, tensor in state["module"].items():
        if tensor.dtype.is_floating_point and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{where}: weight {name!r} holds non-finite values")

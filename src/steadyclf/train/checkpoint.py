"""Checkpoints: save a training run between epochs and continue it later, exactly.

A checkpoint is a directory holding two files:

``checkpoint.json``
    a JSON index: format name and version, epoch, history, early-stopping state, the
    optimizer's param_groups and scalar state, the scheduler state, the run's settings and,
    when the estimator trains, its parameters, fitted preprocessing (column roles and
    vocabularies), classes and a fingerprint of the training data;
``checkpoint-<epoch>.safetensors``
    every tensor: weights, best weights so far, optimizer moments, the fitted input
    statistics and the state of the shuffling generator.

Nothing is pickled, so reading a checkpoint cannot run code. The safetensors file is
written first under a new name, then the JSON index (the commit point) is replaced
atomically; its SHA-256 pins the weights file it names, and its last field is the
SHA-256 of the index itself (:mod:`steadyclf.io.checksum`), so an edited learning rate is
refused like an edited weight. A crash or SIGKILL at any moment leaves either the previous
checkpoint or the new one, never a mix.

Resuming restores everything the run depends on, so on the same machine (CPU) the resumed
run produces bit-for-bit the model an uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import safetensors.torch
import torch

from ..exceptions import (
    DataError,
    Interrupted,
    ModelFileError,
    ParameterError,
    TrainingInterrupted,
)
from ..io.atomic import atomic_write, process_running
from ..io.checksum import sign_json, verify_json
from .state import INDEX_FILE, check_like, check_optimizer_state, decode_state, encode_state
from .trainer import Callback, EpochRecord, FitContext, TrainConfig, Trainer

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

FORMAT = "steadyclf-checkpoint"
#: 2: no state of torch's global generator (training no longer draws from it).
FORMAT_VERSION = 2

_WEIGHTS_PATTERN = re.compile(r"checkpoint-\d{1,12}\.safetensors")
#: Subdirectories of the parts of a fit that trains several networks in turn.
_PART_PATTERN = re.compile(r"part-\d{1,3}-\d{1,3}")
#: The index holds the history (a few numbers per epoch): far below this in practice.
_MAX_INDEX_BYTES = 256 << 20
#: Settings that must match to continue a run (TrainConfig fields, callbacks excluded).
_CONFIG_FIELDS = (
    "lr",
    "max_epochs",
    "batch_size",
    "optimizer",
    "schedule",
    "weight_decay",
    "early_stopping",
    "patience",
    "tol",
    "pos_weight",
    "max_recoveries",
    "seed",
)
#: Estimator parameters that may change between the interrupted and the resumed run.
_FREE_PARAMS = frozenset({"verbose", "device"})


# -- the estimator's side ------------------------------------------------------------------
def context_json(context: FitContext) -> dict[str, Any]:
    """The JSON part of a fit's context stored in a checkpoint."""
    return {
        "params": encode_state(context.params, {}, "params"),
        "seed": context.seed,
        "encoder": encode_state(context.encoder, {}, "encoder"),
        "classes": encode_state(list(context.classes), {}, "classes"),
        "data_fingerprint": context.fingerprint,
        "n_rows": context.n_rows,
    }


# -- files -----------------------------------------------------------------------------------
def write_checkpoint(
    directory: str | os.PathLike[str],
    trainer: Trainer,
    context: FitContext | None = None,
) -> Path:
    """Write the state of ``trainer`` (and of the estimator's run) to ``directory``.

    Returns the path of the index file. Older weight files in the directory are removed
    once the new index is in place.
    """
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(f"cannot create checkpoint directory {str(root)!r}: {exc}") from exc
    state = trainer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    index: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
    index["state"] = encode_state(state, tensors, "state")
    index["config"] = encode_state(_config_json(trainer.config), {}, "config")
    if context is not None:
        index["fit"] = context_json(context)
        index["preprocessing"] = encode_state(context.preprocessing(), tensors, "preprocessing")
    weights_name = f"checkpoint-{trainer.epoch:06d}.safetensors"
    blob = safetensors.torch.save(tensors, metadata={"format": FORMAT})
    index["weights_file"] = weights_name
    index["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    text = sign_json(index, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    try:
        atomic_write(root / weights_name, blob, fsync=True)
        atomic_write(root / INDEX_FILE, text, fsync=True)
    except OSError as exc:
        raise ModelFileError(f"cannot write checkpoint in {str(root)!r}: {exc}") from exc
    for old in root.glob("checkpoint-*.safetensors"):
        if old.name != weights_name:
            old.unlink(missing_ok=True)
    return root / INDEX_FILE


def checkpoint_dir_for(model_dir: str | os.PathLike[str]) -> Path:
    """Where the CLI keeps the checkpoint of a run writing ``model_dir``: beside it."""
    model = Path(model_dir)
    return model.with_name(model.name + ".checkpoint")


def _parts(root: Path) -> list[Path]:
    """The checkpoints of a fit's parts (cross-fitted members), in the order they train."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _PART_PATTERN.fullmatch(p.name)]
    return sorted((p for p in found if (p / INDEX_FILE).is_file()), key=_part_order)


def _part_order(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in path.name.split("-")[1:])


def _latest(root: Path) -> Path | None:
    """The checkpoint a run would continue: the directory's own, or its last part's."""
    if (root / INDEX_FILE).is_file():
        return root
    parts = _parts(root)
    return parts[-1] if parts else None


def check_checkpoint_dir(directory: str | os.PathLike[str], *, resume: bool) -> int | None:
    """Refuse a checkpoint directory that would mix with other files or lose a run.

    Returns the epoch to resume from (``resume``; for a fit of several parts, the epoch
    of the part in progress) or ``None``. Without ``resume`` an existing checkpoint is an
    error: starting afresh would overwrite the earlier run.
    """
    root = Path(directory)
    latest = _latest(root)
    if resume:
        if latest is None:
            raise ModelFileError(
                f"no checkpoint to resume from in {str(root)!r}; run without --resume to "
                "start training"
            )
        return read_checkpoint(latest).epoch
    if not root.exists():
        return None
    if not root.is_dir():
        raise ModelFileError(f"{str(root)!r} exists and is not a checkpoint directory")
    if latest is None:
        _remove_partial_writes(root)
    if latest is not None:
        epoch = read_checkpoint(latest).epoch
        raise ModelFileError(
            f"{str(root)!r} holds the checkpoint of an earlier run (epoch {epoch}); add "
            "--resume to continue it, or remove the directory to start afresh"
        )
    if any(root.iterdir()):
        raise ModelFileError(
            f"{str(root)!r} exists and is not a steadyclf checkpoint; move it away"
        )
    return None


def _remove_partial_writes(root: Path) -> None:
    """Remove what a killed first checkpoint write left: temporary files of writers that
    no longer run, and weights whose index was never written (nothing refers to them)."""
    for path in root.glob(".*.tmp"):
        pid = path.name.rsplit(".", 2)[-2].split("-", 1)[0]
        if not (pid.isdigit() and process_running(int(pid))):
            path.unlink(missing_ok=True)
    for path in root.glob("checkpoint-*.safetensors"):
        path.unlink(missing_ok=True)  # only called when the directory holds no index


def remove_checkpoint(directory: str | os.PathLike[str]) -> bool:
    """Delete the files a checkpoint consists of, then the directory if it is empty."""
    root = Path(directory)
    if not root.is_dir():
        return False
    for part in _parts(root):
        remove_checkpoint(part)
    for path in [root / INDEX_FILE, *root.glob("checkpoint-*.safetensors")]:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # someone else's files are in there: leave them
        root.rmdir()
    return True


def _config_json(config: TrainConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in _CONFIG_FIELDS}


@dataclass
class CheckpointData:
    """A checkpoint read from disk: the trainer state and what the estimator stored."""

    path: Path
    state: dict[str, Any]
    config: dict[str, Any]
    fit: dict[str, Any] | None
    preprocessing: dict[str, torch.Tensor] | None

    @property
    def epoch(self) -> int:
        """Epochs completed when the checkpoint was written."""
        return int(self.state["epoch"])


def read_checkpoint(directory: str | os.PathLike[str]) -> CheckpointData:
    """Read and check a checkpoint directory; never unpickles.

    For the directory of a fit that trains several networks in turn (the cross-fitted
    members of small data, each in a ``part-i-j`` subdirectory) this reads the last part
    written: the one a resumed run continues.

    Raises
    ------
    ModelFileError
        If the directory holds no checkpoint, or a damaged, tampered or foreign one.
    """
    root = _latest(Path(directory)) or Path(directory)
    index_path = root / INDEX_FILE
    if not index_path.is_file():
        raise ModelFileError(f"no checkpoint in {str(root)!r} (missing {INDEX_FILE})")
    index = _read_index(index_path)
    name = index.get("weights_file")
    if not isinstance(name, str) or not _WEIGHTS_PATTERN.fullmatch(name):
        raise ModelFileError(f"{index_path} names an invalid weights file {name!r}")
    weights_path = root / name
    if not weights_path.is_file():  # missing, or a device or FIFO that would never end
        raise ModelFileError(f"checkpoint weights {str(weights_path)!r} are missing")
    try:
        blob = weights_path.read_bytes()
    except OSError as exc:
        raise ModelFileError(
            f"cannot read checkpoint weights {str(weights_path)!r}: {exc}"
        ) from exc
    if hashlib.sha256(blob).hexdigest() != index.get("weights_sha256"):
        raise ModelFileError(
            f"{weights_path} does not match the SHA-256 recorded in {index_path}; "
            "the checkpoint was modified or damaged"
        )
    try:
        tensors = safetensors.torch.load(blob)
    except Exception as exc:  # safetensors raises its own error type for any bad header
        raise ModelFileError(f"{weights_path} is not a valid safetensors file: {exc}") from exc
    state = decode_state(index.get("state"), tensors, "state")
    config = decode_state(index.get("config"), {}, "config")
    if not isinstance(state, dict) or not isinstance(config, dict):
        raise ModelFileError(f"{index_path} lacks the training state")
    fit = decode_state(index["fit"], {}, "fit") if "fit" in index else None
    preprocessing = (
        decode_state(index["preprocessing"], tensors, "preprocessing")
        if "preprocessing" in index
        else None
    )
    _check_index_types(state, config, fit, preprocessing, index_path)
    return CheckpointData(root, state, config, fit, preprocessing)


def _read_index(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > _MAX_INDEX_BYTES:
            raise ModelFileError(f"{path} is larger than {_MAX_INDEX_BYTES >> 20} MiB")
        text = path.read_text(encoding="utf-8")
        index = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} is not a steadyclf checkpoint index (not JSON)") from exc
    except (OSError, RecursionError) as exc:
        raise ModelFileError(f"cannot read {path}: {exc}") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a steadyclf checkpoint index")
    verify_json(text, index, str(path))
    version = index.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has checkpoint format version {version!r}; this steadyclf reads version "
            f"{FORMAT_VERSION}"
        )
    return index


def _check_index_types(
    state: dict[str, Any],
    config: dict[str, Any],
    fit: Any,
    preprocessing: Any,
    where: Path,
) -> None:
    expected: dict[str, tuple[type, ...]] = {
        "epoch": (int,),
        "history": (list,),
        "best_epoch": (int, type(None)),
        "best_loss": (int, float),
        "bad_epochs": (int,),
        "recoveries": (int,),
        "module": (dict,),
        "best_state": (dict, type(None)),
        "optimizer": (dict,),
        "scheduler": (dict, type(None)),
        "generator": (torch.Tensor,),
    }
    if set(state) != set(expected):
        raise ModelFileError(f"{where}: the training state has keys {sorted(state)}")
    for key, types in expected.items():
        value = state[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ModelFileError(f"{where}: state.{key} has the wrong type")
    if state["epoch"] < 0 or state["bad_epochs"] < 0 or state["recoveries"] < 0:
        raise ModelFileError(f"{where}: negative epoch or counter in the training state")
    if len(state["history"]) != state["epoch"] or not all(
        isinstance(r, dict) for r in state["history"]
    ):
        raise ModelFileError(f"{where}: the history does not have one row per epoch")
    if set(config) != set(_CONFIG_FIELDS):
        raise ModelFileError(f"{where}: the run settings have keys {sorted(config)}")
    if fit is not None and not (
        isinstance(fit, dict)
        and isinstance(fit.get("params"), dict)
        and isinstance(fit.get("data_fingerprint"), str)
        and isinstance(fit.get("encoder"), dict)
        and isinstance(fit.get("classes"), list)
        and isinstance(preprocessing, dict)
    ):
        raise ModelFileError(f"{where}: the estimator part of the checkpoint is malformed")


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
        Save after every ``every``-th epoch; ``None`` saves only on Ctrl-C.
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
        self._context: FitContext | None = None
        self._pending: CheckpointData | None = None
        self.at_end = at_end
        self._parent: Checkpoint | None = None
        self._latch = _SigintLatch(
            "stopping after this epoch to save a checkpoint (press Ctrl-C again to stop at once)"
        )

    # -- hooks -------------------------------------------------------------------------
    def on_fit_begin(self, context: FitContext) -> None:
        """Estimator hook: remember the run; when resuming, check it is the same run."""
        self._context = context
        if self.resume:
            latest = _latest(self.directory)
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

    # -- actions -------------------------------------------------------------------------
    def save(self, trainer: Trainer) -> Path:
        """Write a checkpoint of ``trainer`` now; returns the index path."""
        path = write_checkpoint(self.directory, trainer, self._context)
        checkpoint: Checkpoint | None = self
        while checkpoint is not None:  # a part's save is its whole fit's latest
            checkpoint.saved_epoch = trainer.epoch
            checkpoint = checkpoint._parent
        return path


def _check_same_fit(data: CheckpointData, context: FitContext) -> None:
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
    if data.preprocessing is not None:
        current_pre = context.preprocessing()
        check_like(data.preprocessing, current_pre, "preprocessing")
        for key, value in current_pre.items():
            if not torch.equal(value.cpu(), data.preprocessing[key]):
                raise DataError(
                    f"cannot resume: the fitted preprocessing ({key}) differs from the "
                    "checkpointed run's"
                )


def _check_same_training(data: CheckpointData, trainer: Trainer) -> None:
    """Check the stored state fits this trainer before handing it to PyTorch."""
    current = _config_json(trainer.config)
    for name in _CONFIG_FIELDS:
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

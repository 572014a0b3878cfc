"""The files of a checkpoint: what :class:`~steadyclf.train.checkpoint.Checkpoint` writes
and reads, and the directory it keeps them in.

A checkpoint is a directory holding two files:

``checkpoint.json``
    a JSON index: format name and version, epoch, history, early-stopping state, the
    optimizer's param_groups and scalar state, the scheduler state, the run's settings and,
    when the estimator trains, its parameters, fitted preprocessing (column roles and
    vocabularies), classes and a fingerprint of the training data;
``checkpoint-<epoch>.safetensors``
    every tensor: weights, best weights so far, optimizer moments, the fitted input
    statistics and the state of the shuffling generator.

A fit that trains several networks in turn keeps one such directory per network
(``part-<candidate>-<member>``); small data's members trained together
(:mod:`steadyclf.train.packed`) keep one per stage of their cross-fit (``stage-<k>``: every
member's final weights and what the cross-fit measured, :func:`write_stage`).

Nothing is pickled, so reading a checkpoint cannot run code. The safetensors file is
written first under a new name, then the JSON index (the commit point) is replaced
atomically; its SHA-256 pins the weights file it names, and its last field is the
SHA-256 of the index itself (:mod:`steadyclf.io.checksum`), so an edited learning rate is
refused like an edited weight. A crash or SIGKILL at any moment leaves either the previous
checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from ..exceptions import ModelFileError
from ..io.atomic import atomic_write, process_running
from ..io.checksum import sign_json, verify_json
from .state import INDEX_FILE, decode_state, encode_state
from .trainer import FitContext, TrainConfig, Trainer

__all__ = [
    "CONFIG_FIELDS",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "CheckpointData",
    "StageData",
    "check_checkpoint_dir",
    "checkpoint_dir_for",
    "config_json",
    "context_json",
    "is_stage_dir",
    "latest_checkpoint",
    "read_checkpoint",
    "read_stage",
    "remove_checkpoint",
    "stage_dir",
    "stage_dirs",
    "write_checkpoint",
    "write_stage",
]

FORMAT = "steadyclf-checkpoint"
#: 2: no state of torch's global generator (training no longer draws from it).
FORMAT_VERSION = 2

_WEIGHTS_PATTERN = re.compile(r"checkpoint-\d{1,12}\.safetensors")
#: Subdirectories of the parts of a fit that trains several networks in turn.
_PART_PATTERN = re.compile(r"part-\d{1,3}-\d{1,3}")
#: Subdirectories of the stages of a cross-fit whose members train packed.
_STAGE_PATTERN = re.compile(r"stage-\d{1,3}")
#: The index holds the history (a few numbers per epoch): far below this in practice.
_MAX_INDEX_BYTES = 256 << 20
#: Settings that must match to continue a run (TrainConfig fields, callbacks excluded).
CONFIG_FIELDS = (
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
        "reading": dict(context.reading),
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
    state = trainer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    index: dict[str, Any] = {"state": encode_state(state, tensors, "state")}
    index["config"] = encode_state(config_json(trainer.config), {}, "config")
    if context is not None:
        index["fit"] = context_json(context)
        index["preprocessing"] = encode_state(context.preprocessing(), tensors, "preprocessing")
    return _write_signed(Path(directory), index, tensors, trainer.epoch)


def _write_signed(
    root: Path, index: dict[str, Any], tensors: dict[str, torch.Tensor], n: int
) -> Path:
    """Write ``tensors`` as ``checkpoint-<n>.safetensors``, then ``index`` (signed, naming
    and pinning that file) as the directory's index; remove older weight files."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(f"cannot create checkpoint directory {str(root)!r}: {exc}") from exc
    weights_name = f"checkpoint-{n:06d}.safetensors"
    blob = safetensors.torch.save(tensors, metadata={"format": FORMAT})
    index = {"format": FORMAT, "format_version": FORMAT_VERSION, **index}
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


def _subdirs(root: Path, pattern: re.Pattern[str]) -> list[Path]:
    """The checkpoints in ``root``'s subdirectories named by ``pattern``, in number order."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if pattern.fullmatch(p.name)]
    return sorted((p for p in found if (p / INDEX_FILE).is_file()), key=_numbers)


def _numbers(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in path.name.split("-")[1:])


def _parts(root: Path) -> list[Path]:
    """The checkpoints of a fit's parts (cross-fitted members), in number order."""
    return _subdirs(root, _PART_PATTERN)


def stage_dir(root: str | os.PathLike[str], stage: int) -> Path:
    """Where stage ``stage`` of a packed cross-fit is kept in the checkpoint ``root``."""
    return Path(root) / f"stage-{stage}"


def is_stage_dir(root: Path, path: Path) -> bool:
    """Whether ``path`` is the directory of a stage kept in the checkpoint ``root``
    (:func:`stage_dir`; ``root`` itself never is, whatever its name)."""
    return path.parent == root and _STAGE_PATTERN.fullmatch(path.name) is not None


def stage_dirs(root: str | os.PathLike[str]) -> list[Path]:
    """The saved stages of a packed cross-fit (:func:`write_stage`), in order."""
    return _subdirs(Path(root), _STAGE_PATTERN)


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint a run would continue: the directory's own, the part written last
    (the one in progress: parts do not train in the order of their numbers), or the last
    stage's."""
    if (root / INDEX_FILE).is_file():
        return root
    parts = _parts(root)
    if parts:
        return max(parts, key=lambda p: ((p / INDEX_FILE).stat().st_mtime_ns, _numbers(p)))
    stages = stage_dirs(root)
    return stages[-1] if stages else None


def resume_point(root: Path, path: Path) -> str:
    """Where the checkpoint at ``path`` (``root``'s :func:`latest_checkpoint`) continues:
    ``"epoch N"``, or for a packed cross-fit the stage it saved last."""
    if is_stage_dir(root, path):
        return f"cross-fitting stage {read_stage(path).stage + 1}"
    return f"epoch {read_checkpoint(path).epoch}"


def check_checkpoint_dir(directory: str | os.PathLike[str], *, resume: bool) -> str | None:
    """Refuse a checkpoint directory that would mix with other files or lose a run.

    Returns where a resumed run continues (``resume``: ``"epoch N"``, for a fit of several
    parts the epoch of the part in progress, or the last stage of a packed cross-fit, see
    :func:`resume_point`) or ``None``. Without ``resume`` an existing checkpoint is an
    error: starting afresh would overwrite the earlier run.
    """
    root = Path(directory)
    latest = latest_checkpoint(root)
    if resume:
        if latest is None:
            raise ModelFileError(
                f"no checkpoint to resume from in {str(root)!r}; run without --resume to "
                "start training"
            )
        return resume_point(root, latest)
    if not root.exists():
        return None
    if not root.is_dir():
        raise ModelFileError(f"{str(root)!r} exists and is not a checkpoint directory")
    if latest is None:
        _remove_partial_writes(root)
    if latest is not None:
        raise ModelFileError(
            f"{str(root)!r} holds the checkpoint of an earlier run ({resume_point(root, latest)}); "
            "add --resume to continue it, or remove the directory to start afresh"
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
    for sub in [*_parts(root), *stage_dirs(root)]:
        remove_checkpoint(sub)
    for path in [root / INDEX_FILE, *root.glob("checkpoint-*.safetensors")]:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # someone else's files are in there: leave them
        root.rmdir()
    return True


def config_json(config: TrainConfig) -> dict[str, Any]:
    """The settings of a run a resumed run must share (:data:`CONFIG_FIELDS`)."""
    return {name: getattr(config, name) for name in CONFIG_FIELDS}


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
    root = latest_checkpoint(Path(directory)) or Path(directory)
    index, tensors, index_path = _read_signed(root)
    if "stage" in index:
        raise ModelFileError(f"{index_path} holds a stage of packed members, not a trainer's run")
    state = decode_state(index.get("state"), tensors, "state")
    config = decode_state(index.get("config"), {}, "config")
    if not isinstance(state, dict) or not isinstance(config, dict):
        raise ModelFileError(f"{index_path} lacks the training state")
    fit, preprocessing = _fit_part(index, tensors)
    _check_index_types(state, config, fit, preprocessing, index_path)
    return CheckpointData(root, state, config, fit, preprocessing)


def _fit_part(index: dict[str, Any], tensors: dict[str, torch.Tensor]) -> tuple[Any, Any]:
    """What the estimator stored in a checkpoint's index: its run, its preprocessing."""
    fit = decode_state(index["fit"], {}, "fit") if "fit" in index else None
    preprocessing = (
        decode_state(index["preprocessing"], tensors, "preprocessing")
        if "preprocessing" in index
        else None
    )
    return fit, preprocessing


def _read_signed(root: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    """The checked index of the checkpoint in ``root``, its tensors, and the index's path."""
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
    return index, tensors, index_path


# -- stages of packed members --------------------------------------------------------------------
@dataclass
class StageData:
    """A saved stage of a packed cross-fit (:func:`write_stage`)."""

    path: Path
    stage: int
    networks: list[dict[str, Any]]
    fit: dict[str, Any] | None
    preprocessing: dict[str, torch.Tensor] | None


def write_stage(
    directory: str | os.PathLike[str],
    stage: int,
    networks: list[dict[str, Any]],
    context: FitContext | None = None,
) -> Path:
    """Save stage ``stage`` of a cross-fit whose members trained packed, in
    ``directory/stage-<stage>``: ``networks`` (per network of the stage: its members'
    weights and what its cross-fit measured; numbers, strings, lists, string-keyed dicts
    and tensors) with the fit's context. Returns the index path."""
    tensors: dict[str, torch.Tensor] = {}
    index: dict[str, Any] = {"stage": stage}
    index["networks"] = encode_state(networks, tensors, "networks")
    if context is not None:
        index["fit"] = context_json(context)
        index["preprocessing"] = encode_state(context.preprocessing(), tensors, "preprocessing")
    return _write_signed(stage_dir(directory, stage), index, tensors, stage)


def read_stage(directory: str | os.PathLike[str]) -> StageData:
    """Read and check a stage saved by :func:`write_stage` (its own directory)."""
    root = Path(directory)
    index, tensors, index_path = _read_signed(root)
    stage = index.get("stage")
    networks = decode_state(index.get("networks"), tensors, "networks")
    if not (
        isinstance(stage, int)
        and not isinstance(stage, bool)
        and root.name == stage_dir(root.parent, stage).name
        and isinstance(networks, list)
        and all(isinstance(n, dict) for n in networks)
    ):
        raise ModelFileError(f"{index_path} is not a stage of packed members")
    fit, preprocessing = _fit_part(index, tensors)
    if fit is not None and not (isinstance(fit, dict) and isinstance(preprocessing, dict)):
        raise ModelFileError(f"{index_path}: the estimator part of the checkpoint is malformed")
    return StageData(root, stage, networks, fit, preprocessing)


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
    if set(config) != set(CONFIG_FIELDS):
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

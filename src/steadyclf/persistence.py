"""Save and load fitted models: safetensors + JSON, written atomically, never pickled.

Persistence works on a plain :class:`ModelState` (the schema, the layout, the weights as
NumPy arrays, the classes, parameters and training facts), not on the estimator:
:meth:`steadyclf.BinaryClassifier.to_state` and ``from_state`` convert. Reading a model
imports neither torch nor the estimator. A model is a directory with two files:

``model.safetensors``
    the ``state_dict`` of the fitted network: weights and every fitted statistic held in
    buffers (standardisation mean and scale, imputation medians, which columns get a
    missing indicator, one-hot vocabulary sizes);
``model.json``
    format name and version, library versions, the schema (column names, roles, dtypes,
    categorical levels, training ranges), classes, estimator parameters, decision
    threshold, training metrics and history, the network layout, the SHA-256 of the
    weights file and of every other file saved with the model (``files``), and last its
    own checksum (:mod:`steadyclf.io.checksum`).

Loading parses JSON and safetensors only: nothing in a model directory can run code
(no pickle, no ``torch.load``). The checksums turn any change to a file of the
directory, ``model.json`` included, into a clear
:class:`~steadyclf.exceptions.ModelFileError` naming that file, and every tensor's shape
and dtype is checked against the layout before use. Models saved before ``model.json``
carried its own checksum load as before (their weights are still checked);
:func:`refresh_checksum` re-signs a directory edited on purpose.

Saving writes both files (and any extra files a caller adds, such as the CLI's
``history.csv``) into a staging directory next to the target and renames it into place
(:func:`steadyclf.io.atomic.staged_directory`), so an interrupted save leaves the old
model or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
from numpy.typing import NDArray

from .exceptions import ModelFileError, SteadyclfError
from .io.atomic import atomic_write, leftovers, staged_directory
from .io.checksum import file_sha256, sign_json, verify_json
from .io.jsonable import to_jsonable
from .nn.spec import Architecture, iter_tensor_layout, upgrade_weights
from .params import validate_params
from .policy import CALIBRATIONS
from .schema.encoder import TabularEncoder

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "WEIGHTS_FILE",
    "ModelState",
    "check_model_target",
    "read_index",
    "read_model",
    "refresh_checksum",
    "save",
    "to_jsonable",
]

FORMAT = "steadyclf-model"
#: Bumped whenever a reader of the previous version could misread a new model.
#: 2: robust scaling (the scaling's centre is ``center``), several members (``bodies.*``),
#: calibration. Version 1 files still load (see :func:`steadyclf.nn.spec.upgrade_weights`).
FORMAT_VERSION = 2
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.json"
_CLASS_DTYPE_KINDS = "OUSbifu"
#: The calibration a fitted model holds: what the parameter asked for, auto resolved.
FITTED_CALIBRATIONS = tuple(m for m in CALIBRATIONS if m != "auto")
#: model.json holds the schema and the history: far below this for any real model.
MAX_INDEX_BYTES = 256 << 20
#: The index of a checkpoint directory (steadyclf.train.checkpoint, not imported: torch).
_CHECKPOINT_INDEX = "checkpoint.json"
_LIBRARIES = ("steadyclf", "torch", "numpy", "pandas", "scikit-learn", "safetensors")


@dataclass
class ModelState:
    """A fitted model as plain data: what a model directory holds.

    ``weights`` maps the network's tensor names (see
    :func:`steadyclf.nn.spec.tensor_layout`) to NumPy arrays; ``training`` holds the
    facts of the fit (epochs, resolved settings, validation metrics...). ``classes`` is
    in the network's code order, ``[negative, positive]`` (``model.json`` has always held
    them so), not sorted as an estimator's ``classes_``.
    """

    schema: dict[str, Any]
    architecture: dict[str, Any]
    weights: dict[str, NDArray[Any]]
    classes: NDArray[Any]
    threshold: float
    params: dict[str, Any]
    training: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    n_features_in: int = 0
    feature_names_in: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Probabilities are ``sigmoid(scale * logit + bias)`` (identity: scale 1, bias 0).
    calibration: dict[str, Any] = field(
        default_factory=lambda: {"method": "none", "scale": 1.0, "bias": 0.0}
    )


# -- saving ----------------------------------------------------------------------------------
def save(
    state: ModelState,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
    extra_files: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``state`` as a model directory at ``path``, atomically.

    Parameters
    ----------
    state : ModelState
        A fitted model (``BinaryClassifier.to_state()``).
    path : path
        The model directory. An existing model directory is replaced; an existing
        directory that is neither empty nor a model is refused.
    metadata : mapping, optional
        JSON-friendly facts stored under ``"metadata"`` in ``model.json`` (the CLI
        stores the target column and the data file).
    extra_files : callable, optional
        Called with the staging directory before the rename, to add files that must
        appear together with the model (e.g. ``history.csv``).

    Returns
    -------
    The model directory.
    """
    target = Path(path)
    check_model_target(target)
    tensors = {k: np.require(v, requirements="C") for k, v in state.weights.items()}
    blob = safetensors.numpy.save(tensors, metadata={"format": FORMAT})
    index = _index(state, hashlib.sha256(blob).hexdigest(), {**state.metadata, **(metadata or {})})
    index = to_jsonable(index)
    with staged_directory(target) as staging:
        (staging / WEIGHTS_FILE).write_bytes(blob)
        if extra_files is not None:
            extra_files(staging)
        index["files"] = _other_files(staging)
        (staging / INDEX_FILE).write_text(_signed(index), encoding="utf-8")
    return target


def refresh_checksum(directory: str | os.PathLike[str], *, files: bool = True) -> Path:
    """Re-sign a model or checkpoint directory edited on purpose; returns its index path.

    For tests and tools that change saved files by hand (an edited field of
    ``model.json`` or ``checkpoint.json``, a replaced weights file): the checksums of the
    files (unless ``files=False``: the index alone, keeping the checksums it records) and
    of the index are computed again, so the directory loads as if it had been written so,
    and every other check of its fields and tensors still applies.
    """
    root = Path(directory)
    is_model = (root / INDEX_FILE).is_file() or not (root / _CHECKPOINT_INDEX).is_file()
    index_path = root / (INDEX_FILE if is_model else _CHECKPOINT_INDEX)
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot re-sign {str(index_path)!r}: {exc}") from None
    if not isinstance(index, dict):
        raise ModelFileError(f"{str(index_path)!r} is not a steadyclf index")
    if not is_model:
        weights = root / str(index.get("weights_file"))
        if files and weights.is_file():
            index["weights_sha256"] = file_sha256(weights)
        return atomic_write(index_path, sign_json(index, ensure_ascii=False, separators=(",", ":")))
    if files:
        if isinstance(index.get("weights"), dict) and (root / WEIGHTS_FILE).is_file():
            index["weights"]["sha256"] = file_sha256(root / WEIGHTS_FILE)
        index["files"] = _other_files(root)
    return atomic_write(index_path, _signed(index))


def _signed(index: dict[str, Any]) -> str:
    return sign_json(index, indent=2, allow_nan=False)


def _other_files(root: Path) -> dict[str, str]:
    """The SHA-256 of each file saved with the model besides the index and the weights."""
    return {
        p.name: file_sha256(p)
        for p in sorted(root.iterdir())
        if p.is_file() and p.name not in (INDEX_FILE, WEIGHTS_FILE)
    }


def check_model_target(path: str | os.PathLike[str]) -> None:
    """Raise :class:`ModelFileError` if saving to ``path`` would clobber other files.

    Call it before a long training run so that a bad ``--out`` fails first.
    """
    target = Path(path)
    if not target.exists():
        return
    if not target.is_dir():
        raise ModelFileError(f"{str(target)!r} exists and is a file; a model is a directory")
    if any(target.iterdir()) and not (target / INDEX_FILE).is_file():
        raise ModelFileError(
            f"{str(target)!r} exists and is not a steadyclf model directory; choose another output or remove it"
        )


def _index(state: ModelState, sha256: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    history = list(state.history)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "weights": {"file": WEIGHTS_FILE, "sha256": sha256},
        "architecture": state.architecture,
        "schema": state.schema,
        "n_features_in": int(state.n_features_in),
        "feature_names_in": state.feature_names_in,
        "classes": {"values": state.classes.tolist(), "dtype": state.classes.dtype.str},
        "threshold": float(state.threshold),
        "calibration": state.calibration,
        "parameters": state.params,
        "training": {**state.training, "last_epoch": history[-1] if history else None},
        "history": history,
        "metadata": dict(metadata),
    }


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:  # pragma: no cover - odd installs
            versions[name] = "unknown"
    return versions


# -- loading ---------------------------------------------------------------------------------
def read_index(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``model.json`` of a model directory, after checking its format version."""
    root = _model_dir(path)
    index_path = root / INDEX_FILE
    try:
        if index_path.stat().st_size > MAX_INDEX_BYTES:
            raise ModelFileError(
                f"{str(index_path)!r} is larger than {MAX_INDEX_BYTES >> 20} MiB; it is not a model index"
            )
        text = index_path.read_text(encoding="utf-8")
        index = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{str(index_path)!r} is corrupted (not valid JSON: {exc})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ModelFileError(f"{str(index_path)!r} is not a steadyclf model file")
    verify_json(text, index, repr(str(index_path)))
    version = index.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{str(index_path)!r} is corrupted (format_version {version!r})")
    if version > FORMAT_VERSION:
        versions = index.get("versions")
        made_by = versions.get("steadyclf") if isinstance(versions, dict) else "a newer version"
        raise ModelFileError(
            f"model {str(root)!r} has format version {version} (written by steadyclf {made_by}); this steadyclf reads up to version {FORMAT_VERSION}: upgrade steadyclf to load it"
        )
    return index


def read_model(path: str | os.PathLike[str]) -> ModelState:
    """Read and check a model directory written by :func:`save`.

    Only JSON and safetensors are parsed: no code in the files can run. Every tensor's
    name, shape and dtype is checked against the layout in ``model.json`` before use, and
    the schema, parameters and classes against each other.

    Raises
    ------
    ModelFileError
        The directory or one of its files is missing, corrupted, modified, or of a newer
        format version.
    """
    # A save replaces the directory in one rename (a link swapped to a new version): the
    # files read here come from one version if the version is the same before and after.
    # Otherwise the model was replaced while it was read: read it again.
    for _ in range(_READ_ATTEMPTS - 1):
        before = _version(path)
        try:
            state = _read_model(path)
        except (ModelFileError, OSError):
            if _version(path) != before:
                continue
            raise
        if _version(path) == before:
            return state
    return _read_model(path)


#: Reads of a model replaced while it was read, before giving up (a save every few ms).
_READ_ATTEMPTS = 20


def _version(path: str | os.PathLike[str]) -> tuple[str | None, int]:
    """Which version of a model directory ``path`` is now: its link and the inode."""
    try:
        link = os.readlink(path) if os.path.islink(path) else None
        return link, os.stat(path).st_ino
    except OSError:
        return None, -1


def _read_model(path: str | os.PathLike[str]) -> ModelState:
    try:
        return _read_model_files(path)
    except ModelFileError:
        raise
    except OSError as exc:  # a file went away under the read, or cannot be read
        raise ModelFileError(
            f"cannot read model {str(path)!r}: {exc.strerror or exc} ({exc.filename})"
        ) from None


def _read_model_files(path: str | os.PathLike[str]) -> ModelState:
    index = read_index(path)
    root = Path(path)
    _check_other_files(root, index.get("files"))
    weights = upgrade_weights(_read_weights(root, index), int(index["format_version"]))
    try:
        return _state(index, weights, root)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
        raise ModelFileError(
            f"{str(root / INDEX_FILE)!r} is corrupted (missing or invalid field: {exc})"
        ) from None


def _model_dir(path: str | os.PathLike[str]) -> Path:
    root = Path(path)
    if root.is_symlink() and not root.exists():
        raise ModelFileError(
            f"{str(root)!r} links to {os.readlink(root)!r}, which is not there: a model is a "
            "link to its saved version beside it, so copy it following links (cp -rL, "
            "tar -h, rsync -L) or copy the directory holding both"
        )
    if not root.exists():
        left = [p.name for p in leftovers(root) if (p / INDEX_FILE).is_file()]
        hint = (
            f" (an interrupted save left {left[-1]!r} beside it: rename it to {root.name!r}, or save again)"
            if left
            else ""
        )
        raise ModelFileError(f"no model directory at {str(root)!r}{hint}")
    if not root.is_dir():
        raise ModelFileError(
            f"{str(root)!r} is not a directory; a model is a directory holding {INDEX_FILE} and {WEIGHTS_FILE}"
        )
    present = [name for name in (INDEX_FILE, WEIGHTS_FILE) if (root / name).is_file()]
    if not present:
        raise ModelFileError(
            f"{str(root)!r} holds no model (no {INDEX_FILE}, no {WEIGHTS_FILE}); give the "
            "directory a model was saved to"
        )
    for name in (INDEX_FILE, WEIGHTS_FILE):
        if name not in present:
            raise ModelFileError(
                f"model directory {str(root)!r} is missing {name}; it is incomplete, save the model again"
            )
    return root


def _check_other_files(root: Path, files: Any) -> None:
    """Every file ``model.json`` lists is there with the bytes it had when saved."""
    if files is None:
        return  # saved before the other files were listed
    if not isinstance(files, dict):
        raise ModelFileError(f"{str(root / INDEX_FILE)!r} is corrupted (files is not a mapping)")
    for name, expected in files.items():
        path = root / str(name)
        if "/" in str(name) or name in ("", ".", "..") or not path.is_file():
            raise ModelFileError(
                f"model directory {str(root)!r} lacks {name!r}, which {INDEX_FILE} lists; "
                "it is incomplete or was modified"
            )
        if file_sha256(path) != expected:
            raise ModelFileError(
                f"{str(path)!r} does not match the checksum in {INDEX_FILE}: the file was "
                "modified or damaged after the model was saved"
            )


def _read_weights(root: Path, index: dict[str, Any]) -> dict[str, NDArray[Any]]:
    weights_path = root / WEIGHTS_FILE
    blob = weights_path.read_bytes()
    weights = index.get("weights")
    expected = weights.get("sha256") if isinstance(weights, dict) else None
    if hashlib.sha256(blob).hexdigest() != expected:
        raise ModelFileError(
            f"{str(weights_path)!r} does not match the checksum in {INDEX_FILE}: the file is corrupted or was modified"
        )
    try:
        return dict(safetensors.numpy.load(blob))
    except Exception as exc:  # safetensors has its own error type for any bad header
        raise ModelFileError(
            f"{str(weights_path)!r} is not a valid safetensors file ({exc})"
        ) from None


def _state(index: dict[str, Any], weights: dict[str, NDArray[Any]], root: Path) -> ModelState:
    where = f"{str(root / INDEX_FILE)!r} is corrupted"
    try:
        arch = Architecture.from_dict(index["architecture"])
    except ValueError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    _check_weights(arch, weights, root)
    encoder = TabularEncoder.from_dict(index["schema"])
    _check_consistent(arch, weights, encoder, root)
    params = dict(index["parameters"])
    if isinstance(params.get("hidden"), list):
        params["hidden"] = tuple(params["hidden"])
    try:
        validate_params(params)
    except (SteadyclfError, KeyError) as exc:
        raise ModelFileError(f"{where}: invalid parameters ({exc})") from None
    if tuple(params["hidden"]) != arch.hidden:
        raise ModelFileError(
            f"{where}: parameter hidden={tuple(params['hidden'])} does not match the network"
        )
    if index["weights"].get("file") != WEIGHTS_FILE:
        raise ModelFileError(f"{where}: the weights file must be {WEIGHTS_FILE}")
    threshold = index["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ModelFileError(f"{where}: the threshold is not a number")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold {threshold} is not in [0, 1]")
    columns = [c.name for c in encoder.columns_]
    n_features_in = int(index["n_features_in"])
    if n_features_in != len(columns):
        raise ModelFileError(
            f"{where}: n_features_in is {n_features_in} but the schema has {len(columns)} columns"
        )
    names = index.get("feature_names_in")
    if names is not None:
        names = [str(n) for n in names]
        if names != columns:
            raise ModelFileError(f"{where}: feature_names_in does not match the schema's columns")
    calibration = _calibration(index.get("calibration"), where)
    training = dict(index["training"])
    for name in ("weight_decay", "validation_fraction", "lr"):  # some absent from old files
        if training.get(name) is not None:
            training[name] = _finite_number(training[name], name)
    int(training["n_iter"])
    training["warnings"] = _stall_warnings(training.get("warnings"), where)
    return ModelState(
        schema=index["schema"],
        architecture=index["architecture"],
        weights=weights,
        classes=_classes(index["classes"]),
        threshold=float(threshold),
        params=params,
        training=training,
        history=[dict(r) for r in index.get("history", [])],
        n_features_in=n_features_in,
        feature_names_in=names,
        metadata=dict(index.get("metadata") or {}),
        calibration=calibration,
    )


def _calibration(data: Any, where: str) -> dict[str, Any]:
    """The calibration in model.json (identity when absent: models before it existed)."""
    if data is None:
        return {"method": "none", "scale": 1.0, "bias": 0.0}
    if not isinstance(data, dict) or not isinstance(data.get("method"), str):
        raise ModelFileError(f"{where}: calibration is not a mapping with a method")
    if data["method"] not in FITTED_CALIBRATIONS:
        raise ModelFileError(
            f"{where}: calibration method {data['method']!r} is not one of {', '.join(map(repr, FITTED_CALIBRATIONS))}"
        )
    for name in ("scale", "bias"):
        value = data.get(name)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ModelFileError(f"{where}: calibration {name} is {value!r}, not a finite number")
    if data["scale"] <= 0:
        raise ModelFileError(f"{where}: calibration scale must be positive, got {data['scale']}")
    return dict(data)


def _stall_warnings(data: Any, where: str) -> list[dict[str, Any]]:
    """The stall warnings of the fit (``warnings_``): a list of mappings of text, numbers
    and nulls (none in models saved before they were kept)."""
    plain = (str, int, float, type(None))
    if data is None:
        return []
    if not isinstance(data, list) or not all(
        isinstance(w, dict) and all(isinstance(v, plain) for v in w.values()) for w in data
    ):
        raise ModelFileError(f"{where}: training warnings are not a list of plain mappings")
    return [dict(w) for w in data]


def _check_weights(arch: Architecture, weights: dict[str, NDArray[Any]], root: Path) -> None:
    """Every tensor present, with the shape and dtype the layout in model.json implies.

    Nothing is built from the layout's numbers before they are checked against the file:
    the members first (their tensors are counted in the file), then the layout's tensors
    one by one, stopping at the first the file lacks, so a layout edited to list 10**12
    tensors costs no more than the file's own count. Every size in the layout is then a
    tensor's shape in the weights file.
    """
    where = str(root / WEIGHTS_FILE)
    members = len({name.split(".")[1] for name in weights if name.startswith("bodies.")})
    if arch.n_members != members:
        raise ModelFileError(
            f"{str(root / INDEX_FILE)!r} is corrupted: architecture n_members is {arch.n_members}, but {WEIGHTS_FILE} holds the tensors of {members}"
        )
    expected: dict[str, tuple[tuple[int, ...], str]] = {}
    for name, (shape, dtype) in iter_tensor_layout(arch):
        if name not in weights:
            raise ModelFileError(f"{where!r} lacks tensor {name!r}; it does not match {INDEX_FILE}")
        expected[name] = (shape, dtype)
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise ModelFileError(
            f"{where!r} has unexpected tensor {extra[0]!r}; it does not match {INDEX_FILE}"
        )
    for name, (shape, dtype) in expected.items():
        tensor = weights[name]
        if tuple(tensor.shape) != shape or tensor.dtype != np.dtype(dtype):
            raise ModelFileError(
                f"tensor {name!r} in {where!r} is {tensor.dtype} {tuple(tensor.shape)}, expected {dtype} {shape} from {INDEX_FILE}"
            )
        if tensor.dtype.kind == "f" and not bool(np.isfinite(tensor).all()):
            raise ModelFileError(f"tensor {name!r} in {where!r} holds NaN or infinite values")
    scale = weights.get("encoder.normalize.scale")
    if scale is not None and not bool((scale > 0).all()):
        raise ModelFileError(f"tensor 'encoder.normalize.scale' in {where!r} is not positive")


def _check_consistent(
    arch: Architecture, weights: dict[str, NDArray[Any]], encoder: TabularEncoder, root: Path
) -> None:
    where = str(root)
    vocab = weights["encoder.categorical.vocab_sizes"].tolist()
    if vocab != encoder.vocab_sizes or vocab != list(arch.vocab_sizes):
        raise ModelFileError(
            f"model {where!r}: category vocabularies in {WEIGHTS_FILE} and {INDEX_FILE} disagree"
        )
    if encoder.target_sizes != list(arch.target_sizes):
        raise ModelFileError(
            f"model {where!r}: the levels with target statistics in {INDEX_FILE} do not match the tables of {WEIGHTS_FILE}"
        )
    if len(encoder.numeric_columns) != arch.n_numeric:
        raise ModelFileError(
            f"model {where!r}: {INDEX_FILE} lists {len(encoder.numeric_columns)} numeric columns, the network reads {arch.n_numeric}"
        )
    columns = weights["encoder.impute.missing_columns"]
    if columns.size and (int(columns.min()) < 0 or int(columns.max()) >= arch.n_numeric):
        raise ModelFileError(f"model {where!r}: missing-value indicators point outside the columns")


def _classes(data: dict[str, Any]) -> np.ndarray:
    """The two classes, in their dtype: no wider than the values (a dtype ``<U1000000``
    would make every array of labels 4 MB a row), holding the values unchanged."""
    dtype = np.dtype(str(data["dtype"]))
    if dtype.kind not in _CLASS_DTYPE_KINDS:
        raise ValueError(f"classes dtype {dtype} is not allowed")
    values = list(data["values"])
    if len(values) != 2:
        raise ValueError(f"a binary model has 2 classes, not {len(values)}")
    if dtype.kind in "US":
        natural = np.array([str(v) for v in values], dtype=dtype.kind)
        if dtype.itemsize > natural.itemsize:
            raise ValueError(
                f"classes dtype {dtype.str} is wider than its values ({natural.dtype.str})"
            )
    classes = np.array(values, dtype=dtype)
    if dtype.kind != "S" and classes.tolist() != values:  # bytes are saved as their repr
        raise ValueError(f"classes {values!r} do not fit their dtype {dtype.str}")
    if classes[0] == classes[1]:
        raise ValueError(f"classes.values lists the class {values[0]!r} twice")
    return classes


def _finite_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"training.{name} is {value!r}, not a finite number")
    return float(value)

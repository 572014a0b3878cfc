"""Save and load fitted models: safetensors + JSON, written atomically, never pickled.

A model is a directory with two files:

``model.safetensors``
    the ``state_dict`` of the fitted network: weights and every fitted statistic held in
    buffers (standardisation mean and scale, imputation medians, which columns get a
    missing indicator, one-hot vocabulary sizes);
``model.json``
    format name and version, library versions, the schema (column names, roles, dtypes,
    categorical levels, training ranges), classes, estimator parameters, decision
    threshold, training metrics and history, the network layout, and the SHA-256 of the
    weights file.

Loading parses JSON and safetensors only: nothing in a model directory can run code
(no pickle, no ``torch.load``). The checksum turns any change to the weights into a
clear :class:`~steadyclf.exceptions.ModelFileError`, and every tensor's shape and dtype
is checked against the layout before use.

Saving writes both files (and any extra files a caller adds, such as the CLI's
``history.csv``) into a temporary directory next to the target and renames it into
place, so an interrupted save leaves the old model or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from .exceptions import ModelFileError, SteadyclfError
from .network import ACTIVATIONS, SteadyNet
from .tabular import TabularEncoder

if TYPE_CHECKING:
    from .estimator import BinaryClassifier

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "WEIGHTS_FILE",
    "check_model_target",
    "load",
    "read_index",
    "save",
    "to_jsonable",
]

FORMAT = "steadyclf-model"
#: Bumped whenever a reader of the previous version could misread a new model.
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.json"
_CLASS_DTYPE_KINDS = "OUSbifu"
#: model.json holds the schema and the history: far below this for any real model.
MAX_INDEX_BYTES = 256 << 20
_LIBRARIES = ("steadyclf", "torch", "numpy", "pandas", "scikit-learn", "safetensors")


# -- saving ----------------------------------------------------------------------------------
def save(
    clf: BinaryClassifier,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
    extra_files: Callable[[Path], None] | None = None,
) -> Path:
    """Write the fitted ``clf`` as a model directory at ``path``, atomically.

    Parameters
    ----------
    clf : BinaryClassifier
        A fitted estimator.
    path : path
        The model directory. An existing model directory is replaced; an existing
        directory that is neither empty nor a model is refused.
    metadata : mapping, optional
        JSON-friendly facts stored under ``"metadata"`` in ``model.json`` (the CLI
        stores the target column and the data file).
    extra_files : callable, optional
        Called with the temporary directory before the rename, to add files that must
        appear together with the model (e.g. ``history.csv``).

    Returns
    -------
    The model directory.
    """
    target = Path(path)
    check_model_target(target)
    state = {k: v.detach().cpu().contiguous() for k, v in clf.module_.state_dict().items()}
    blob = safetensors.torch.save(state, metadata={"format": FORMAT})
    index = _index(clf, hashlib.sha256(blob).hexdigest(), metadata or {})
    text = json.dumps(to_jsonable(index), indent=2, allow_nan=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        (staging / WEIGHTS_FILE).write_bytes(blob)
        (staging / INDEX_FILE).write_text(text + "\n", encoding="utf-8")
        if extra_files is not None:
            extra_files(staging)
        os.chmod(staging, 0o755)
        _install(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


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


def _install(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an old model there is swapped out, then removed."""
    if not target.exists() or not any(target.iterdir()):
        os.replace(staging, target)  # rename(2) replaces a missing or empty directory
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, backup)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _index(clf: BinaryClassifier, sha256: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    feature_names = getattr(clf, "feature_names_in_", None)
    history = list(getattr(clf, "history_", []))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "weights": {"file": WEIGHTS_FILE, "sha256": sha256},
        "architecture": _architecture(clf.module_),
        "schema": clf.encoder_.to_dict(),
        "n_features_in": int(clf.n_features_in_),
        "feature_names_in": None if feature_names is None else [str(n) for n in feature_names],
        "classes": {"values": clf.classes_.tolist(), "dtype": clf.classes_.dtype.str},
        "threshold": float(clf.threshold_),
        "parameters": clf.get_params(deep=False),
        "training": {
            "n_iter": int(clf.n_iter_),
            "best_epoch": clf.best_epoch_,
            "lr": float(clf.lr_),
            "batch_size": clf.batch_size_,
            "weight_decay": getattr(clf, "weight_decay_", None),
            "validation_fraction": getattr(clf, "validation_fraction_", None),
            "last_epoch": history[-1] if history else None,
            "validation_metrics": getattr(clf, "validation_metrics_", {}),
        },
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


def _architecture(module: SteadyNet) -> dict[str, Any]:
    body = list(module.body)
    linears = [layer for layer in body if isinstance(layer, nn.Linear)]
    activations = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.GELU: "gelu"}
    activation = next(
        (activations[type(m)] for m in body if type(m) in activations), "relu"
    )  # no hidden layer: any value builds the same network
    return {
        "n_numeric": int(module.encoder.n_numeric),
        "n_missing": int(module.encoder.impute.missing_columns.numel()),
        "vocab_sizes": [int(v) for v in module.encoder.categorical.sizes],
        "hidden": [int(layer.out_features) for layer in linears[:-1]],
        "activation": activation,
        "batchnorm": isinstance(body[0], nn.BatchNorm1d),
    }


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: tuples become lists, NumPy scalars Python ones, NaN/inf None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)  # an object parameter: recorded, not restored


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
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{str(index_path)!r} is corrupted (not valid JSON: {exc})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ModelFileError(f"{str(index_path)!r} is not a steadyclf model file")
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


def load(path: str | os.PathLike[str]) -> BinaryClassifier:
    """Load a model directory written by :func:`save` as a fitted ``BinaryClassifier``.

    Its predictions equal those of the estimator that was saved. Only JSON and
    safetensors are parsed: no code in the files can run.

    Raises
    ------
    ModelFileError
        The directory or one of its files is missing, corrupted, modified, or of a newer
        format version.

    Examples
    --------
    >>> import steadyclf, tempfile
    >>> from steadyclf.datasets import heart_rate
    >>> X, y = heart_rate(n=100)
    >>> clf = steadyclf.BinaryClassifier(random_state=0, max_epochs=5).fit(X, y)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     again = steadyclf.load(clf.save(f"{tmp}/model"))
    >>> bool((again.predict_proba(X) == clf.predict_proba(X)).all())
    True
    """
    index = read_index(path)
    root = Path(path)
    state = _read_weights(root, index)
    try:
        return _build(index, state, root)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ModelFileError(
            f"{str(root / INDEX_FILE)!r} is corrupted (missing or invalid field: {exc})"
        ) from None


def _model_dir(path: str | os.PathLike[str]) -> Path:
    root = Path(path)
    if not root.exists():
        raise ModelFileError(f"no model directory at {str(root)!r}")
    if not root.is_dir():
        raise ModelFileError(
            f"{str(root)!r} is not a directory; a model is a directory holding {INDEX_FILE} and {WEIGHTS_FILE}"
        )
    for name in (INDEX_FILE, WEIGHTS_FILE):
        if not (root / name).is_file():
            raise ModelFileError(
                f"model directory {str(root)!r} is missing {name}; it is incomplete, save the model again"
            )
    return root


def _read_weights(root: Path, index: dict[str, Any]) -> dict[str, torch.Tensor]:
    weights_path = root / WEIGHTS_FILE
    blob = weights_path.read_bytes()
    weights = index.get("weights")
    expected = weights.get("sha256") if isinstance(weights, dict) else None
    if hashlib.sha256(blob).hexdigest() != expected:
        raise ModelFileError(
            f"{str(weights_path)!r} does not match the checksum in {INDEX_FILE}: the file is corrupted or was modified"
        )
    try:
        return safetensors.torch.load(blob)
    except Exception as exc:  # safetensors has its own error type for any bad header
        raise ModelFileError(
            f"{str(weights_path)!r} is not a valid safetensors file ({exc})"
        ) from None


def _build(index: dict[str, Any], state: dict[str, torch.Tensor], root: Path) -> BinaryClassifier:
    from .estimator import BinaryClassifier

    layout = _layout(index["architecture"], root)
    # The layout is checked against the tensors on the "meta" device first (shapes, no
    # memory): a tampered model.json cannot make loading allocate more than the weights.
    with torch.device("meta"):
        _check_state(SteadyNet(*layout[:5], batchnorm=layout[5]).double(), state, root)
    module = SteadyNet(*layout[:5], batchnorm=layout[5]).double()
    module.load_state_dict(state, strict=True)
    module.eval()
    encoder = TabularEncoder.from_dict(index["schema"])
    _check_consistent(module, encoder, root)

    allowed = BinaryClassifier().get_params(deep=False)
    params = {k: v for k, v in index["parameters"].items() if k in allowed}
    if isinstance(params.get("hidden"), list):
        params["hidden"] = tuple(params["hidden"])
    clf = BinaryClassifier(**params)
    clf.encoder_ = encoder
    clf.module_ = module
    clf.classes_ = _classes(index["classes"])
    clf.n_features_in_ = int(index["n_features_in"])
    if index.get("feature_names_in") is not None:
        clf.feature_names_in_ = np.asarray(
            [str(n) for n in index["feature_names_in"]], dtype=object
        )
    training = index["training"]
    clf.history_ = [dict(r) for r in index.get("history", [])]
    clf.n_iter_ = int(training["n_iter"])
    clf.best_epoch_ = training.get("best_epoch")
    clf.lr_ = float(training["lr"])
    clf.batch_size_ = training.get("batch_size")
    for name in ("weight_decay", "validation_fraction"):  # absent from older model files
        if training.get(name) is not None:
            setattr(clf, f"{name}_", _finite_number(training[name], name))
    clf.validation_metrics_ = dict(training.get("validation_metrics") or {})
    clf.threshold_ = float(index["threshold"])
    if not 0.0 <= clf.threshold_ <= 1.0:
        raise ValueError(f"threshold {clf.threshold_} is not in [0, 1]")
    _check_fitted_fields(clf, index, root)
    return clf


def _check_fitted_fields(clf: BinaryClassifier, index: dict[str, Any], root: Path) -> None:
    """What the rest of model.json says must agree with the schema and the network."""
    where = f"{str(root / INDEX_FILE)!r} is corrupted"
    if index["weights"].get("file") != WEIGHTS_FILE:
        raise ModelFileError(f"{where}: the weights file must be {WEIGHTS_FILE}")
    if not isinstance(index["threshold"], (int, float)) or isinstance(index["threshold"], bool):
        raise ModelFileError(f"{where}: the threshold is not a number")
    columns = [c.name for c in clf.encoder_.columns_]
    if clf.n_features_in_ != len(columns):
        raise ModelFileError(
            f"{where}: n_features_in is {clf.n_features_in_} but the schema has {len(columns)} columns"
        )
    names = getattr(clf, "feature_names_in_", None)
    if names is not None and list(names) != columns:
        raise ModelFileError(f"{where}: feature_names_in does not match the schema's columns")
    try:
        clf._validate_params_()
    except SteadyclfError as exc:
        raise ModelFileError(f"{where}: invalid parameters ({exc})") from None
    hidden = tuple(
        int(layer.out_features) for layer in clf.module_.body if isinstance(layer, nn.Linear)
    )
    if tuple(clf.hidden) != hidden[:-1]:
        raise ModelFileError(
            f"{where}: parameter hidden={tuple(clf.hidden)} does not match the network"
        )


def _layout(arch: Any, root: Path) -> tuple[int, int, list[int], tuple[int, ...], str, bool]:
    """The network layout in model.json, type- and range-checked."""
    where = f"{str(root / INDEX_FILE)!r}"

    def count(value: Any, name: str, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ModelFileError(
                f"{where} is corrupted: architecture {name} is {value!r}, not an integer >= {low}"
            )
        return value

    def counts(value: Any, name: str, low: int) -> list[int]:
        if not isinstance(value, list):
            raise ModelFileError(f"{where} is corrupted: architecture {name} is not a list")
        return [count(v, name, low) for v in value]

    if not isinstance(arch, dict):
        raise ModelFileError(f"{where} is corrupted: architecture is not a mapping")
    activation = arch.get("activation")
    if activation not in ACTIVATIONS:
        raise ModelFileError(
            f"{where} is corrupted: unknown activation {activation!r} (one of {', '.join(ACTIVATIONS)})"
        )
    batchnorm = arch.get("batchnorm")
    if not isinstance(batchnorm, bool):
        raise ModelFileError(f"{where} is corrupted: architecture batchnorm is {batchnorm!r}")
    return (
        count(arch.get("n_numeric"), "n_numeric", 0),
        count(arch.get("n_missing"), "n_missing", 0),
        counts(arch.get("vocab_sizes"), "vocab_sizes", 2),
        tuple(counts(arch.get("hidden"), "hidden", 1)),
        str(activation),
        batchnorm,
    )


def _check_state(module: nn.Module, state: dict[str, torch.Tensor], root: Path) -> None:
    """Every tensor present, with the shape and dtype the layout in model.json implies."""
    where = str(root / WEIGHTS_FILE)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"lacks tensor {missing[0]!r}" if missing else f"has unexpected tensor {extra[0]!r}"
        raise ModelFileError(f"{where!r} {what}; it does not match {INDEX_FILE}")
    for name, reference in expected.items():
        tensor = state[name]
        if tuple(tensor.shape) != tuple(reference.shape) or tensor.dtype != reference.dtype:
            raise ModelFileError(
                f"tensor {name!r} in {where!r} is {tensor.dtype} {tuple(tensor.shape)}, expected {reference.dtype} {tuple(reference.shape)} from {INDEX_FILE}"
            )
        if tensor.dtype.is_floating_point and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"tensor {name!r} in {where!r} holds NaN or infinite values")
    scale = state.get("encoder.normalize.scale")
    if scale is not None and not bool((scale > 0).all()):
        raise ModelFileError(f"tensor 'encoder.normalize.scale' in {where!r} is not positive")


def _check_consistent(module: SteadyNet, encoder: TabularEncoder, root: Path) -> None:
    where = str(root)
    vocab = module.encoder.categorical.vocab_sizes.tolist()
    if vocab != encoder.vocab_sizes or vocab != module.encoder.categorical.sizes:
        raise ModelFileError(
            f"model {where!r}: category vocabularies in {WEIGHTS_FILE} and {INDEX_FILE} disagree"
        )
    if len(encoder.numeric_columns) != module.encoder.n_numeric:
        raise ModelFileError(
            f"model {where!r}: {INDEX_FILE} lists {len(encoder.numeric_columns)} numeric columns, the network reads {module.encoder.n_numeric}"
        )
    columns = module.encoder.impute.missing_columns
    if columns.numel() and (
        int(columns.min()) < 0 or int(columns.max()) >= module.encoder.n_numeric
    ):
        raise ModelFileError(f"model {where!r}: missing-value indicators point outside the columns")


def _classes(data: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(str(data["dtype"]))
    if dtype.kind not in _CLASS_DTYPE_KINDS:
        raise ValueError(f"classes dtype {dtype} is not allowed")
    values = list(data["values"])
    if len(values) != 2:
        raise ValueError(f"a binary model has 2 classes, not {len(values)}")
    return np.array(values, dtype=dtype)


def _finite_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"training.{name} is {value!r}, not a finite number")
    return float(value)

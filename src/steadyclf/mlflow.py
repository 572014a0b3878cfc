"""MLflow: a flavour for steadyclf models, and the tracking of training runs.

Needs the ``mlflow`` extra (``pip install 'steadyclf[mlflow]'``).

**The flavour.** :func:`save_model` / :func:`log_model` store the model directory as
steadyclf writes it (``model.safetensors`` and JSON: no pickle, nothing that runs code on
load) inside an MLflow model, with

- an input signature: one required column per input of the model (its values may be
  missing), ``string`` for categorical
  columns of text and ``Any`` for the others, whose values the preprocessing checks
  (MLflow's own types refuse int64 as ``double``, floats as ``long``, time zones as
  ``datetime``: see :func:`_column_type`);
- a ``python_function`` flavour whose ``predict(DataFrame)`` runs the preprocessing and
  the network (NumPy; torch is not imported) and returns **the probability of the positive
  class** (``positive_class_``), one float per row: the column of ``predict_proba(X)``
  that ``classes_`` gives it (``classes_`` is sorted; the positive class may be first).
  So ``mlflow models serve`` answers ``{"predictions": [p1, p2, ...]}``, and a Spark UDF
  of this model gives a column of doubles.

:func:`load_model` gives back a :class:`~steadyclf.BinaryClassifier`.

**Tracking.** :func:`autolog` (or ``steadyclf train --mlflow``) logs to the active run
(``MLFLOW_TRACKING_URI``; MLflow's default store otherwise): the parameters, the resolved
plan (``plan.json`` and ``plan.*`` parameters), the history per epoch (``epoch_*``
metrics with ``step`` = epoch; ``.memberK`` suffixes for cross-fitted networks), the
validation metrics of the model (``valid_*``), the stall detector's warnings (``stall_warnings.json`` and a
count), the HTML report on the training rows (``report.html``, with the ``report``
extra; ``fit_files`` reads them again) and the model (under MLflow 3 a LoggedModel, not
an artifact of the run: ``runs:/<run id>/model`` or ``models:/<model id>``).

This module is ``steadyclf.mlflow``; inside it ``import mlflow`` is the MLflow package
(absolute imports), never this module.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .exceptions import ParameterError, SteadyclfError
from .io.jsonable import to_jsonable

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from .estimator import BinaryClassifier
    from .predictor import Predictor

__all__ = [
    "FLAVOR_NAME",
    "CliRun",
    "TrackingError",
    "autolog",
    "load_model",
    "log_model",
    "log_training",
    "require_mlflow",
    "save_model",
    "signature_of",
]

FLAVOR_NAME = "steadyclf"
#: The steadyclf model directory inside an MLflow model.
MODEL_SUBDIR = "steadyclf-model"
#: Rows of the training data the logged report scores at most (it permutes each column).
REPORT_ROWS = 5000
MLFLOW_EXTRA = "pip install 'steadyclf[mlflow]'"


def require_mlflow() -> Any:
    """The ``mlflow`` package, or a :class:`ParameterError` naming the extra to install."""
    try:
        with warnings.catch_warnings():
            # mlflow.pyfunc warns about its own type hints when first imported (3.17).
            warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType")
            import mlflow
            import mlflow.pyfunc
    except ImportError:
        raise ParameterError(f"MLflow support needs the mlflow package: {MLFLOW_EXTRA}") from None
    return mlflow


# -- the flavour ---------------------------------------------------------------------------
def _model_directory(model: Any, scratch: Path) -> Path:
    """A saved model directory for ``model``: a fitted estimator (saved into ``scratch``)
    or the path of a directory already written."""
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_dir():
            raise ParameterError(f"model directory {str(path)!r} does not exist")
        return path
    save = getattr(model, "save", None)
    if save is None:
        raise ParameterError(
            f"give a fitted steadyclf BinaryClassifier or a model directory; got {type(model).__name__}"
        )
    return Path(save(scratch / "model"))


def _is_text(dtype: str) -> bool:
    """Whether a column of this (recorded) dtype passes MLflow's ``string`` check: object
    or a pandas string dtype."""
    try:
        parsed = pd.api.types.pandas_dtype(dtype)
    except (TypeError, ValueError):
        return False
    return parsed == np.dtype(object) or isinstance(parsed, pd.StringDtype)


def _column_type(role: str, dtype: str) -> Any:
    """A column's type in the signature: ``string`` for a categorical column of text,
    ``Any`` for every other column.

    MLflow's other types refuse values that ``predict_proba`` reads, the training data's
    own among them: ``double`` refuses int64, ``long`` refuses floats and missing values
    (a JSON null is not an int64), ``datetime`` refuses time zones (a DuckDB TIMESTAMPTZ
    column, an ISO string ending in ``Z``), ``string`` refuses a column of numbers (a
    categorical fitted on integers), and ``boolean`` turns a JSON null into False when
    served. ``Any`` passes the column on as it is and the preprocessing checks its values,
    refusing what ``predict_proba`` refuses, with the same one-line messages.
    """
    from mlflow.types.schema import AnyType

    if role == "categorical" and _is_text(dtype):
        return "string"
    return AnyType()


def signature_of(predictor: Predictor) -> Any:
    """The MLflow signature of a model: one required input column per column it reads
    (typed by :func:`_column_type`), and one ``double`` output (the probability of the
    positive class)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs: list[Any] = [
        # Required: the model needs every column (MLflow then refuses a request without
        # one, naming it). A required column's values may still be missing (NaN, None,
        # NaT): MLflow checks that the column is there, not each value.
        ColSpec(_column_type(c.role, c.dtype), c.name, required=True)
        for c in predictor.encoder.columns_
        if c.role != "dropped"
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double")]))


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    mlflow_model: Any = None,
    signature: Any = None,
    metadata: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Save ``model`` (a fitted estimator or a model directory) as an MLflow model at
    ``path`` (a new directory).

    Examples
    --------
    >>> import steadyclf.mlflow  # doctest: +SKIP
    >>> steadyclf.mlflow.save_model(clf, "mlflow-model")  # doctest: +SKIP
    >>> import mlflow  # doctest: +SKIP
    >>> mlflow.pyfunc.load_model("mlflow-model").predict(X)  # doctest: +SKIP
    """
    require_mlflow()
    target = Path(path)
    if target.is_file() or (target.exists() and any(target.iterdir())):
        raise ParameterError(f"MLflow model path {str(target)!r} exists and is not empty")
    made = next((p for p in (*reversed(target.parents), target) if not p.exists()), None)
    target.mkdir(parents=True, exist_ok=True)
    try:
        _write(model, target, mlflow_model, signature, metadata)
    except BaseException:
        # Nothing half-written: the folders this call made go, or what it put in the
        # empty folder it was given.
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        else:
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise


def _write(
    model: Any,
    target: Path,
    mlflow_model: Any,
    signature: Any,
    metadata: Mapping[str, Any] | None,
) -> None:
    """:func:`save_model`'s files, in the empty folder ``target``."""
    mlflow = require_mlflow()
    from mlflow.models import Model
    from mlflow.pyfunc import add_to_model

    from .predictor import Predictor
    from .version import __version__

    with tempfile.TemporaryDirectory() as scratch:
        source = _model_directory(model, Path(scratch))
        predictor = Predictor.load(source)  # checks the files before they are stored
        shutil.copytree(source, target / MODEL_SUBDIR, symlinks=False)
    mlflow_model = mlflow_model if mlflow_model is not None else Model()
    mlflow_model.signature = signature if signature is not None else signature_of(predictor)
    if metadata:
        mlflow_model.metadata = dict(metadata)
    add_to_model(
        mlflow_model,
        loader_module="steadyclf.mlflow",
        data=MODEL_SUBDIR,
        python_env="python_env.yaml",
    )
    mlflow_model.add_flavor(
        FLAVOR_NAME,
        steadyclf_version=__version__,
        data=MODEL_SUBDIR,
        format="safetensors+json",
        classes=[str(c) for c in predictor.classes],
        output="probability of classes[1]",
    )
    mlflow_model.save(str(target / "MLmodel"))
    requirements = [f"steadyclf=={__version__}", f"mlflow-skinny=={mlflow.__version__}"]
    (target / "requirements.txt").write_text("\n".join(requirements) + "\n")
    python = ".".join(map(str, sys.version_info[:3]))
    (target / "python_env.yaml").write_text(
        f"python: {python}\nbuild_dependencies:\n  - pip\ndependencies:\n  - -r requirements.txt\n"
    )


def log_model(model: Any, name: str = "model", **kwargs: Any) -> Any:
    """Log ``model`` to the active run (started if none is) as the logged model ``name``
    (MLflow 3: a LoggedModel in the run's outputs, not one of its artifacts; loaded by
    ``runs:/<run id>/<name>`` or ``models:/<model id>``); returns MLflow's ``ModelInfo``
    (``model_uri`` is ``models:/<model id>``...). Keyword arguments go to
    :meth:`mlflow.models.Model.log` (``registered_model_name``, ``metadata``...)."""
    require_mlflow()
    from mlflow.models import Model

    return Model.log(None, sys.modules[__name__], name=name, model=model, **kwargs)


def _local_model(model_uri: str, dst_path: str | None) -> Path:
    mlflow = require_mlflow()
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst_path))
    from mlflow.models import Model

    conf = Model.load(str(local / "MLmodel")).flavors.get(FLAVOR_NAME)
    if conf is None:
        raise ParameterError(f"{model_uri!r} is not a steadyclf model (no {FLAVOR_NAME!r} flavour)")
    return local / conf["data"]


def load_model(model_uri: str, dst_path: str | None = None) -> BinaryClassifier:
    """The :class:`~steadyclf.BinaryClassifier` stored at ``model_uri`` (``runs:/...``,
    ``models:/...`` or a local path)."""
    from .estimator import load

    return load(_local_model(model_uri, dst_path))


class _PyFuncModel:
    """What ``mlflow.pyfunc.load_model`` returns for a steadyclf model."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> NDArray[Any]:
        """Probability of the positive class per row of ``model_input`` (a DataFrame).

        Input the model refuses raises MLflow's invalid-input error with the model's
        one-line message, which a model server answers with (400) instead of its
        "unexpected error"."""
        from mlflow.exceptions import MlflowException

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            return np.asarray(self.predictor.probability(frame), dtype=np.float64)
        except SteadyclfError as exc:
            raise MlflowException.invalid_parameter_value(str(exc)) from exc

    def get_raw_model(self) -> Predictor:
        """The :class:`~steadyclf.Predictor` inside."""
        return self.predictor


def _load_pyfunc(path: str) -> _PyFuncModel:
    """MLflow's entry point for the ``python_function`` flavour (``loader_module``)."""
    from .predictor import Predictor

    return _PyFuncModel(Predictor.load(path))


# -- tracking ------------------------------------------------------------------------------
def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Parameters as MLflow keeps them: strings, nested mappings flattened with dots."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[f"{prefix}{key}"] = text[:6000]
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _history_metrics(history: Sequence[Mapping[str, Any]]) -> Iterator[tuple[str, float, int]]:
    """``(name, value, step)`` per number of each epoch's record, named ``epoch_<key>``:
    apart from the validation metrics of the model (``valid_accuracy``...), which MLflow
    would otherwise show as the value of the last epoch (the highest step)."""
    members = {r.get("member", 0) for r in history}
    for record in history:
        suffix = f".member{record.get('member', 0)}" if len(members) > 1 else ""
        step = int(record["epoch"])
        for key, value in record.items():
            number = _number(value)
            if key in ("epoch", "member") or number is None:
                continue
            yield f"epoch_{key}{suffix}", number, step


def log_training(
    clf: BinaryClassifier,
    *,
    X: pd.DataFrame | None = None,
    y: Any = None,
    model: Any = None,
    log_model_as: str | None = "model",
) -> None:
    """Log what a fitted estimator's training did to the active run.

    Parameters, the plan, the history per epoch, the validation metrics, the stall
    warnings; the HTML report on ``X, y`` (at most :data:`REPORT_ROWS` of them) when the
    ``report`` extra is installed; and the model (``model``: its saved directory, else
    ``clf`` is saved) as ``log_model_as`` (None: not logged).
    """
    mlflow = require_mlflow()
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient()
    run_id = mlflow.active_run().info.run_id
    params = _flat(clf.get_params()) | _flat(dict(clf.plan_), "plan.")
    now = int(time.time() * 1000)  # ms: MLflow's timestamps; the history keeps no clock time
    metrics = [Metric(k, v, now, s) for k, v, s in _history_metrics(clf.history_)]
    valid = clf.validation_metrics_ or {}
    metrics += [
        Metric(f"valid_{k}", n, now, 0) for k, v in valid.items() if (n := _number(v)) is not None
    ]
    warnings = list(clf.warnings_)
    metrics.append(Metric("stall_warnings", float(len(warnings)), now, 0))
    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow's limits per batch
        client.log_batch(run_id, params=items[start : start + 100])
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    mlflow.log_dict(to_jsonable(dict(clf.plan_)), "plan.json")
    mlflow.log_dict(to_jsonable(warnings), "stall_warnings.json")
    if X is not None and y is not None:
        _log_report(clf, X, y)
    if log_model_as is not None:
        log_model(model if model is not None else clf, name=log_model_as)


def _report_extra() -> bool:
    """Whether the report extra (jinja2, matplotlib) is installed."""
    try:
        import jinja2  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _log_report(clf: BinaryClassifier, X: pd.DataFrame, y: Any) -> None:
    """The HTML report on (a sample of) the training rows, if the report extra is there."""
    if not _report_extra():
        return
    from .report import write_report

    mlflow = require_mlflow()
    n = min(len(X), REPORT_ROWS)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_report(
            clf,
            X.iloc[:n],
            np.asarray(y)[:n],
            Path(tmp) / "report.html",
            data_name=f"the first {n} training rows",
            n_repeats=2,
            progress=False,
        )
        mlflow.log_artifact(str(path))


@contextmanager
def _run() -> Iterator[None]:
    """The active run, or a new one for the block (ended with it)."""
    mlflow = require_mlflow()
    if mlflow.active_run() is not None:
        yield
        return
    with mlflow.start_run():
        yield


class TrackingError(SteadyclfError):
    """MLflow's tracking store (or its artifact store) could not be used."""


def _problem(exc: BaseException, uri: str) -> str:
    """MLflow's message for ``exc`` without the secrets of the tracking URI, shortened."""
    from .io.uris import scrub

    text = " ".join(scrub(str(exc), uri).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


class CliRun:
    """The MLflow run of ``steadyclf train --mlflow``: the active run, or one started now
    (and ended by :meth:`end`, marked failed if training failed).

    A run that cannot be opened (an unknown or unreachable tracking URI, an
    ``MLFLOW_RUN_ID`` that the store does not have) raises :class:`TrackingError`, before
    any training."""

    def __init__(self, *, data: str, query: str | None, target: str) -> None:
        from .io.uris import redact

        mlflow = require_mlflow()
        uri = str(mlflow.get_tracking_uri())
        self.uri = uri
        self.where = f"MLflow tracking URI {redact(uri)!r}"
        self.query = query
        self.target = target
        self.started = False
        tags = {"steadyclf.data": data, "steadyclf.target": target}
        if query is not None:
            tags["steadyclf.query"] = query[:5000]
        given = os.environ.get("MLFLOW_RUN_ID")  # start_run removes it from the environment
        try:
            run = mlflow.active_run()
            if run is None:
                run = mlflow.start_run()
                self.started = True
            self.run_id = run.info.run_id
            mlflow.set_tags(tags)
        except Exception as exc:
            self.end(failed=True)
            what = f"run {given!r} (MLFLOW_RUN_ID)" if given else "a run"
            raise TrackingError(
                f"cannot open {what} at {self.where}: {_problem(exc, uri)}"
            ) from exc

    def log(self, clf: BinaryClassifier, model_dir: str, data: str, *, output: Any) -> None:
        """Log the fitted model (its directory as written) and what training did; a
        :class:`TrackingError` says the model was written but not logged."""
        X: pd.DataFrame | None = None
        y: Any = None
        try:
            X, y = _first_rows(data, self.query, self.target, REPORT_ROWS)
        except SteadyclfError as exc:  # the run is logged without a report
            output.note(f"MLflow: no report logged ({exc})")
        try:
            log_training(clf, X=X, y=y, model=model_dir)
        except Exception as exc:
            raise TrackingError(
                f"the model was written to {model_dir!r} but could not be logged to MLflow "
                f"(run {self.run_id} at {self.where}, marked failed): {_problem(exc, self.uri)}"
            ) from exc
        output.note(f"logged the run to MLflow: run {self.run_id}")

    def end(self, *, failed: bool) -> None:
        """End the run if this command started it. A failure to end it raises
        :class:`TrackingError` after a success, and is let go after a failure (whose
        error is the one to show)."""
        if not self.started:
            return
        self.started = False
        try:
            require_mlflow().end_run(status="FAILED" if failed else "FINISHED")
        except Exception as exc:
            if not failed:
                raise TrackingError(
                    f"could not end MLflow run {self.run_id} at {self.where}: "
                    f"{_problem(exc, self.uri)}"
                ) from exc


def _first_rows(
    data: Any, query: str | None, target: str, n: int
) -> tuple[pd.DataFrame, NDArray[Any]]:
    """The first ``n`` labelled rows of DATA (or of the query on it), for the report."""
    from .io.sources import open_data

    if query is not None:
        from .io.sql import SqlSource

        source: Any = SqlSource.open(data, query)
    else:
        source = open_data(data, stream=True, budget=1 << 28).source
    frames, held = [], 0
    for _, frame in source.batches(source.columns, batch_rows=min(n, 1 << 14)):
        frame = frame[frame[target].notna()]
        frames.append(frame)
        held += len(frame)
        if held >= n:
            break
    rows = pd.concat(frames, ignore_index=True).iloc[:n]
    return rows.drop(columns=[target]), rows[target].to_numpy()


def _files_rows(
    fit_files: Any, clf: BinaryClassifier, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[pd.DataFrame | None, Any]:
    """The first :data:`REPORT_ROWS` labelled rows of what ``fit_files`` read, for the
    report; ``(None, None)`` with a warning if they cannot be read again."""
    given = inspect.signature(fit_files).bind(clf, *args, **kwargs).arguments
    try:
        return _first_rows(given["data"], given.get("query"), given["target"], REPORT_ROWS)
    except SteadyclfError as exc:
        warnings.warn(f"MLflow: no report logged ({exc})", UserWarning, stacklevel=4)
        return None, None


_PATCHED: dict[str, Any] = {}


def autolog(*, log_models: bool = True, log_report: bool = True, disable: bool = False) -> None:
    """Log every :meth:`~steadyclf.BinaryClassifier.fit` and ``fit_files`` to MLflow.

    Each fit logs to the active run, or to a new run that it ends (see
    :func:`log_training`); ``disable=True`` undoes it.

    Examples
    --------
    >>> import mlflow, steadyclf.mlflow  # doctest: +SKIP
    >>> steadyclf.mlflow.autolog()  # doctest: +SKIP
    >>> with mlflow.start_run():  # doctest: +SKIP
    ...     BinaryClassifier().fit(X, y)
    """
    require_mlflow()
    from .estimator import BinaryClassifier

    for name, original in _PATCHED.items():
        setattr(BinaryClassifier, name, original)
    _PATCHED.clear()
    if disable:
        return
    fit, fit_files = BinaryClassifier.fit, BinaryClassifier.fit_files

    @functools.wraps(fit)
    def logged_fit(self: BinaryClassifier, X: Any, y: Any, *args: Any, **kwargs: Any) -> Any:
        with _run():
            fit(self, X, y, *args, **kwargs)
            rows = X if isinstance(X, pd.DataFrame) and log_report else None
            log_training(self, X=rows, y=y, log_model_as="model" if log_models else None)
        return self

    @functools.wraps(fit_files)
    def logged_fit_files(self: BinaryClassifier, *args: Any, **kwargs: Any) -> Any:
        with _run():
            fit_files(self, *args, **kwargs)
            rows: Any = None
            labels: Any = None
            if log_report and _report_extra():
                rows, labels = _files_rows(fit_files, self, args, kwargs)
            log_training(self, X=rows, y=labels, log_model_as="model" if log_models else None)
        return self

    _PATCHED.update(fit=fit, fit_files=fit_files)
    BinaryClassifier.fit = logged_fit  # type: ignore[method-assign]
    BinaryClassifier.fit_files = logged_fit_files  # type: ignore[method-assign]

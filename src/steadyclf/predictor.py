"""Prediction from a model's plain state: no torch, no scikit-learn, no estimator.

:class:`Predictor` is what ``steadyclf predict`` runs: the schema
(:class:`~steadyclf.schema.encoder.TabularEncoder`), the network's forward pass in NumPy
(:class:`~steadyclf.nn.numpy_forward.NumpyNetwork`), the calibration, the decision
threshold and the classes, read from a model directory. ``BinaryClassifier`` predicts
through the same functions (:func:`calibrate`, :func:`sigmoid`, the NumPy network), so a
saved model gives the same numbers from Python and from the command line.

Probabilities are ``sigmoid(scale * logit + bias)`` with the model's calibration
(identity by default), labels ``classes[1]`` where the probability exceeds the threshold.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from .exceptions import DataError, DataTypeError
from .io.tables import from_polars, name_list
from .nn.numpy_forward import NumpyNetwork
from .nn.spec import Architecture
from .persistence import ModelState, read_model
from .schema.encoder import TabularEncoder
from .schema.values import shift_rows

if TYPE_CHECKING:
    from .drift import DriftReport

__all__ = [
    "PREDICTION_COLUMNS",
    "InputChecks",
    "Predicted",
    "Predictor",
    "calibrate",
    "open_rows",
    "predict_batch",
    "predict_file",
    "predict_rows",
    "sigmoid",
]


def calibrate(logits: NDArray[np.float64], calibration: Mapping[str, Any]) -> NDArray[np.float64]:
    """``scale * logits + bias`` (``logits`` itself for the identity)."""
    scale, bias = float(calibration["scale"]), float(calibration["bias"])
    if scale == 1.0 and bias == 0.0:
        return logits
    return scale * logits + bias


def sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """``1 / (1 + exp(-z))`` without overflow: ``exp(z) / (1 + exp(z))`` for ``z < 0``.

    Either form is within an ulp of the exact value; this one never overflows (``z``
    of -800 gives 0, not a warning).
    """
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@dataclass
class Predictor:
    """A fitted model ready to predict: schema, NumPy network, calibration, threshold.

    Parameters
    ----------
    encoder : TabularEncoder
        The columns the model reads and how (roles, levels, training ranges).
    network : NumpyNetwork
    classes : ndarray of shape (2,)
        ``[negative, positive]``: ``classes[1]`` is the positive class (the code order
        of the model state, not the sorted ``classes_`` of an estimator).
    threshold : float
        Probability above which the label is ``classes[1]``.
    calibration : dict
        ``scale`` and ``bias`` applied to the logit before the sigmoid.

    Examples
    --------
    >>> predictor = Predictor.load("model")  # doctest: +SKIP
    >>> proba = predictor.probability(frame)  # doctest: +SKIP
    >>> labels = predictor.labels(proba)  # doctest: +SKIP
    """

    encoder: TabularEncoder
    network: NumpyNetwork
    classes: NDArray[Any]
    threshold: float
    calibration: dict[str, Any]
    #: What the model directory says about how it was made (the CLI's target column...).
    metadata: dict[str, Any] | None = None

    @classmethod
    def from_state(cls, state: ModelState) -> Predictor:
        """The predictor of a model state (as read by :func:`~steadyclf.persistence.read_model`)."""
        arch = Architecture.from_dict(state.architecture)
        return cls(
            encoder=TabularEncoder.from_dict(state.schema),
            network=NumpyNetwork(arch, state.weights),
            classes=state.classes,
            threshold=float(state.threshold),
            calibration=dict(state.calibration),
            metadata=dict(state.metadata),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Predictor:
        """Read a model directory (checked as :func:`~steadyclf.persistence.read_model` does)."""
        return cls.from_state(read_model(path))

    def decision_function(self, table: Any) -> NDArray[np.float64]:
        """Calibrated log odds of ``classes[1]`` per row of ``table``: a pandas or polars
        DataFrame, an Arrow table or record batch, or a 2-D NumPy array with the model's
        columns in order (as ``BinaryClassifier`` takes)."""
        x_num, x_cat = self.encoder.transform(self._table(table), copy=False)
        return calibrate(self.network.logits(x_num, x_cat), self.calibration)

    def _table(self, table: Any) -> pd.DataFrame | pa.RecordBatch | pa.Table:
        table = from_polars(table)
        if isinstance(table, (pd.DataFrame, pa.RecordBatch, pa.Table)):
            return table
        if isinstance(table, np.ndarray) and table.ndim == 2:
            names = [c.name for c in self.encoder.columns_]
            if table.shape[1] != len(names):
                raise DataError(
                    f"X has {table.shape[1]} columns, but the model reads {len(names)} ({name_list(names)})"
                )
            return pd.DataFrame(table, columns=names, copy=False)
        raise DataTypeError(
            "rows to predict must be a pandas or polars DataFrame, an Arrow table or record "
            f"batch, or a 2-D NumPy array; got {type(table).__name__}"
            + (f" of {table.ndim} dimensions" if isinstance(table, np.ndarray) else "")
        )

    def probability(self, table: Any) -> NDArray[np.float64]:
        """Probability of ``classes[1]`` per row."""
        return sigmoid(self.decision_function(table))

    def labels(self, proba: NDArray[np.float64], threshold: float | None = None) -> NDArray[Any]:
        """``classes[1]`` where ``proba`` exceeds the threshold (the model's by default)."""
        cut = self.threshold if threshold is None else threshold
        return self.classes[(proba > cut).astype(np.int64)]


#: The columns of the predictions, after the id column if one is copied through.
PREDICTION_COLUMNS = ("probability", "label")


# -- prediction over batches of rows ---------------------------------------------------------
class InputChecks:
    """What prediction has to say about its input, counted over every batch.

    Missing values in a column that had none in training (filled with the training
    median, a guess the model never trained on), values far outside the training range
    (see :meth:`~steadyclf.schema.encoder.TabularEncoder.out_of_range`) and categorical
    columns most of whose values are levels never learned (see
    :meth:`~steadyclf.schema.encoder.TabularEncoder.unseen_warnings`).
    """

    def __init__(self, encoder: TabularEncoder) -> None:
        self.encoder = encoder
        self.unexpected_missing: Counter[str] = Counter()
        self.out_of_range: Counter[str] = Counter()
        self.unseen: Counter[str] = Counter()
        self.present: Counter[str] = Counter()

    def add(self, x_num: NDArray[np.float64], x_cat: NDArray[np.int64] | None = None) -> None:
        """Count what the encoded inputs of one batch show."""
        self.unexpected_missing.update(self.encoder.unexpected_missing(x_num))
        self.out_of_range.update(self.encoder.out_of_range(x_num))
        if x_cat is not None and x_cat.shape[1]:
            for name, (unseen, present) in self.encoder.unseen_levels(x_cat).items():
                self.unseen[name] += unseen
                self.present[name] += present

    def messages(self) -> list[str]:
        """One warning per column with something to say, in column order."""
        found = []
        infos = {c.name: c for c in self.encoder.columns_}
        for name in self.encoder.numeric_columns:
            count = self.unexpected_missing.get(name, 0)
            if count:
                found.append(
                    f"{count} missing value{'s' if count > 1 else ''} in {name!r}, which had none in training; filled with the training median"
                )
        for name in self.encoder.numeric_columns:
            count, info = self.out_of_range.get(name, 0), infos[name]
            if count:
                found.append(
                    f"{count} value{'s' if count > 1 else ''} of {name!r} far outside the training range [{info.low:.6g}, {info.high:.6g}]; predictions there are extrapolations"
                )
        counts = {name: (self.unseen[name], self.present[name]) for name in self.present}
        return found + self.encoder.unseen_warnings(counts)


def predict_batch(
    predictor: Predictor,
    start: int,
    frame: pd.DataFrame,
    *,
    threshold: float | None = None,
    id_column: str | None = None,
    checks: InputChecks | None = None,
) -> pd.DataFrame:
    """``[id,] probability, label`` for the rows of one batch that starts at row ``start``.

    Errors in the data name rows counted from the start of the data, not of the batch.
    """
    try:
        x_num, x_cat = predictor.encoder.transform(frame, copy=False)
    except DataError as exc:
        raise shift_rows(exc, start) from None
    if checks is not None:
        checks.add(x_num, x_cat)
    logits = predictor.network.logits(x_num, x_cat)
    proba = sigmoid(calibrate(logits, predictor.calibration))
    probability, label = PREDICTION_COLUMNS
    result = pd.DataFrame({probability: proba, label: predictor.labels(proba, threshold)})
    if id_column is not None:
        result.insert(0, id_column, frame[id_column].to_numpy())
    return result


# -- files and streams -----------------------------------------------------------------------
@dataclass
class Predicted:
    """What :func:`predict_rows` did: rows predicted, the threshold, the columns it left
    out, warnings on the inputs, the drift report (if asked for) and, when collected,
    the predictions."""

    n_rows: int
    threshold: float
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    drift: DriftReport | None = None
    predictions: pd.DataFrame | None = None


def open_rows(data: str | os.PathLike[str], budget: int) -> Any:
    """The rows of ``data`` to read in batches: a :class:`~steadyclf.io.files.DataSource`
    (CSV/TSV/Parquet file, directory or glob), or a
    :class:`~steadyclf.io.files.CsvStream` of standard input for ``'-'``."""
    import sys
    from pathlib import Path

    from .io.files import CsvStream, DataSource
    from .io.tables import check_data_file

    # CSV blocks of about 1/64 of the budget: the reader holds a few while parsing.
    block = int(min(1 << 22, max(1 << 16, budget // 64)))
    if str(data) == "-":
        return CsvStream(sys.stdin.buffer, block_size=block)
    if Path(data).is_file():
        check_data_file(str(data))  # unknown type, empty file: the messages of read_table
    return DataSource.open(str(data), csv_block_size=block)


def predict_rows(
    predictor: Predictor,
    rows: Any,
    write: Callable[[pd.DataFrame], Any] | None,
    *,
    budget: int,
    threshold: float | None = None,
    id_column: str | None = None,
    drift: bool = False,
    where: str | None = None,
) -> Predicted:
    """Predict every row of ``rows`` (a source read in batches) within ``budget`` bytes.

    Each batch's ``[id,] probability, label`` goes to ``write`` as soon as it is
    predicted (``None``: kept and returned in :attr:`Predicted.predictions`). The
    columns are checked first; columns the model does not know are left out; an
    ``id_column`` is copied through as text as written (leading zeros kept). ``where``
    names the data in messages (default: the source's name).
    """
    import pyarrow as pa

    from .io.files import read_rows_for_budget
    from .io.tables import check_unique_columns, name_list

    header = pd.DataFrame(columns=pd.Index(rows.columns))
    check_unique_columns(header, where=where or str(rows.name))
    if id_column is not None and id_column not in rows.columns:
        raise DataError(
            f"id column {id_column!r} is not in the data; columns: {name_list(rows.columns)}"
        )
    if id_column in PREDICTION_COLUMNS:
        raise DataError(
            f"id column {id_column!r} has the name of a column of the predictions "
            f"({', '.join(PREDICTION_COLUMNS)}); rename it in the data"
        )
    encoder = predictor.encoder
    encoder.check_columns(header)
    target = (predictor.metadata or {}).get("target")
    known = {c.name for c in encoder.columns_} | {c for c in (id_column, target) if c}
    done = Predicted(0, predictor.threshold if threshold is None else float(threshold))
    done.ignored = [c for c in rows.columns if c not in known]
    needed = list(dict.fromkeys([*encoder.input_columns, *([id_column] if id_column else [])]))
    types = encoder.csv_types()
    if id_column is not None and id_column not in types:
        types[id_column] = pa.string()
    rows = rows.with_types(types)
    checks = InputChecks(encoder)
    if drift:
        from .drift import DriftReport

        done.drift = DriftReport(encoder)
    kept: list[pd.DataFrame] = []
    batch_rows = read_rows_for_budget(rows.row_bytes(needed), budget)
    for start, frame in rows.batches(needed, batch_rows=batch_rows):
        if done.drift is not None:
            done.drift.update(frame)  # counts per batch: they add up
        result = predict_batch(
            predictor, start, frame, threshold=done.threshold, id_column=id_column, checks=checks
        )
        (kept.append if write is None else write)(result)
        done.n_rows += len(result)
    if done.n_rows == 0:
        what = "a header but no data rows" if rows.format == "csv" else "no data rows"
        where = rows.name if rows.name == "standard input" else f"file {rows.name}"
        raise DataError(f"{where} has {what}")
    done.warnings = checks.messages()
    if write is None:
        done.predictions = pd.concat(kept, ignore_index=True)
    return done


def predict_file(
    model: Predictor | str | os.PathLike[str],
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    memory_budget: int | str | None = None,
    threshold: float | None = None,
    id_column: str | None = None,
    drift: bool = False,
) -> Predicted:
    """Predict the rows of a data file in bounded memory, as ``steadyclf predict`` does.

    ``source`` is a CSV/TSV/Parquet file, a directory or glob of Parquet files, or ``'-'``
    (CSV on standard input); it is read in batches of at most ``memory_budget`` (bytes or
    text such as ``'200MB'``; default: half of the free memory). The predictions go to
    ``out`` (.csv, .csv.gz, .tsv or .parquet, written under a temporary name and renamed
    when complete), or, without ``out``, into :attr:`Predicted.predictions`.

    Examples
    --------
    >>> import os, tempfile
    >>> from steadyclf import BinaryClassifier
    >>> from steadyclf.datasets import heart_rate
    >>> X, y = heart_rate(n=200, random_state=0)
    >>> tmp = tempfile.mkdtemp()
    >>> model = BinaryClassifier(max_epochs=5).fit(X, y).save(os.path.join(tmp, "model"))
    >>> X.to_csv(os.path.join(tmp, "rows.csv"), index=False)
    >>> done = predict_file(model, os.path.join(tmp, "rows.csv"), memory_budget="10MB")
    >>> done.n_rows, list(done.predictions.columns)
    (200, ['probability', 'label'])
    """
    from .io.sources import default_memory_budget, parse_memory_size
    from .io.tables import TableWriter, table_format

    predictor = model if isinstance(model, Predictor) else Predictor.load(model)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise DataError(f"threshold must be between 0 and 1; got {threshold}")
    budget = default_memory_budget() if memory_budget is None else parse_memory_size(memory_budget)
    if out is None:
        rows = open_rows(source, budget)
        return predict_rows(
            predictor, rows, None, budget=budget, threshold=threshold, id_column=id_column,
            drift=drift,
        )  # fmt: skip
    table_format(str(out))  # an unknown suffix fails before any work
    rows = open_rows(source, budget)
    with TableWriter(str(out)) as writer:
        return predict_rows(
            predictor, rows, writer.write, budget=budget, threshold=threshold,
            id_column=id_column, drift=drift,
        )  # fmt: skip

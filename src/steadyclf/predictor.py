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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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

__all__ = ["InputChecks", "Predictor", "calibrate", "predict_batch", "sigmoid"]


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
    result = pd.DataFrame({"probability": proba, "label": predictor.labels(proba, threshold)})
    if id_column is not None:
        result.insert(0, id_column, frame[id_column].to_numpy())
    return result

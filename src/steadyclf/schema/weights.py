"""Row weights: one more column of the source, read with the rows, never a feature.

A weight scales a row's share of everything a fit computes from its rows: the training
loss, the validation loss that stops training, the label totals behind the class prior
and ``'balanced'`` weights, the metrics, the calibration. Weighting a row by ``k`` is
meant as repeating it ``k`` times (scikit-learn's convention); a weight of 0 leaves the
row out altogether (as if it were not in the data: it is skipped when the rows are
summarised, encoded and scored, like a row without a label).

The values must be finite numbers ``>= 0`` on every row that has a label: a missing
weight is refused (0 would silently drop the row, 1 would silently count it), as are
negative, infinite and non-numeric values, with a one-line message naming the row and
the value.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..exceptions import DataError
from .values import column_values, plain

__all__ = ["WeightTally", "weight_label", "weight_values"]


def weight_values(
    name: str, series: pd.Series, rows: NDArray[np.int64], label: str
) -> NDArray[np.float64]:
    """The weights in column ``name``, checked; ``rows`` are the rows' global positions.

    ``label`` names the weights in messages (``"sample_weight"``, ``"weight column 'w'"``).

    Examples
    --------
    >>> weight_values("w", pd.Series([1, 0, 2.5]), np.arange(3), "sample_weight")
    array([1. , 0. , 2.5])
    >>> weight_values("w", pd.Series([1.0, -2.0]), np.arange(10, 12), "sample_weight")
    Traceback (most recent call last):
    ...
    steadyclf.exceptions.DataError: sample_weight is negative at row 11 (-2.0); weights must be finite numbers >= 0
    """
    try:
        values = column_values(name, series, "numeric")
    except DataError as exc:
        if "infinite" not in str(exc):  # text, complex numbers, lists in cells
            raise _bad(series, rows, label, "not a number", _not_number(series)) from None
        values = np.asarray(pd.to_numeric(series, errors="coerce"), dtype=np.float64)
    bad = np.isnan(values) | ~(values >= 0) | np.isinf(values)
    if not bad.any():
        return values
    row = int(np.flatnonzero(bad)[0])
    value = float(values[row])
    if np.isnan(value):
        missing = int(np.isnan(values).sum())
        raise DataError(
            f"{label} is missing at row {rows[row]} ({missing} row{'s' if missing > 1 else ''} "
            "in all); give every row a weight (0 leaves a row out)"
        )
    what = "infinite" if np.isinf(value) else "negative"
    raise _bad(series, rows, label, what, row)


def _not_number(series: pd.Series) -> int:
    """The first row whose value is present but not a number."""
    coerced = pd.to_numeric(series, errors="coerce")
    bad = np.flatnonzero(coerced.isna().to_numpy() & series.notna().to_numpy())
    return int(bad[0]) if bad.size else 0


def _bad(series: pd.Series, rows: NDArray[np.int64], label: str, what: str, row: int) -> DataError:
    value = plain(series.iloc[row])
    return DataError(
        f"{label} is {what} at row {rows[row]} ({value}); weights must be finite numbers >= 0"
    )


def weight_label(weight: str | None, passed: Collection[str] = ()) -> str:
    """How messages name the weights in column ``weight``: ``sample_weight`` when the
    column holds what was passed to ``fit`` (a column of ``passed``), else the column."""
    if weight is None:
        return "the weights"
    return "sample_weight" if weight in passed else f"weight column {weight!r}"


@dataclass
class WeightTally:
    """Row weights seen: their sum per label and side, the rows of weight 0 left out, and
    the range of the positive weights (equal ends: the weights change nothing)."""

    label: str  # how messages name the weights
    labels: dict[Any, list[float]] = field(default_factory=dict)
    n_zero: int = 0
    zero_labels: set[Any] = field(default_factory=set)
    low: float = math.inf
    high: float = 0.0

    def merge(self, other: WeightTally) -> WeightTally:
        """Add ``other`` in place; return ``self``."""
        for value, (t, v) in other.labels.items():
            sums = self.labels.setdefault(value, [0.0, 0.0])
            sums[0] += t
            sums[1] += v
        self.n_zero += other.n_zero
        self.zero_labels |= other.zero_labels
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        return self

    @property
    def constant(self) -> bool:
        """Every kept row has the same weight: a weighted fit is then an unweighted one."""
        return self.low == self.high

    def to_dict(self) -> dict[str, Any]:
        """JSON facts."""
        total = sum(t + v for t, v in self.labels.values())
        return {
            "weights": self.label,
            "sum": total,
            "min": self.low if math.isfinite(self.low) else None,
            "max": self.high,
            "zero_weight_rows": self.n_zero,
        }

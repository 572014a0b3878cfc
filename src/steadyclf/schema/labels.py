"""The target: labels of any two values mapped to 0/1, and the target column of a table."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..exceptions import DataError, DataTypeError
from ..io.tables import name_list

if TYPE_CHECKING:
    from .columns import ColumnPlan
    from .weights import WeightTally

__all__ = [
    "LabelCounts",
    "LabelEncoding",
    "check_target",
    "class_counts",
    "class_weight_sums",
    "classes_seen",
    "encode_labels",
    "encode_target",
    "positive_column",
    "split_target",
    "summary_classes",
    "two_integer_classes",
    "values_seen",
]


def split_target(
    frame: pd.DataFrame, target: str, *, drop_missing: bool = False
) -> tuple[pd.DataFrame, pd.Series, NDArray[np.int64]]:
    """Separate the target column from the features.

    Rows with a missing target are an error listing how many and the first rows, unless
    ``drop_missing`` is set; then they are removed and their positions returned.

    Returns
    -------
    X, y, dropped_rows
    """
    if target not in frame.columns:
        raise DataError(
            f"target column {target!r} is not in the data; columns: {name_list(frame.columns)}"
        )
    y = frame[target]
    missing = y.isna().to_numpy()
    dropped = np.flatnonzero(missing)
    if dropped.size and not drop_missing:
        raise DataError(
            f"the target {target!r} is missing on {dropped.size} row{'s' if dropped.size > 1 else ''} (first: {', '.join(map(str, dropped[:5].tolist()))}); fill them in or drop them (--drop-missing-target)"
        )
    keep = ~missing
    if dropped.size == len(frame):
        raise DataError(f"the target {target!r} is missing on every row")
    X = frame.drop(columns=[target])
    if dropped.size:
        X, y = X.loc[keep].reset_index(drop=True), y.loc[keep].reset_index(drop=True)
    return X, y, dropped


@dataclass
class LabelEncoding:
    """Labels mapped to 0/1: ``classes`` in code order, ``classes[1]`` the positive class.

    This is the network's order, not scikit-learn's: an estimator shows ``classes_``
    sorted, whichever class is positive (see :func:`positive_column`).
    """

    classes: NDArray[Any]
    encoded: NDArray[np.float32]


def positive_column(classes: NDArray[Any], positive: Any) -> int:
    """Where ``positive`` is in the sorted ``classes``: its column of ``predict_proba``.

    scikit-learn's scorers read the probability of ``classes_[1]`` (and the sign of
    ``decision_function`` as in favour of ``classes_[1]``), with ``classes_`` sorted as
    ``LabelEncoder`` sorts them; the positive class may be either of the two.
    """
    if classes[1] == positive:
        return 1
    if classes[0] == positive:
        return 0
    raise ValueError(f"positive class {positive!r} is not one of the classes {classes.tolist()!r}")


def _two_integer_classes(
    values: NDArray[Any],
) -> tuple[NDArray[Any], NDArray[np.bool_]] | None:
    """``np.unique(values, return_inverse=True)`` for integer or boolean labels with
    exactly two values, in three linear passes instead of a sort; ``None`` otherwise."""
    if values.dtype.kind not in "iub" or values.size == 0:
        return None
    low, high = values.min(), values.max()
    is_high = values == high
    if low == high or np.count_nonzero(is_high) + np.count_nonzero(values == low) != values.size:
        return None
    return np.array([low, high], dtype=values.dtype), is_high  # booleans: 0/1 codes


def two_integer_classes(values: NDArray[Any]) -> bool:
    """Whether ``values`` are integers or booleans taking exactly two values (no sort)."""
    return _two_integer_classes(values) is not None


def encode_labels(y: Any, positive: Any = None) -> LabelEncoding:
    """Map a binary target of any two distinct values to 0/1.

    ``classes`` is in code order: sorted (as scikit-learn does), unless ``positive`` names
    the positive class, which then becomes ``classes[1]`` (coded 1).
    """
    values = np.asarray(y)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values.ravel()
    if values.ndim != 1:
        raise DataError(f"the target must be one column, got shape {values.shape}")
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise DataError(f"the target has {int(np.isnan(values).sum())} missing values")
    try:
        fast = _two_integer_classes(values)
        classes, encoded = fast if fast else np.unique(values, return_inverse=True)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in values.tolist()})
        raise DataError(
            f"the target mixes value types ({', '.join(kinds)}); use one type"
        ) from None
    if classes.size != 2:
        counts = np.bincount(encoded, minlength=classes.size).tolist()
        what = "one class" if classes.size == 1 else f"{classes.size} classes"
        raise DataError(
            "Only binary classification is supported: the target has "
            f"{what} ({classes_seen(dict(zip(classes.tolist(), counts, strict=True)))})"
        )
    if positive is not None:
        matches = [
            i for i, c in enumerate(classes.tolist()) if c == positive or str(c) == str(positive)
        ]
        if not matches:
            raise DataError(
                f"positive class {positive!r} is not in the target values {classes.tolist()!r}"
            )
        if matches[0] == 0:
            classes = classes[::-1].copy()
            encoded = 1 - encoded
    return LabelEncoding(classes=classes, encoded=encoded.astype(np.float32))


def encode_target(
    y: Any, n_rows: int, *, positive: Any = None, owner: str = "BinaryClassifier"
) -> LabelEncoding:
    """The labels ``y`` of ``n_rows`` rows passed to ``fit``, checked as scikit-learn does.

    A column vector is raveled with scikit-learn's ``DataConversionWarning``; missing or
    infinite labels, continuous or multiclass targets are errors with their values.
    """
    if y is None:
        raise DataError(f"{owner} requires y to be passed, but the target y is None")
    values = np.asarray(y.to_numpy() if isinstance(y, (pd.Series, pd.DataFrame)) else y)
    if values.ndim == 2 and values.shape[1] == 1:
        from sklearn.exceptions import DataConversionWarning

        warnings.warn(
            "A column-vector y was passed when a 1d array was expected; it was raveled.",
            DataConversionWarning,
            stacklevel=4,
        )
        values = values.ravel()
    if values.ndim != 1:
        raise DataError(f"y must be one column; got shape {values.shape}")
    if len(values) != n_rows:
        raise DataError(f"X has {n_rows} rows but y has {len(values)}")
    missing = pd.isna(values)
    if missing.any():
        rows = np.flatnonzero(missing)
        raise DataError(
            f"the target has {rows.size} missing values (first rows: {rows[:5].tolist()})"
        )
    if values.dtype.kind in "fc" and np.isinf(values).any():
        row = int(np.flatnonzero(np.isinf(values))[0])
        raise DataError(f"Input y contains infinity (first at row {row})")
    if two_integer_classes(values):  # binary for sure: skip type_of_target's sort
        return encode_labels(values, positive=positive)
    from sklearn.utils.multiclass import type_of_target

    try:
        # Huge floats such as 1e300 make the integer test inside warn about the cast.
        with np.errstate(invalid="ignore", over="ignore"):
            kind = type_of_target(values, input_name="y", raise_unknown=True)
    except (ValueError, TypeError) as exc:
        raise (DataTypeError if isinstance(exc, TypeError) else DataError)(str(exc)) from None
    if kind in ("continuous", "continuous-multioutput"):
        raise DataError(f"Unknown label type: the target looks {kind}; steadyclf needs two classes")
    if kind not in ("binary",):
        seen = np.unique(values)
        raise DataError(
            f"Only binary classification is supported. The type of the target is {kind}: "
            f"values seen {seen[:10].tolist()!r}{' ...' if seen.size > 10 else ''}"
        )
    return encode_labels(values, positive=positive)


# -- the labels of a summary (:mod:`steadyclf.schema.summary`) --------------------------------
class LabelCounts(Protocol):
    """What a table's summary (:class:`~steadyclf.schema.summary.TableSummary`) counted of
    its target: rows per target value and side (``[training, held out]``), rows read and
    rows left out for a missing target, and the row weights' tally."""

    plan: ColumnPlan
    labels: dict[Any, list[int]]
    n_rows: int
    n_dropped: int
    first_dropped: list[int]
    weights: WeightTally | None


def summary_classes(
    labels: Mapping[Any, Any], classes: NDArray[Any] | None, positive: Any
) -> tuple[list[Any], NDArray[Any]]:
    """The target values meaning 0 and 1, and the classes (``classes[1]`` positive), from
    the values a summary counted (``labels``), unless ``classes`` are given (the target
    then holds 0/1 codes)."""
    if classes is not None:
        return [0.0, 1.0], classes
    # Through pandas, so the classes get the dtype they get in memory (object for text).
    found = encode_labels(pd.Series(list(labels)).to_numpy(), positive).classes
    return list(found), found


def class_counts(summary: LabelCounts, label_values: Sequence[Any]) -> dict[int, tuple[int, int]]:
    """``(training rows, held-out rows)`` of class 0 and of class 1."""
    out = {}
    for k, value in enumerate(label_values):
        train, held = summary.labels.get(value, [0, 0])
        out[k] = (int(train), int(held))
    return out


def class_weight_sums(
    summary: LabelCounts, label_values: Sequence[Any]
) -> dict[int, tuple[float, float]] | None:
    """``(training, held-out)`` sums of the row weights of each class, if rows are weighted
    (by weights that are not all equal)."""
    weights = summary.weights
    if weights is None or weights.constant:
        return None
    out = {}
    for k, value in enumerate(label_values):
        train, held = weights.labels.get(value, [0.0, 0.0])
        out[k] = (float(train), float(held))
    return out


def check_target(summary: LabelCounts, drop_missing: bool) -> None:
    """Missing labels (unless dropped) and anything but two classes: one clear error."""
    target = summary.plan.target
    if target is None:
        return
    dropped, first = summary.n_dropped, ", ".join(map(str, summary.first_dropped))
    if dropped and not drop_missing:
        raise DataError(
            f"the target {target!r} is missing on {dropped} row{'s' if dropped > 1 else ''} (first: {first}); fill them in or drop them (--drop-missing-target)"
        )
    weights = summary.weights
    if summary.n_rows == 0 and weights is not None and weights.n_zero:
        raise DataError(
            f"{weights.label} is zero on every row with a label ({weights.n_zero}); a fit "
            "needs rows of positive weight"
        )
    if summary.n_rows == 0:
        raise DataError(f"the target {target!r} is missing on every row")
    absent = [] if weights is None else sorted(weights.zero_labels - set(summary.labels), key=str)
    if len(summary.labels) == 1 and absent:
        # A class whose every row weighs 0 is absent, as if it had no rows.
        raise DataError(
            f"Only binary classification is supported: the target {target!r} has one class "
            f"of positive weight ({values_seen(summary.labels)}); {weights.label if weights else ''} "
            f"is zero on every row of class {values_seen({v: [] for v in absent})[1:-1]}"
        )
    if len(summary.labels) != 2:
        what = "one class" if len(summary.labels) == 1 else f"{len(summary.labels)} classes"
        rows = {value: sum(counts) for value, counts in summary.labels.items()}
        raise DataError(
            "Only binary classification is supported: the target "
            f"{target!r} has {what} ({classes_seen(rows)})"
        )


#: Share of the rows below which the values beyond a target's two most frequent are
#: pointed out as likely typos.
TYPO_SHARE = 0.05


def classes_seen(rows: dict[Any, int], limit: int = 10) -> str:
    """The values of a target that is not binary, with their rows; when the values beyond
    the two most frequent hold few rows (typos, most often), which those are.

    Examples
    --------
    >>> classes_seen({"No": 480, "Yes": 515, "Yes ": 1, "ye": 2})
    "values seen ['No', 'Yes', 'Yes ', 'ye'], rows 480, 515, 1, 2; 3 of 998 rows hold values beyond the two most frequent ('ye', 'Yes '): typos? fix or drop those rows"
    """
    values = sorted(rows, key=str)[:limit]
    text = f"values seen {values_seen(rows, limit)}, rows {', '.join(str(rows[v]) for v in values)}"
    if len(rows) > limit:
        text += ", ..."
    by_rows = sorted(rows, key=lambda v: (-rows[v], str(v)))
    rest, total = sum(rows[v] for v in by_rows[2:]), sum(rows.values())
    if len(rows) > 2 and rest <= TYPO_SHARE * total:
        rare = ", ".join(
            repr(v.item() if isinstance(v, np.generic) else v) for v in by_rows[2:limit]
        )
        text += (
            f"; {rest:,} of {total:,} rows hold values beyond the two most frequent ({rare}): "
            "typos? fix or drop those rows"
        )
    return text


def values_seen(labels: dict[Any, Any], limit: int = 10) -> str:
    values = sorted(labels, key=str)
    shown = repr([v.item() if isinstance(v, np.generic) else v for v in values[:limit]])
    return shown[:-1] + ", ...]" if len(values) > limit else shown

"""The target: labels of any two values mapped to 0/1, and the target column of a table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..exceptions import DataError
from ..io.tables import name_list

__all__ = ["LabelEncoding", "encode_labels", "split_target", "two_integer_classes"]


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
    """Labels mapped to 0/1; ``classes[1]`` is the positive class."""

    classes: NDArray[Any]
    encoded: NDArray[np.float32]


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

    ``classes`` is sorted (as scikit-learn does), unless ``positive`` names the positive
    class, which then becomes ``classes[1]``.
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
        seen = ", ".join(repr(v) for v in classes[:10].tolist())
        what = "one class" if classes.size == 1 else f"{classes.size} classes"
        raise DataError(
            f"Only binary classification is supported: the target has {what} ({seen}{', ...' if classes.size > 10 else ''})"
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

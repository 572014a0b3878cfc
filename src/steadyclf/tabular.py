"""Columns -> arrays: column roles, categorical vocabularies, missing values, labels.

:class:`TabularEncoder` decides the role of each column on the training data and turns
any later table with the same columns into the two raw inputs of the network:

- ``x_num``: float64, one column per numeric (or boolean) feature, NaN where missing;
- ``x_cat``: int64 codes, one column per categorical feature, with code 0 for a missing
  value and code 1 for a level unseen in training (or too rare to keep).

Imputation, standardisation and one-hot encoding happen inside the network (see
``network``), so that everything fitted is saved with the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .exceptions import DataError, SchemaError

__all__ = ["ColumnInfo", "LabelEncoding", "TabularEncoder", "encode_labels"]

MISSING_CODE = 0
UNSEEN_CODE = 1
#: Levels kept per categorical column (most frequent first); the rest share the
#: 'unseen' code. One-hot of up to this many levels stays small next to a hidden layer.
MAX_CATEGORIES = 64


@dataclass
class ColumnInfo:
    """What the encoder decided about one input column."""

    name: str
    role: str  # "numeric" | "categorical" | "dropped"
    dtype: str
    reason: str = ""
    levels: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        out: dict[str, Any] = {"name": self.name, "role": self.role, "dtype": self.dtype}
        if self.reason:
            out["reason"] = self.reason
        if self.levels:
            out["levels"] = list(self.levels)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(data["name"]),
            role=str(data["role"]),
            dtype=str(data["dtype"]),
            reason=str(data.get("reason", "")),
            levels=[str(v) for v in data.get("levels", [])],
        )


def _is_categorical_dtype(series: pd.Series) -> bool:
    dtype = series.dtype
    return bool(
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def _as_category_strings(series: pd.Series) -> pd.Series:
    """Categorical values as strings, with missing values kept as NA."""
    missing = series.isna()
    as_str = series.astype("object").where(~missing, None)
    return as_str.map(lambda v: None if v is None else str(v))


class TabularEncoder:
    """Learn column roles on training data and encode tables for the network.

    Parameters
    ----------
    categorical, numeric, drop : sequence of str, optional
        Columns forced to a role, overriding the inference.
    max_categories : int
        Levels kept per categorical column.
    """

    def __init__(
        self,
        categorical: Sequence[str] = (),
        numeric: Sequence[str] = (),
        drop: Sequence[str] = (),
        max_categories: int = MAX_CATEGORIES,
    ) -> None:
        self.categorical = tuple(categorical)
        self.numeric = tuple(numeric)
        self.drop = tuple(drop)
        self.max_categories = max_categories

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> TabularEncoder:
        """Decide each column's role and learn vocabularies from ``frame``."""
        check_unique_columns(frame)
        for name in (*self.categorical, *self.numeric, *self.drop):
            if name not in frame.columns:
                raise DataError(
                    f"column {name!r} given as an override is not in the data; columns: {_list(frame.columns)}"
                )
        self.columns_: list[ColumnInfo] = [self._infer(str(c), frame[c]) for c in frame.columns]
        if not any(c.role != "dropped" for c in self.columns_):
            reasons = "; ".join(f"{c.name}: {c.reason}" for c in self.columns_)
            raise DataError(f"no usable feature column ({reasons})")
        return self

    def _infer(self, name: str, series: pd.Series) -> ColumnInfo:
        dtype = str(series.dtype)
        if name in self.drop:
            return ColumnInfo(name, "dropped", dtype, "dropped by request")
        if series.isna().all():
            return ColumnInfo(name, "dropped", dtype, "all values missing")
        if name in self.categorical or (name not in self.numeric and _is_categorical_dtype(series)):
            return self._categorical(name, series)
        values = self._numeric_values(name, series)
        if not np.isfinite(values[~np.isnan(values)]).all():
            row = int(np.flatnonzero(np.isinf(values))[0])
            raise DataError(
                f"column {name!r} has an infinite value at row {row}; replace it or drop the column"
            )
        return ColumnInfo(name, "numeric", dtype)

    def _categorical(self, name: str, series: pd.Series) -> ColumnInfo:
        strings = _as_category_strings(series)
        counts = strings.value_counts(dropna=True)
        # Most frequent first, ties by name, so the vocabulary is deterministic.
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        levels = [str(k) for k, _ in ordered[: self.max_categories]]
        return ColumnInfo(name, "categorical", str(series.dtype), levels=levels)

    @staticmethod
    def _numeric_values(name: str, series: pd.Series) -> NDArray[np.float64]:
        if pd.api.types.is_bool_dtype(series.dtype):
            return np.asarray(series.astype("float64").to_numpy(), dtype=np.float64)
        try:
            numbers = pd.to_numeric(series, errors="raise").astype("float64")
            return np.asarray(numbers.to_numpy(na_value=np.nan), dtype=np.float64)
        except (ValueError, TypeError):
            coerced = pd.to_numeric(series, errors="coerce")
            bad = np.flatnonzero(coerced.isna().to_numpy() & series.notna().to_numpy())
            row = int(bad[0]) if bad.size else 0
            raise DataError(
                f"column {name!r} is numeric but row {row} holds {series.iloc[row]!r}, which is not a number"
            ) from None

    # -- layout ----------------------------------------------------------------------------
    @property
    def numeric_columns(self) -> list[str]:
        """Names of the numeric inputs, in order."""
        return [c.name for c in self.columns_ if c.role == "numeric"]

    @property
    def categorical_columns(self) -> list[ColumnInfo]:
        """Categorical inputs, in order."""
        return [c for c in self.columns_ if c.role == "categorical"]

    @property
    def vocab_sizes(self) -> list[int]:
        """One-hot width per categorical column (levels + missing + unseen)."""
        return [len(c.levels) + 2 for c in self.categorical_columns]

    @property
    def input_columns(self) -> list[str]:
        """Every column the model reads (dropped ones excluded)."""
        return [c.name for c in self.columns_ if c.role != "dropped"]

    # -- transforming ----------------------------------------------------------------------
    def transform(self, frame: pd.DataFrame) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Raw network inputs ``(x_num, x_cat)`` for ``frame``."""
        check_unique_columns(frame)
        missing = [c for c in self.input_columns if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"missing column{'s' if len(missing) > 1 else ''} {_list(missing)}; the model was trained on {_list(self.input_columns)}"
            )
        n = len(frame)
        num_names = self.numeric_columns
        x_num = np.empty((n, len(num_names)), dtype=np.float64)
        for j, name in enumerate(num_names):
            x_num[:, j] = self._numeric_values(name, frame[name])
        cats = self.categorical_columns
        x_cat = np.empty((n, len(cats)), dtype=np.int64)
        for j, info in enumerate(cats):
            x_cat[:, j] = encode_categories(frame[info.name], info.levels)
        return x_num, x_cat

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form of the fitted encoder."""
        return {
            "max_categories": self.max_categories,
            "columns": [c.to_dict() for c in self.columns_],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TabularEncoder:
        """Rebuild a fitted encoder from :meth:`to_dict` output."""
        enc = cls(max_categories=int(data.get("max_categories", MAX_CATEGORIES)))
        enc.columns_ = [ColumnInfo.from_dict(c) for c in data["columns"]]
        return enc


def encode_categories(series: pd.Series, levels: Sequence[str]) -> NDArray[np.int64]:
    """Codes for ``series``: 0 missing, 1 unseen, 2.. the index of the level + 2."""
    lookup = {level: i + 2 for i, level in enumerate(levels)}
    strings = _as_category_strings(series)
    codes = strings.map(lookup)
    out = np.asarray(codes.fillna(UNSEEN_CODE).to_numpy(dtype=np.int64), dtype=np.int64)
    out[strings.isna().to_numpy()] = MISSING_CODE
    return out


def check_unique_columns(frame: pd.DataFrame) -> None:
    """Refuse tables with duplicate column names (which column would we read?)."""
    dup = frame.columns[frame.columns.duplicated()]
    if len(dup):
        raise DataError(
            f"duplicate column name{'s' if len(dup) > 1 else ''} {_list(dict.fromkeys(map(str, dup)))}"
        )


def _list(names: Any, limit: int = 20) -> str:
    names = [str(n) for n in names]
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


@dataclass
class LabelEncoding:
    """Labels mapped to 0/1; ``classes[1]`` is the positive class."""

    classes: NDArray[Any]
    encoded: NDArray[np.float32]


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
        classes, encoded = np.unique(values, return_inverse=True)
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

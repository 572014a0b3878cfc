"""Columns -> arrays: column roles, categorical vocabularies, missing values, labels.

:class:`TabularEncoder` decides the role of each column on the training data and turns
any later table with the same columns into the two raw inputs of the network:

- ``x_num``: float64, one column per numeric, boolean (0/1) or datetime (seconds since
  1970, UTC) feature, NaN where missing;
- ``x_cat``: int64 codes, one column per categorical feature, with code 0 for a missing
  value and code 1 for a level unseen in training (or too rare to keep).

Imputation, standardisation and one-hot encoding happen inside the network (see
``network``), so that everything fitted is saved with the weights.

Role inference, in order (the first rule that applies wins):

1. listed in ``drop`` -> dropped; every value missing -> dropped;
2. listed in ``categorical`` / ``numeric`` -> that role;
3. one distinct value (missing counts as a value) -> dropped as constant;
4. datetime dtype -> datetime (the user parsed it); bool dtype -> boolean;
5. text: numbers only -> numeric; dates -> dropped (list the column as numeric to use it
   as a timestamp); a distinct value on every row -> dropped as ID-like; else categorical;
6. integers with a distinct value on every row -> dropped as ID-like; other numbers ->
   numeric (integers are categorical only when the user says so).

Infinite values are refused (fit and transform) with the column and row: there is no
safe default for them, and a silent clip or NaN would hide a data problem.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .exceptions import DataError, SchemaError

__all__ = [
    "ColumnInfo",
    "LabelEncoding",
    "TabularEncoder",
    "encode_categories",
    "encode_labels",
    "split_target",
]

MISSING_CODE = 0
UNSEEN_CODE = 1
#: Levels kept per categorical column (most frequent first); the rest share the
#: 'unseen' code. One-hot of up to this many levels stays small next to a hidden layer.
MAX_CATEGORIES = 64
#: Columns of at least this many rows with a distinct value on every row are IDs.
ID_LIKE_MIN_ROWS = 10
#: A text column whose non-missing values are numbers at least this often is a numeric
#: column with typos, not a categorical one: refusing it beats one level per number.
MOSTLY_NUMERIC = 0.9
#: Roles whose values go to the numeric input ``x_num``.
NUMERIC_ROLES = ("numeric", "boolean", "datetime")
ROLES = (*NUMERIC_ROLES, "categorical", "dropped")

_DATE = re.compile(
    r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)
_TRUE = {"true", "1", "1.0", "yes"}
_FALSE = {"false", "0", "0.0", "no"}
_EPOCH = pd.Timestamp(0, tz="UTC")


@dataclass
class ColumnInfo:
    """What the encoder decided about one input column.

    ``low``/``high`` are the training range of numeric inputs, ``n_missing`` the
    missing values seen in training, ``n_levels`` the distinct categories seen (of
    which ``levels`` keeps the most frequent).
    """

    name: str
    role: str  # one of ROLES
    dtype: str
    reason: str = ""
    levels: list[str] = field(default_factory=list)
    low: float | None = None
    high: float | None = None
    n_missing: int = 0
    n_levels: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        out: dict[str, Any] = {"name": self.name, "role": self.role, "dtype": self.dtype}
        if self.reason:
            out["reason"] = self.reason
        if self.role == "categorical":
            out["levels"] = list(self.levels)
            out["n_levels"] = self.n_levels
        if self.low is not None and self.high is not None:
            out["low"], out["high"] = self.low, self.high
        if self.role != "dropped":
            out["n_missing"] = self.n_missing
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnInfo:
        """Inverse of :meth:`to_dict`."""
        role = str(data["role"])
        if role not in ROLES:
            raise ValueError(f"unknown column role {role!r}")
        low, high = data.get("low"), data.get("high")
        return cls(
            name=str(data["name"]),
            role=role,
            dtype=str(data["dtype"]),
            reason=str(data.get("reason", "")),
            levels=[str(v) for v in data.get("levels", [])],
            low=None if low is None else float(low),
            high=None if high is None else float(high),
            n_missing=int(data.get("n_missing", 0)),
            n_levels=int(data.get("n_levels", len(data.get("levels", [])))),
        )

    def describe(self) -> str:
        """One line for reports, e.g. ``"age: numeric (3 missing -> median)"``."""
        if self.role == "dropped":
            return f"{self.name}: dropped ({self.reason})"
        details = []
        if self.role == "categorical":
            kept = len(self.levels)
            details.append(
                f"{kept} levels" if kept == self.n_levels else f"{kept} of {self.n_levels} levels"
            )
        if self.n_missing:
            fill = "own level" if self.role == "categorical" else "median + indicator"
            details.append(f"{self.n_missing} missing -> {fill}")
        return f"{self.name}: {self.role}" + (f" ({', '.join(details)})" if details else "")


def _is_text_dtype(series: pd.Series) -> bool:
    dtype = series.dtype
    return bool(
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


# Older name, still imported by other modules.
_is_categorical_dtype = _is_text_dtype


def _is_boolean(series: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(series.dtype):
        return True
    return bool(
        pd.api.types.is_object_dtype(series.dtype)
        and pd.api.types.infer_dtype(series, skipna=True) == "boolean"
    )


def _is_plain_number(series: pd.Series) -> bool:
    dtype = series.dtype
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def _is_constant(series: pd.Series) -> bool:
    """One distinct value, missing counting as a value (the column is not all missing)."""
    if _is_plain_number(series) and isinstance(series.dtype, np.dtype):
        # Two vectorised passes instead of hashing every value (~50x slower). A NaN makes
        # both NaN, so a column mixing missing and present values is not constant.
        values = series.to_numpy()
        return bool(values.min() == values.max())
    return bool(series.nunique(dropna=False) <= 1)


def _id_like(series: pd.Series) -> bool:
    """An integer or text column with a different value on every row (missing counts)."""
    n = len(series)
    if n < ID_LIKE_MIN_ROWS:
        return False
    if _is_plain_number(series):
        if not pd.api.types.is_integer_dtype(series.dtype):
            return False  # float columns are never IDs (rule 6)
        if isinstance(series.dtype, np.dtype):  # numpy integers: no missing values
            values = series.to_numpy()
            if int(values.max()) - int(values.min()) + 1 < n:
                return False  # too narrow a range to hold n distinct integers: no hashing
    return bool(series.nunique(dropna=False) == n)


def _is_datetime(series: pd.Series) -> bool:
    return bool(pd.api.types.is_datetime64_any_dtype(series.dtype))


def _category_key(value: Any) -> str:
    # 3.0 (a float column with missing values) and 3 (an int column) are the same level.
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _as_category_strings(series: pd.Series) -> pd.Series:
    """Categorical values as strings, with missing values as None."""
    missing = series.isna().to_numpy()
    values = series.astype("object").to_numpy(copy=True)
    if isinstance(series.dtype, pd.StringDtype):
        # Only a string dtype guarantees strings: an object column may mix 1, 'x' and 2.5.
        out = values
    else:
        out = np.array([_category_key(v) for v in values], dtype=object)
    out[missing] = None
    return pd.Series(out, index=series.index, dtype=object)


def _looks_like_dates(strings: pd.Series) -> str | None:
    """An example value when every (sampled) value of ``strings`` is a date."""
    sample = strings.dropna().drop_duplicates().head(200)
    if sample.empty or not all(_DATE.match(str(v)) for v in sample):
        return None
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed", utc=True)
    return str(sample.iloc[0]) if bool(parsed.notna().all()) else None


def _forced_numeric_role(series: pd.Series) -> str:
    if _is_boolean(series):
        return "boolean"
    if _is_datetime(series) or (_is_text_dtype(series) and _looks_like_dates(series)):
        return "datetime"
    return "numeric"


class TabularEncoder:
    """Learn column roles on training data and encode tables for the network.

    Parameters
    ----------
    categorical, numeric, drop : sequence of str, optional
        Columns forced to a role, overriding the inference.
    max_categories : int
        Levels kept per categorical column.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"age": [30, 41, None], "city": ["Oslo", None, "Rome"]})
    >>> enc = TabularEncoder().fit(frame)
    >>> [c.describe() for c in enc.columns_]
    ['age: numeric (1 missing -> median + indicator)', 'city: categorical (2 levels, 1 missing -> own level)']
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
        self._check_overrides(frame)
        floats = self._infer_float_columns(frame)
        self.columns_: list[ColumnInfo] = [
            floats[str(c)] if str(c) in floats else self._infer(str(c), frame[c])
            for c in frame.columns
        ]
        if not any(c.role != "dropped" for c in self.columns_):
            reasons = "; ".join(f"{c.name}: {c.reason}" for c in self.columns_)
            raise DataError(f"no usable feature column ({reasons})")
        return self

    def _check_overrides(self, frame: pd.DataFrame) -> None:
        for name in (*self.categorical, *self.numeric, *self.drop):
            if name not in frame.columns:
                raise DataError(
                    f"column {name!r} given as an override is not in the data; columns: {_list(frame.columns)}"
                )
        for a, b in (("categorical", "numeric"), ("categorical", "drop"), ("numeric", "drop")):
            both = sorted(set(getattr(self, a)) & set(getattr(self, b)))
            if both:
                raise DataError(f"column {both[0]!r} is listed both as {a} and as {b}")

    def _infer_float_columns(self, frame: pd.DataFrame) -> dict[str, ColumnInfo]:
        """The roles of float columns without an override, in one pass over their rows.

        A frame built on a NumPy array is one row-major block: reading it column by column
        sweeps the whole block once per column and statistic. Here every column's missing
        count, minimum and maximum come from one chunked pass; the rules are those of
        :meth:`_infer` (which still handles the rare cases: all missing with a reason to
        give, infinite values with the row to name).
        """
        overrides = {*self.drop, *self.categorical, *self.numeric}
        names = [
            str(c)
            for c, dtype in frame.dtypes.items()
            if str(c) not in overrides and dtype in (np.dtype(np.float32), np.dtype(np.float64))
        ]
        if len({frame.dtypes[c] for c in names}) != 1 or len(frame) == 0:
            return {}
        block = frame[names].to_numpy(copy=False)
        n_missing, low, high = _float_summary(block)
        out: dict[str, ColumnInfo] = {}
        for j, name in enumerate(names):
            finite_range = bool(np.isfinite(low[j]) and np.isfinite(high[j]))
            if n_missing[j] == len(frame) or not finite_range:
                continue  # all missing, or an infinite value: _infer says so
            dtype = str(frame.dtypes[name])
            if n_missing[j] == 0 and low[j] == high[j]:
                value = frame[name].iloc[0]
                out[name] = ColumnInfo(
                    name, "dropped", dtype, f"constant (every value is {_plain(value)})"
                )
            else:
                out[name] = ColumnInfo(
                    name,
                    "numeric",
                    dtype,
                    low=float(low[j]),
                    high=float(high[j]),
                    n_missing=int(n_missing[j]),
                )
        return out

    def _infer(self, name: str, series: pd.Series) -> ColumnInfo:
        dtype = str(series.dtype)
        if name in self.drop:
            return ColumnInfo(name, "dropped", dtype, "dropped by request")
        if series.isna().all():
            return ColumnInfo(name, "dropped", dtype, "all values missing")
        _check_scalar_cells(name, series)
        if name in self.categorical:
            return self._categorical(name, series)
        if name in self.numeric:
            return self._numeric(name, series, _forced_numeric_role(series))
        if _is_constant(series):
            return ColumnInfo(
                name, "dropped", dtype, f"constant (every value is {_plain(series.iloc[0])})"
            )
        if _is_datetime(series):
            return self._numeric(name, series, "datetime")
        if _is_boolean(series):
            return self._numeric(name, series, "boolean")
        id_like = _id_like(series)
        if _is_text_dtype(series):
            return self._infer_text(name, series, id_like=id_like)
        if id_like and pd.api.types.is_integer_dtype(series.dtype):
            return ColumnInfo(name, "dropped", dtype, _ID_REASON)
        return self._numeric(name, series, "numeric")

    def _infer_text(self, name: str, series: pd.Series, *, id_like: bool) -> ColumnInfo:
        dtype = str(series.dtype)
        if isinstance(series.dtype, pd.CategoricalDtype):
            return self._categorical(name, series)
        present = series.notna().to_numpy()
        try:
            numbers = pd.to_numeric(series, errors="coerce").notna().to_numpy()
        except OverflowError:
            raise _overflow_error(name, series) from None
        share = numbers[present].mean()
        if share == 1.0:
            return self._numeric(name, series, "numeric")
        if share >= MOSTLY_NUMERIC:
            row = int(np.flatnonzero(present & ~numbers)[0])
            raise DataError(
                f"column {name!r} holds numbers except at row {row}: {series.iloc[row]!r}; fix the value, or list the column as categorical"
            )
        example = _looks_like_dates(series)
        if example is not None:
            return ColumnInfo(
                name,
                "dropped",
                dtype,
                f"dates (e.g. {example!r}); list the column as numeric to use it as a timestamp",
            )
        if id_like:
            return ColumnInfo(name, "dropped", dtype, _ID_REASON)
        return self._categorical(name, series)

    def _categorical(self, name: str, series: pd.Series) -> ColumnInfo:
        strings = _as_category_strings(series)
        counts = strings.value_counts(dropna=True)
        # Most frequent first, ties by name, so the vocabulary is deterministic.
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        levels = [str(k) for k, _ in ordered[: self.max_categories]]
        return ColumnInfo(
            name,
            "categorical",
            str(series.dtype),
            levels=levels,
            n_missing=int(strings.isna().sum()),
            n_levels=len(ordered),
        )

    def _numeric(self, name: str, series: pd.Series, role: str) -> ColumnInfo:
        values = column_values(name, series, role)
        n_missing = int(np.count_nonzero(np.isnan(values)))
        # Plain min/max when nothing is missing: no masked copy of the column.
        low, high = (np.nanmin, np.nanmax) if n_missing else (np.min, np.max)
        return ColumnInfo(
            name,
            role,
            str(series.dtype),
            low=float(low(values)),
            high=float(high(values)),
            n_missing=n_missing,
        )

    @staticmethod
    def _numeric_values(name: str, series: pd.Series) -> NDArray[np.float64]:
        # Kept for modules that call it; new code uses :func:`column_values`.
        return _numeric_values(name, series)

    # -- layout ----------------------------------------------------------------------------
    @property
    def numeric_columns(self) -> list[str]:
        """Names of the numeric inputs (numeric, boolean and datetime roles), in order."""
        return [c.name for c in self.columns_ if c.role in NUMERIC_ROLES]

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
    def transform(
        self, frame: pd.DataFrame, *, copy: bool = True
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Raw network inputs ``(x_num, x_cat)`` for ``frame``.

        With ``copy=False``, ``x_num`` may be a read-only view of ``frame``'s data (when
        every input is a numeric column of one float dtype, float32 staying float32): no
        per-column work and no copy.
        """
        check_unique_columns(frame)
        self.check_columns(frame)
        n = len(frame)
        numeric = [c for c in self.columns_ if c.role in NUMERIC_ROLES]
        block = self._float_block(frame, numeric)
        if block is not None:
            x_num = block.astype(np.float64) if copy else block  # astype always copies
            return x_num, np.empty((n, 0), dtype=np.int64)
        x_num = np.empty((n, len(numeric)), dtype=np.float64)
        for j, info in enumerate(numeric):
            x_num[:, j] = column_values(info.name, frame[info.name], info.role)
        cats = self.categorical_columns
        x_cat = np.empty((n, len(cats)), dtype=np.int64)
        for j, info in enumerate(cats):
            x_cat[:, j] = encode_categories(frame[info.name], info.levels)
        return x_num, x_cat

    def _float_block(
        self, frame: pd.DataFrame, numeric: list[ColumnInfo]
    ) -> NDArray[np.float64] | None:
        """``x_num`` in one step, when every input is a numeric column of one float dtype."""
        if self.categorical_columns or any(c.role != "numeric" for c in numeric):
            return None
        names = [c.name for c in numeric]
        selected = frame if [str(c) for c in frame.columns] == names else frame[names]
        dtypes = set(selected.dtypes)
        if dtypes != {np.dtype(np.float64)} and dtypes != {np.dtype(np.float32)}:
            return None
        block = selected.to_numpy(copy=False)
        _refuse_infinite(block, names)
        return block

    def transform_array(
        self, x: NDArray[np.float64], names: Sequence[str]
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]] | None:
        """:meth:`transform` of a float64 array with columns ``names``, without pandas.

        ``x_num`` is ``x`` itself (or its numeric columns): no copy. Returns ``None`` when
        the data needs :meth:`transform` (categorical, boolean or datetime inputs, missing
        or duplicate names), which also gives the errors.
        """
        numeric = [c for c in self.columns_ if c.role in NUMERIC_ROLES]
        position = {str(name): j for j, name in enumerate(names)}
        if (
            self.categorical_columns
            or any(c.role != "numeric" or c.name not in position for c in numeric)
            or len(position) != len(names)
            or x.ndim != 2
            or x.shape[1] != len(names)
        ):
            return None
        columns = [position[c.name] for c in numeric]
        block = x if columns == list(range(x.shape[1])) else x[:, columns]
        _refuse_infinite(block, [c.name for c in numeric])
        return block, np.empty((x.shape[0], 0), dtype=np.int64)

    def check_columns(self, frame: pd.DataFrame) -> None:
        """Raise :class:`SchemaError` naming the input columns ``frame`` lacks."""
        missing = [c for c in self.input_columns if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"missing column{'s' if len(missing) > 1 else ''} {_list(missing)}; the model was trained on {_list(self.input_columns)}"
            )

    def out_of_range(self, x_num: NDArray[np.float64]) -> dict[str, int]:
        """Count, per numeric column, values far outside the training range.

        "Far" means beyond the training minimum or maximum by more than the width of the
        training range (or by more than ``max(1, |value|)`` for a column that was
        constant apart from missing values): the network extrapolates there.
        """
        counts: dict[str, int] = {}
        numeric = [c for c in self.columns_ if c.role in NUMERIC_ROLES]
        for j, info in enumerate(numeric):
            if info.role == "boolean" or info.low is None or info.high is None:
                continue
            span = info.high - info.low or max(1.0, abs(info.high))
            column = x_num[:, j]
            with np.errstate(invalid="ignore"):
                far = (column < info.low - span) | (column > info.high + span)
            if far.any():
                counts[info.name] = int(far.sum())
        return counts

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


_ID_REASON = "ID-like: a different value on every row"


def column_values(name: str, series: pd.Series, role: str) -> NDArray[np.float64]:
    """Float64 values of a numeric-role column (NaN = missing), refusing text and inf."""
    if role == "boolean":
        values = _boolean_values(name, series)
    elif role == "datetime":
        values = _datetime_values(name, series)
    else:
        values = _numeric_values(name, series)
    infinite = np.isinf(values)
    if infinite.any():
        row = int(np.flatnonzero(infinite)[0])
        raise DataError(
            f"column {name!r} has an infinite value at row {row} ({int(infinite.sum())} in all); replace it or drop the column"
        )
    return values


def _check_scalar_cells(name: str, series: pd.Series) -> None:
    """Refuse object columns holding lists, dicts, arrays...: no role fits them."""
    if not pd.api.types.is_object_dtype(series.dtype):
        return
    for row, value in enumerate(series.to_numpy()):
        if not pd.api.types.is_scalar(value):
            raise DataError(
                f"column {name!r} holds a {type(value).__name__} at row {row} ({_short(value)}); cells must be numbers, text, booleans or dates"
            )


def _overflow_error(name: str, series: pd.Series) -> DataError:
    """A numeric column holding a Python integer beyond the float64 range."""
    limit = float(np.finfo(np.float64).max)
    for row, value in enumerate(series.to_numpy()):
        if isinstance(value, (int, np.integer)) and abs(int(value)) > limit:
            return DataError(
                f"column {name!r} holds an integer too large for a 64-bit float at row {row} ({_short(value)}); rescale the column"
            )
    return DataError(f"column {name!r} holds a number too large for a 64-bit float")


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _numeric_values(name: str, series: pd.Series) -> NDArray[np.float64]:
    if isinstance(series.dtype, np.dtype) and series.dtype == np.float64:
        return series.to_numpy()  # already numbers: no conversion (may be a read-only view)
    if pd.api.types.is_bool_dtype(series.dtype):
        return np.asarray(series.astype("float64").to_numpy(), dtype=np.float64)
    if pd.api.types.is_complex_dtype(series.dtype) or (
        pd.api.types.is_object_dtype(series.dtype)
        and any(isinstance(v, (complex, np.complexfloating)) for v in series.to_numpy())
    ):
        raise DataError(f"column {name!r} holds complex numbers; steadyclf reads real numbers")
    try:
        numbers = pd.to_numeric(series, errors="raise").astype("float64")
        return np.asarray(numbers.to_numpy(na_value=np.nan), dtype=np.float64)
    except OverflowError:
        raise _overflow_error(name, series) from None
    except (ValueError, TypeError):
        coerced = pd.to_numeric(series, errors="coerce")
        bad = np.flatnonzero(coerced.isna().to_numpy() & series.notna().to_numpy())
        row = int(bad[0]) if bad.size else 0
        raise DataError(
            f"column {name!r} is numeric but row {row} holds {series.iloc[row]!r}, which is not a number"
        ) from None


def _boolean_values(name: str, series: pd.Series) -> NDArray[np.float64]:
    if pd.api.types.is_bool_dtype(series.dtype) and not series.isna().any():
        return np.asarray(series.to_numpy(dtype=np.float64), dtype=np.float64)
    out = np.full(len(series), np.nan)
    for i, value in enumerate(series.astype("object").tolist()):
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            continue
        key = str(value).strip().lower()
        if key in _TRUE:
            out[i] = 1.0
        elif key in _FALSE:
            out[i] = 0.0
        else:
            raise DataError(
                f"column {name!r} is boolean but row {i} holds {value!r}, which is not true or false"
            )
    return out


def _datetime_values(name: str, series: pd.Series) -> NDArray[np.float64]:
    if _is_datetime(series):
        stamps = pd.to_datetime(series, utc=True)
    else:
        stamps = pd.to_datetime(series, errors="coerce", format="mixed", utc=True)
        bad = np.flatnonzero(stamps.isna().to_numpy() & series.notna().to_numpy())
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"column {name!r} holds dates but row {row} holds {series.iloc[row]!r}, which is not a date"
            )
    seconds = (stamps - _EPOCH) / pd.Timedelta(seconds=1)
    return np.asarray(seconds.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def encode_categories(series: pd.Series, levels: Sequence[str]) -> NDArray[np.int64]:
    """Codes for ``series``: 0 missing, 1 unseen, 2.. the index of the level + 2."""
    lookup = {level: i + 2 for i, level in enumerate(levels)}
    strings = _as_category_strings(series)
    codes = strings.map(lookup)
    out = np.array(codes.fillna(UNSEEN_CODE).to_numpy(dtype=np.int64), dtype=np.int64)
    out[strings.isna().to_numpy()] = MISSING_CODE
    return out


def _float_summary(
    block: NDArray[np.floating], chunk_rows: int = 1 << 14
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Per column: missing count, minimum and maximum ignoring NaN (+-inf if none)."""
    n_missing = np.zeros(block.shape[1], dtype=np.int64)
    low = np.full(block.shape[1], np.inf)
    high = np.full(block.shape[1], -np.inf)
    for start in range(0, block.shape[0], chunk_rows):
        chunk = block[start : start + chunk_rows]
        # Plain min/max propagate NaN: two passes tell which columns need the NaN-aware
        # ones (and a count), so data without missing values is read twice, not four times.
        chunk_low, chunk_high = chunk.min(axis=0), chunk.max(axis=0)
        gaps = np.flatnonzero(np.isnan(chunk_low))
        if gaps.size:
            part = chunk[:, gaps]
            n_missing[gaps] += np.isnan(part).sum(axis=0)
            # fmin/fmax skip NaN; a column all NaN in this chunk stays NaN: skipped below.
            chunk_low[gaps] = np.fmin.reduce(part, axis=0)
            chunk_high[gaps] = np.fmax.reduce(part, axis=0)
        low = np.fmin(low, chunk_low)
        high = np.fmax(high, chunk_high)
    return n_missing, low, high


def _refuse_infinite(block: NDArray[np.float64], names: Sequence[str]) -> None:
    """The error of :func:`column_values` for the first column of ``block`` with an inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(block.sum()):  # no inf (nor NaN): one pass, no temporary array
            return
    infinite = np.isinf(block)
    columns_with_inf = np.flatnonzero(infinite.any(axis=0))
    if columns_with_inf.size:
        j = int(columns_with_inf[0])
        row = int(np.flatnonzero(infinite[:, j])[0])
        raise DataError(
            f"column {names[j]!r} has an infinite value at row {row} ({int(infinite[:, j].sum())} in all); replace it or drop the column"
        )


def check_unique_columns(frame: pd.DataFrame, *, where: str | None = None) -> None:
    """Refuse tables with duplicate column names (which column would we read?)."""
    dup = frame.columns[frame.columns.duplicated()]
    if len(dup):
        place = f" in {where}" if where else ""
        raise DataError(
            f"duplicate column name{'s' if len(dup) > 1 else ''} {_list(dict.fromkeys(map(str, dup)))}{place}; rename them so each column has its own name"
        )


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
            f"target column {target!r} is not in the data; columns: {_list(frame.columns)}"
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


def _list(names: Any, limit: int = 20) -> str:
    names = [str(n) for n in names]
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


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


def _plain(value: Any) -> str:
    """A value as a user reads it: ``7.0`` or ``'a'``, not ``np.float64(7.0)``."""
    item = value.item() if isinstance(value, np.generic) else value
    return repr(item)

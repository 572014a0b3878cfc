"""Cell values: a column of any dtype as float64 numbers or as category codes.

These functions turn one pandas column (from a DataFrame in memory or a record batch read
from a file) into what the network reads, and refuse with a one-line message, naming the
column, the row and the value, what has no safe meaning: text in a numeric column,
infinite values, complex numbers, lists in cells, integers beyond the float64 range.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from ..exceptions import DataError

__all__ = [
    "MISSING_CODE",
    "UNSEEN_CODE",
    "blanks_as_missing",
    "canonical_levels",
    "category_key",
    "category_strings",
    "check_scalar_cells",
    "column_values",
    "column_values_at",
    "encode_categories",
    "encode_codes",
    "forced_numeric_role",
    "looks_like_dates",
    "plain",
    "refuse_infinite",
    "short",
]

#: Category codes: 0 for a missing value, 1 for a level not in the vocabulary.
MISSING_CODE = 0
UNSEEN_CODE = 1

_DATE = re.compile(
    r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)
_TRUE = {"true", "1", "1.0", "yes"}
_FALSE = {"false", "0", "0.0", "no"}
_EPOCH = pd.Timestamp(0, tz="UTC")


#: Text that is a number (a CSV cell, a string column): decimal digits, a sign, a point,
#: an exponent; no spaces, no 'nan' or 'inf' (those stay text, as readers keep them).
_NUMBER_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_INTEGER_TEXT = re.compile(r"[+-]?\d+", re.ASCII)
#: Longer digit strings stay text (Python refuses int() of more than 4,300 digits).
_MAX_NUMBER_TEXT = 64


def category_key(value: Any) -> str:
    """The one spelling of a categorical level, whoever read the value.

    The same cell reaches the encoder as a float from a DataFrame (``5.0``; a column of
    integers with a missing value is float too), an integer from Parquet or pandas'
    ``read_csv`` (``5``), or text from a CSV read as text (``'5.0'``, ``'5'``). All are
    the level ``'5'``: a number is spelled as the shortest text of its value (integers
    without a point), text that is a number as that number, ``True``/``False`` (any
    case) as ``'True'``/``'False'``; other text as it is. So ``'007'`` and ``7`` are the
    same level, as they are once any reader has parsed the file.
    """
    if isinstance(value, str):
        return _text_key(value)
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        # str of the value's own type: float32 0.1 is '0.1', as its text in a file.
        return str(int(value)) if float(value).is_integer() else str(value)
    return str(value)


def _text_key(text: str) -> str:
    if len(text) > _MAX_NUMBER_TEXT:
        return str(text)
    if _INTEGER_TEXT.fullmatch(text):
        return str(int(text))
    if _NUMBER_TEXT.fullmatch(text):
        number = float(text)
        return str(int(number)) if number.is_integer() else str(number)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return "True" if lowered == "true" else "False"
    return str(text)


def blanks_as_missing(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``frame`` with empty text cells (``""``) of ``columns`` (default: every column) as
    missing values: a new frame sharing the other columns' data, or ``frame`` itself when
    it has none.

    One reading of a blank cell whatever the source: a CSV file's empty field is missing
    (steadyclf's reader, as pandas' ``read_csv``), and the ONNX graph takes ``""`` for a
    missing category, so an empty string from a DataFrame, a Parquet file or a database
    is missing too (it was a level of its own, and a column of numbers with blanks read
    as text was a categorical of every distinct number). A blank of an object column
    becomes ``None`` (one object, which the spelling of levels looks up once).
    """
    blanks = {}
    for name in frame.columns if columns is None else columns:
        series = frame[name]
        dtype = series.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            if "" in set(dtype.categories.tolist()):
                blanks[name] = series.cat.remove_categories([""])
            continue
        if isinstance(dtype, pd.StringDtype):
            if dtype.storage == "pyarrow":
                empty = np.asarray(pc.fill_null(pc.equal(pa.array(series), ""), False))
            else:
                empty = series.eq("").to_numpy(dtype=bool, na_value=False)
            if empty.any():
                blanks[name] = series.mask(empty)
        elif pd.api.types.is_object_dtype(dtype):
            values = series.to_numpy()
            empty = _blank_cells(values)
            if empty.any():
                values = values.copy()
                values[empty] = None
                blanks[name] = pd.Series(values, index=series.index, dtype=object, name=name)
    if not blanks:
        return frame
    out = frame.copy(deep=False)
    for name, series in blanks.items():
        out[name] = series
    return out


def _blank_cells(values: NDArray[Any]) -> NDArray[np.bool_]:
    """Which cells of an object array are ``""`` (cells that are arrays or lists, refused
    elsewhere with their row, are not)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # elementwise comparison of odd cells
            empty = np.asarray(values == "", dtype=bool)
        if empty.shape == values.shape:
            return empty
    except (ValueError, TypeError):
        pass
    return np.fromiter((isinstance(v, str) and v == "" for v in values), bool, len(values))


def category_strings(series: pd.Series) -> pd.Series:
    """Categorical values as their levels' spelling (:func:`category_key`), missing
    values (and blanks: :func:`blanks_as_missing`) as None."""
    missing = series.isna().to_numpy()
    if pd.api.types.is_object_dtype(series.dtype):
        # An object column may mix 1, '1', True and 2.5: each value is spelled by its type
        # (pandas' factorize would take True and 1 for one value), each distinct one once.
        out = np.array(_object_keys(series.to_numpy()), dtype=object)
    else:
        # Every distinct value spelled once: a column of a million rows and 40 levels
        # costs 40 calls.
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        keys = np.array([*(category_key(u) for u in uniques), None], dtype=object)
        out = keys[codes]
    out[missing] = None
    out[out == ""] = None
    return pd.Series(out, index=series.index, dtype=object)


def _object_keys(values: NDArray[Any]) -> list[str]:
    spelled: dict[tuple[type, Any], str] = {}
    out = []
    for value in values:
        try:
            key = spelled.get((type(value), value))
        except TypeError:  # unhashable: refused elsewhere, spelled here all the same
            key = None
        if key is None:
            key = category_key(value)
            with contextlib.suppress(TypeError):
                spelled[(type(value), value)] = key
        out.append(key)
    return out


def canonical_levels(levels: Sequence[str]) -> list[str]:
    """Stored levels in today's spelling (:func:`category_key`; a model saved before
    levels were spelled one way may hold ``'5.0'`` or ``'true'``). A level whose new
    spelling an earlier level already took (``'1.0'`` after ``'1'``) becomes a text no
    reader gives: its input stays where the network expects it, and no value reaches it
    (as before, no value reached both). So does the empty string, a level of models saved
    before blanks were missing (:func:`blanks_as_missing`): a blank is missing now."""
    out: list[str] = []
    taken: set[str] = set()
    for level in levels:
        key = category_key(level)
        if key == "":
            key = "'' (a blank: now read as missing)"
        elif key in taken:
            key = f"{level} (a second spelling of {key!r})"
        taken.add(key)
        out.append(key)
    return out


def looks_like_dates(strings: pd.Series) -> str | None:
    """An example value when every (sampled) value of ``strings`` is a date."""
    sample = strings.dropna().drop_duplicates().head(200)
    if sample.empty or not all(_DATE.match(str(v)) for v in sample):
        return None
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed", utc=True)
    return str(sample.iloc[0]) if bool(parsed.notna().all()) else None


def is_boolean(series: pd.Series) -> bool:
    """A bool column, or an object column holding only True/False (and missing values)."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return True
    return bool(
        pd.api.types.is_object_dtype(series.dtype)
        and pd.api.types.infer_dtype(series, skipna=True) == "boolean"
    )


def forced_numeric_role(series: pd.Series) -> str:
    """The numeric role of a column listed as numeric: boolean, datetime or numeric."""
    if is_boolean(series):
        return "boolean"
    text = pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)
    if pd.api.types.is_datetime64_any_dtype(series.dtype) or (text and looks_like_dates(series)):
        return "datetime"
    return "numeric"


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


def column_values_at(name: str, series: pd.Series, role: str, start: int) -> NDArray[np.float64]:
    """:func:`column_values` of rows that start at global position ``start`` (for messages)."""
    try:
        return column_values(name, series, role)
    except DataError as exc:
        raise shift_rows(exc, start) from None


def shift_rows(exc: DataError, start: int) -> DataError:
    """``exc`` with its first 'row N' counted from global position ``start``."""
    if not start:
        return exc
    message = re.sub(r"\brow (\d+)", lambda m: f"row {start + int(m.group(1))}", str(exc), count=1)
    return type(exc)(message)


def check_scalar_cells(name: str, series: pd.Series) -> None:
    """Refuse object columns holding lists, dicts, arrays...: no role fits them."""
    if not pd.api.types.is_object_dtype(series.dtype):
        return
    for row, value in enumerate(series.to_numpy()):
        if not pd.api.types.is_scalar(value):
            raise DataError(
                f"column {name!r} holds a {type(value).__name__} at row {row} ({short(value)}); cells must be numbers, text, booleans or dates"
            )


def overflow_error(name: str, series: pd.Series) -> DataError:
    """A numeric column holding a Python integer beyond the float64 range."""
    limit = float(np.finfo(np.float64).max)
    for row, value in enumerate(series.to_numpy()):
        if isinstance(value, (int, np.integer)) and abs(int(value)) > limit:
            return DataError(
                f"column {name!r} holds an integer too large for a 64-bit float at row {row} ({short(value)}); rescale the column"
            )
    return DataError(f"column {name!r} holds a number too large for a 64-bit float")


def short(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plain(value: Any) -> str:
    """A value as a user reads it: ``7.0`` or ``'a'``, not ``np.float64(7.0)``."""
    item = value.item() if isinstance(value, np.generic) else value
    return repr(item)


def _numeric_values(name: str, series: pd.Series) -> NDArray[np.float64]:
    if isinstance(series.dtype, np.dtype) and series.dtype == np.float64:
        return series.to_numpy()  # already numbers: no conversion (may be a read-only view)
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "fiu":
        return series.to_numpy(dtype=np.float64)  # numpy numbers: one conversion
    if pd.api.types.is_bool_dtype(series.dtype):
        return np.asarray(series.astype("float64").to_numpy(), dtype=np.float64)
    if isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow":
        # Numbers read as text (a CSV file streamed for prediction): Arrow parses them ten
        # times faster than pandas; anything it refuses goes the pandas way below (which
        # accepts more, or names the row and the value).
        try:
            parsed = pc.cast(pa.array(series), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        else:
            return np.asarray(parsed.to_numpy(zero_copy_only=False), dtype=np.float64)
    if pd.api.types.is_complex_dtype(series.dtype) or (
        pd.api.types.is_object_dtype(series.dtype)
        and any(isinstance(v, (complex, np.complexfloating)) for v in series.to_numpy())
    ):
        raise DataError(f"column {name!r} holds complex numbers; steadyclf reads real numbers")
    try:
        numbers = pd.to_numeric(series, errors="raise").astype("float64")
        return np.asarray(numbers.to_numpy(na_value=np.nan), dtype=np.float64)
    except OverflowError:
        raise overflow_error(name, series) from None
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
        # A number is true or false by value (-0.0 is false, as 0 is).
        is_number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
        key = ("1" if value == 1 else "0" if value == 0 else str(value)) if is_number else value
        key = str(key).strip().lower()
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
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
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
    """Codes for ``series``: 0 missing, 1 unseen, 2.. the index of the level + 2.

    Values are spelled as levels are (:func:`category_key`). Arrow-backed strings (record
    batches read from files) are coded by Arrow, spelling each distinct value once; the
    result is the same.
    """
    if isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow":
        return _arrow_codes(pa.array(series), levels)
    lookup: dict[str, int] = {}
    for i, level in enumerate(levels):
        lookup.setdefault(level, i + 2)
    # Each distinct spelling looked up once (Series.map built an index of the levels per
    # call: most of a one-row prediction's time).
    codes, uniques = pd.factorize(category_strings(series).to_numpy(), use_na_sentinel=True)
    table = [lookup.get(u, UNSEEN_CODE) for u in uniques.tolist()]
    return np.array([*table, MISSING_CODE], dtype=np.int64)[codes]  # -1: missing


def encode_codes(values: NDArray[np.float64], levels: Sequence[str]) -> NDArray[np.int64]:
    """Codes of numbers read as a category (:func:`encode_categories`'s): 0 for NaN, 1 for
    a value that is no level (unseen, or not an integer), 2.. the index of the level + 2.

    ``levels`` are numbers as :func:`category_key` spells them (``"7"``): they are compared
    as numbers, so 7, 7.0 and the text "7" of a CSV file (read as the number 7) are one
    level for every reader.
    """
    keys = np.array([float(level) for level in levels], dtype=np.float64)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    codes = np.full(values.shape, UNSEEN_CODE, dtype=np.int64)
    if ordered.size:
        at = np.minimum(np.searchsorted(ordered, values), ordered.size - 1)
        found = ordered[at] == values  # NaN equals nothing
        codes[found] = order[at[found]] + 2
    codes[np.isnan(values)] = MISSING_CODE
    return codes


def _arrow_codes(values: pa.Array | pa.ChunkedArray, levels: Sequence[str]) -> NDArray[np.int64]:
    value_set = pa.array(list(levels), type=pa.string())
    codes = _arrow_index(values, value_set)
    blank = pc.fill_null(pc.equal(values, ""), True)  # null or "": missing
    missing = np.asarray(blank.to_numpy(zero_copy_only=False), dtype=bool)
    # Levels are spelled by category_key, which leaves its own output as it is: a value
    # found as it is needs no spelling. The others ('5.0' for the level '5') are spelled,
    # each distinct one once.
    unmatched = np.flatnonzero((codes == UNSEEN_CODE) & ~missing)
    if unmatched.size:
        encoded = pc.dictionary_encode(values.take(pa.array(unmatched)))
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        keys = [category_key(v) for v in encoded.dictionary.to_pylist()]
        by_entry = _arrow_index(pa.array(keys, type=pa.string()), value_set)
        codes[unmatched] = by_entry[np.asarray(encoded.indices.to_numpy(zero_copy_only=False))]
    codes[missing] = MISSING_CODE
    return codes


def _arrow_index(values: pa.Array | pa.ChunkedArray, value_set: pa.Array) -> NDArray[np.int64]:
    index = pc.index_in(values, value_set=value_set)
    found = np.asarray(index.fill_null(UNSEEN_CODE - 2).to_numpy(zero_copy_only=False))
    return (found + 2).astype(np.int64)


def float_summary(
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


def refuse_infinite(block: NDArray[np.floating], names: Sequence[str]) -> None:
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

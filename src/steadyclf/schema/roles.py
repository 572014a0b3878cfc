"""Column roles: pure functions of a column's summary.

Every input column gets one role: ``numeric``, ``boolean`` or ``datetime`` (read as
float64 numbers), ``categorical`` (read as codes of a vocabulary), or ``dropped`` with a
reason. The rules below look only at a :class:`~steadyclf.schema.summary.ColumnSummary`,
which is the same whether the rows were in memory or read in passes from files, so the
same data gets the same roles either way. In order, the first rule that applies wins:

1. listed in ``drop`` -> dropped; every value missing -> dropped;
2. listed in ``categorical`` / ``numeric`` -> that role;
3. one distinct value (missing counts as a value) -> dropped as constant;
4. datetime dtype -> datetime (the user parsed it); booleans -> boolean;
5. a category dtype -> categorical;
6. text: numbers only -> numeric; nearly only numbers -> an error naming the odd value;
   dates -> dropped (list the column as numeric to use it as a timestamp); a distinct
   value on every row -> dropped as ID-like; else categorical;
7. integers with a distinct value on every row -> dropped as ID-like; other numbers ->
   numeric (integers are categorical only when the user says so).

A numeric column whose values are integer codes (an hour, a month, a user id) may also be
read as a category: it stays a numeric input and enters as a categorical one too, its
levels the distinct values (:func:`code_candidates` says which columns may;
:func:`read_as_category` adds the reading).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..exceptions import DataError
from .columns import ColumnPlan
from .values import canonical_levels, category_key, looks_like_dates, plain

if TYPE_CHECKING:
    from .summary import ColumnSummary

__all__ = [
    "CODE_MIN_ROWS_PER_LEVEL",
    "CODE_MIN_VALUES",
    "ID_CODE_MIN_VALUES",
    "ID_LIKE_MIN_ROWS",
    "MAX_CATEGORIES",
    "MAX_TARGET_LEVELS",
    "MOSTLY_NUMERIC",
    "NUMERIC_ROLES",
    "ROLES",
    "ColumnInfo",
    "code_candidates",
    "column_info",
    "read_as_category",
]

#: Levels kept per categorical column (most frequent first); the rest share the
#: 'unseen' code. One-hot of up to this many levels stays small next to a hidden layer.
MAX_CATEGORIES = 64
#: Levels per categorical given target statistics beyond one-hot (the most frequent; the
#: summary counts up to 65,536 exactly). 0 turns target statistics off (an ablation).
MAX_TARGET_LEVELS = 1 << 16
#: Columns of at least this many rows with a distinct value on every row are IDs.
ID_LIKE_MIN_ROWS = 10
#: A text column whose non-missing values are numbers at least this often is a numeric
#: column with typos, not a categorical one: refusing it beats one level per number.
MOSTLY_NUMERIC = 0.9
#: Roles whose values go to the numeric input ``x_num``.
NUMERIC_ROLES = ("numeric", "boolean", "datetime")
ROLES = (*NUMERIC_ROLES, "categorical", "dropped")
ID_REASON = "ID-like: a different value on every row"
#: An integer column may be read as a category too with at least this many values (fewer:
#: a flag, which one number says as well) and up to :data:`MAX_CATEGORIES` (few levels,
#: one-hot), or from :data:`ID_CODE_MIN_VALUES` (an id: target statistics) up to the
#: summary's count (``steadyclf.schema.distinct.MAX_CODE_VALUES``). In between (65 to
#: 199 values: ages, years, percentages) a column is more likely a quantity than a code.
CODE_MIN_VALUES = 3
ID_CODE_MIN_VALUES = 200
#: An id read as a category needs rows to learn each level from: at least this many per
#: level on average (a timestamp in seconds has nearly one row per value).
CODE_MIN_ROWS_PER_LEVEL = 5


@dataclass
class ColumnInfo:
    """What was decided about one input column.

    ``low``/``high`` are the training range of numeric inputs, ``n_missing`` the
    missing values seen in training out of ``n_rows``, ``n_levels`` the distinct
    categories seen (of which ``levels`` keeps the most frequent, seen ``level_counts``
    times; ``n_other`` rows held the other levels). What later checks of new data (drift)
    compare against. A categorical with more levels than one-hot keeps also lists every
    level counted (``target_levels``, most frequent first, seen ``target_counts`` times):
    the network reads each one's target rate and frequency
    (:mod:`steadyclf.schema.target_stats`).

    A numeric column records whether every value was an integer (``integer``) and how many
    distinct values it had (``n_values``). With ``read_as_category`` it is read as a
    category too: it stays a numeric input, and its values (spelled as
    :func:`~steadyclf.schema.values.category_key` does: ``"7"`` for 7 and 7.0) are also the
    levels of a categorical input, with the categorical fields above.
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
    n_rows: int = 0
    level_counts: list[int] = field(default_factory=list)
    n_other: int = 0
    target_levels: list[str] = field(default_factory=list)
    target_counts: list[int] = field(default_factory=list)
    n_values: int = 0
    integer: bool = False
    read_as_category: bool = False

    @property
    def categorical_input(self) -> bool:
        """Whether the column enters as a categorical input (alone or beside a numeric one)."""
        return self.role == "categorical" or self.read_as_category

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        out: dict[str, Any] = {"name": self.name, "role": self.role, "dtype": self.dtype}
        if self.reason:
            out["reason"] = self.reason
        if self.read_as_category:
            out["read_as_category"] = True
        if self.categorical_input:
            out["levels"] = list(self.levels)
            out["n_levels"] = self.n_levels
            out["level_counts"] = list(self.level_counts)
            out["n_other"] = self.n_other
            if self.target_levels:
                out["target_levels"] = list(self.target_levels)
                out["target_counts"] = list(self.target_counts)
        if self.low is not None and self.high is not None:
            out["low"], out["high"] = self.low, self.high
        if self.role != "dropped":
            out["n_missing"] = self.n_missing
            out["n_rows"] = self.n_rows
        if self.role in NUMERIC_ROLES:
            out["n_values"] = self.n_values
            if self.integer:
                out["integer"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnInfo:
        """Inverse of :meth:`to_dict`."""
        role = str(data["role"])
        if role not in ROLES:
            raise ValueError(f"unknown column role {role!r}")
        low, high = data.get("low"), data.get("high")
        name = str(data["name"])
        info = cls(
            name=name,
            role=role,
            dtype=str(data["dtype"]),
            reason=str(data.get("reason", "")),
            levels=_stored_levels(name, "levels", data.get("levels", [])),
            low=None if low is None else float(low),
            high=None if high is None else float(high),
            n_missing=int(data.get("n_missing", 0)),
            n_levels=int(data.get("n_levels", len(data.get("levels", [])))),
            n_rows=int(data.get("n_rows", 0)),
            level_counts=[int(v) for v in data.get("level_counts", [])],
            n_other=int(data.get("n_other", 0)),
            target_levels=_stored_levels(name, "target_levels", data.get("target_levels", [])),
            target_counts=[int(v) for v in data.get("target_counts", [])],
            n_values=int(data.get("n_values", 0)),
            # Absent from models saved before integer codes were read: no reading.
            integer=bool(data.get("integer", False)),
            read_as_category=role == "numeric" and bool(data.get("read_as_category", False)),
        )
        if info.read_as_category:
            _check_code_levels(info)
        return info

    def describe(self) -> str:
        """One line for reports, e.g. ``"age: numeric (3 missing -> median)"``, or
        ``"hour: integer with 24 values, read as a category too"``."""
        if self.role == "dropped":
            return f"{self.name}: dropped ({self.reason})"
        details = []
        if self.categorical_input:
            kept = len(self.levels)
            if kept != self.n_levels:
                details.append(f"{kept} of {self.n_levels} levels")
            elif not self.read_as_category:
                details.append(f"{kept} levels")
            if self.target_levels:
                details.append(f"target rate and frequency of {len(self.target_levels)}")
        if self.n_missing:
            fill = "own level" if self.role == "categorical" else "median + indicator"
            details.append(f"{self.n_missing} missing -> {fill}")
        what = self.role
        if self.read_as_category:
            what = f"integer with {self.n_values} values, read as a category too"
        return f"{self.name}: {what}" + (f" ({', '.join(details)})" if details else "")


def _check_code_levels(info: ColumnInfo) -> None:
    """The levels of a number read as a category are integers (spelled ``"7"``)."""
    for level in (*info.levels, *info.target_levels):
        try:
            number = float(level)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number.is_integer()):
            raise ValueError(
                f"column {info.name!r} is read as a category with level {level!r}, which is not an integer"
            )


def column_info(plan: ColumnPlan, col: ColumnSummary, max_categories: int) -> ColumnInfo:
    """The role of one column, by the rules of the module docstring, from its summary."""
    name = col.name
    dtype = col.dtype
    if name in plan.drop:
        return ColumnInfo(name, "dropped", dtype, "dropped by request")
    if col.n_present == 0:
        dtype = "float64" if name in plan.untyped else dtype
        return ColumnInfo(name, "dropped", dtype, "all values missing")
    if name in plan.categorical:
        return categorical_info(col, max_categories)
    if name in plan.numeric:
        role = col.forced_role or "numeric"
        if col.kind in ("text", "category") and (role == "datetime") != bool(
            looks_like_dates(pd.Series(col.sample, dtype=object))
        ):
            raise DataError(
                f"column {name!r}: whether it holds dates differs between the first rows and the rest; list it as categorical, or convert it to numbers"
            )
        return numeric_info(col, role)
    if col.n_missing == 0 and not col.differs:
        return ColumnInfo(
            name, "dropped", dtype, f"constant (every value is {plain(col.first_present)})"
        )
    if col.kind == "datetime":
        return numeric_info(col, "datetime")
    if col.kind == "bool" or (col.kind == "text" and col.all_bool):
        return numeric_info(col, "boolean")
    # A distinct value on every row, counting 'missing' as one value.
    id_like = col.n_rows >= ID_LIKE_MIN_ROWS and col.unique and col.n_missing <= 1
    if col.kind == "category":
        return categorical_info(col, max_categories)
    if col.kind == "text":
        share = col.n_numbers / col.n_present
        if share == 1.0:
            return numeric_info(col, "numeric")
        if share >= MOSTLY_NUMERIC and col.non_number is not None:
            row, value = col.non_number
            raise DataError(
                f"column {name!r} holds numbers except at row {row}: {value!r}; fix the value, or list the column as categorical"
            )
        example = looks_like_dates(pd.Series(col.sample, dtype=object))
        if example is not None:
            return ColumnInfo(
                name,
                "dropped",
                dtype,
                f"dates (e.g. {example!r}); list the column as numeric to use it as a timestamp",
            )
        if id_like:
            return ColumnInfo(name, "dropped", dtype, ID_REASON)
        return categorical_info(col, max_categories)
    if id_like and col.kind == "int" and col.n_missing == 0:
        return ColumnInfo(name, "dropped", dtype, ID_REASON)
    return numeric_info(col, "numeric")


def categorical_info(col: ColumnSummary, max_categories: int) -> ColumnInfo:
    """A categorical column: the ``max_categories`` most frequent levels, ties by name."""
    return _with_levels(
        ColumnInfo(col.name, "categorical", col.dtype, n_missing=col.n_missing, n_rows=col.n_rows),
        dict(col.levels or {}),
        col.n_present,
        max_categories,
    )


def _with_levels(
    info: ColumnInfo, counts: Mapping[str, int], n_present: int, max_categories: int
) -> ColumnInfo:
    """``info`` with the categorical fields of levels seen ``counts`` times."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = ordered[:max_categories]
    # Beyond the one-hot cap, every level counted (the summary keeps up to 65,536 exactly)
    # is learned through its target rate and frequency instead.
    many = ordered[:MAX_TARGET_LEVELS] if len(ordered) > max_categories else []
    return replace(
        info,
        levels=[str(k) for k, _ in kept],
        n_levels=len(ordered),
        level_counts=[int(v) for _, v in kept],
        n_other=max(0, n_present - sum(int(v) for _, v in kept)),
        target_levels=[str(k) for k, _ in many],
        target_counts=[int(v) for _, v in many],
    )


def code_candidates(infos: Sequence[ColumnInfo], numeric: Sequence[str] = ()) -> list[str]:
    """Numeric columns that may be read as a category too, in order: integer-valued, not
    boolean, with :data:`CODE_MIN_VALUES` to :data:`MAX_CATEGORIES` distinct values (few
    levels: an hour, a month, a weekday) or an id's many (:data:`ID_CODE_MIN_VALUES` up to
    the summary's count, at least :data:`CODE_MIN_ROWS_PER_LEVEL` rows each on average).
    Columns the user listed as ``numeric`` are numbers only; those listed as categorical
    are categories only (their role already)."""
    from .distinct import MAX_CODE_VALUES

    found = []
    for info in infos:
        if info.role != "numeric" or not info.integer or info.name in numeric:
            continue
        n = info.n_values
        few = CODE_MIN_VALUES <= n <= MAX_CATEGORIES
        many = ID_CODE_MIN_VALUES <= n <= MAX_CODE_VALUES and (
            info.n_rows - info.n_missing >= CODE_MIN_ROWS_PER_LEVEL * n
        )
        if few or many:
            found.append(info.name)
    return found


def read_as_category(info: ColumnInfo, col: ColumnSummary, max_categories: int) -> ColumnInfo:
    """``info`` (a numeric column) read as a category too: its distinct values counted by
    the summary are its levels, spelled as a categorical's (``"7"`` for 7 and 7.0)."""
    if info.role != "numeric" or col.value_counts is None:
        raise ValueError(f"column {info.name!r} has no integer codes to read as a category")
    values, counts = col.value_counts
    levels = {
        category_key(v): int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)
    }
    return _with_levels(replace(info, read_as_category=True), levels, col.n_present, max_categories)


def numeric_info(col: ColumnSummary, role: str) -> ColumnInfo:
    """A column read as numbers, with its range."""
    low = None if col.low is None or not np.isfinite(col.low) else float(col.low)
    high = None if col.high is None or not np.isfinite(col.high) else float(col.high)
    return ColumnInfo(
        col.name,
        role,
        col.dtype,
        low=low,
        high=high,
        n_missing=col.n_missing,
        n_rows=col.n_rows,
        n_values=col.n_values,
        integer=col.integer,
    )


def check_roles(columns: Sequence[ColumnInfo]) -> None:
    """Refuse a table without any usable column, with each column's reason."""
    if not any(c.role != "dropped" for c in columns):
        reasons = "; ".join(f"{c.name}: {c.reason}" for c in columns)
        raise DataError(f"no usable feature column ({reasons})")


def _stored_levels(column: str, field_name: str, values: Any) -> list[str]:
    """Levels read from a model file, each once (a level twice would make two inputs of
    one value, the second never set), in today's spelling (:func:`canonical_levels`)."""
    if not isinstance(values, list):
        raise ValueError(f"column {column!r}: {field_name} must be a list")
    levels = [str(v) for v in values]
    seen: set[str] = set()
    for level in levels:
        if level in seen:
            raise ValueError(f"column {column!r}: {field_name} lists the level {level!r} twice")
        seen.add(level)
    return canonical_levels(levels)

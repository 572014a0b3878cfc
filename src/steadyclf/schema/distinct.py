"""Distinct values of a numeric column, counted in one mergeable pass.

The role rules need two facts about each numeric column: how many distinct values it has
(a flag, a rating, a count or a continuous measure: :data:`MAX_COUNTED_VALUES` tell them
apart) and, for a column whose every value is an integer, which values occur how often:
an hour of the day or a film id may be read as a category too
(:func:`steadyclf.schema.roles.code_candidates`), with these values as its levels.

:class:`ValueCounts` keeps, per column, whether every present value so far is an integer,
and the sorted distinct values with their row counts: up to :data:`MAX_CODE_VALUES` of them
for an integer column (1 MiB at most), up to :data:`MAX_COUNTED_VALUES` for another; past
that, only "more". The tally of all the rows is the same however they were cut into
batches or processes: it is a function of the set of values (a union), the integer flag
(true only if true in every part) and the counts (sums), never of the order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["MAX_CODE_VALUES", "MAX_COUNTED_VALUES", "ValueCounts"]

#: Distinct values counted per numeric column that is not integer-valued (``n_values`` is
#: capped here): enough to tell a continuous column from a coded one (the policy embeds
#: columns that reach it).
MAX_COUNTED_VALUES = 16
#: Distinct values counted, with their rows, per integer-valued column: enough to tell a
#: few levels (an hour, a month) from an id with many (users, films, postcodes), and to
#: give each its level when read as a category. A column with more reports
#: ``MAX_CODE_VALUES + 1`` values ("more") and is not read as a category.
MAX_CODE_VALUES = 1 << 16


#: A block of integers spanning at most this many values times its rows is counted by
#: ``np.bincount`` (several times faster than hashing or sorting).
_DENSE_SPAN = 4


def _distinct(
    present: NDArray[Any], integer: bool
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The sorted distinct values of ``present`` (no NaN) and their counts."""
    if integer:
        low, high = present.min(), present.max()
        span = float(high) - float(low)
        if span < _DENSE_SPAN * present.size + 1024:
            # Exact: integers (as integers or as floats below 2**53) minus the smallest.
            counts = np.bincount(np.asarray(present - low, dtype=np.int64))
            seen = np.flatnonzero(counts)
            return seen.astype(np.float64) + float(low), counts[seen].astype(np.int64)
    values, counts = np.unique(present, return_counts=True)
    return np.asarray(values, dtype=np.float64), np.asarray(counts, dtype=np.int64)


def _empty_values() -> NDArray[np.float64]:
    return np.empty(0, dtype=np.float64)


def _empty_counts() -> NDArray[np.int64]:
    return np.empty(0, dtype=np.int64)


@dataclass
class ValueCounts:
    """The distinct present values of one column, with their rows; ``None`` past the cap.

    ``integer``: every present value seen is an integer (integer dtypes always; floats
    such as 7.0). ``values`` are sorted; ``counts[i]`` rows hold ``values[i]``.
    """

    integer: bool = True
    values: NDArray[np.float64] | None = field(default_factory=_empty_values)
    counts: NDArray[np.int64] | None = field(default_factory=_empty_counts)

    @property
    def n_values(self) -> int:
        """Distinct values: exact up to the cap; past it :data:`MAX_COUNTED_VALUES` for a
        column that is not integer-valued, ``MAX_CODE_VALUES + 1`` for one that is."""
        if self.values is None:
            return MAX_CODE_VALUES + 1 if self.integer else MAX_COUNTED_VALUES
        return int(self.values.size)

    def add(self, column: NDArray[Any]) -> None:
        """Count one column of a block (any real dtype; NaN is a missing value)."""
        integer_dtype = column.dtype.kind in "iu"
        present = column if integer_dtype else column[~np.isnan(column)]
        if self.integer and not integer_dtype:
            self.integer = bool(np.array_equal(present, np.floor(present)))
        if self.values is None or not present.size:
            return
        values, counts = _distinct(present, self.integer)
        self._add(values, counts)

    def merge(self, other: ValueCounts) -> ValueCounts:
        """Add the tally of other rows in place; return ``self``."""
        self.integer &= other.integer
        if other.values is None or other.counts is None:
            self.values = self.counts = None
        else:
            self._add(other.values, other.counts)
        self._cap()
        return self

    def _add(self, values: NDArray[np.float64], counts: NDArray[np.int64]) -> None:
        """Add distinct ``values`` (any order) seen on ``counts`` rows each."""
        known, known_counts = self.values, self.counts
        if known is None or known_counts is None:
            return
        at = np.searchsorted(known, values)
        found = at < known.size
        found[found] = known[at[found]] == values[found]
        if found.all():  # the usual case once a column's values are known
            known_counts[at] += counts
            self._cap()
            return
        union = np.union1d(known, values[~found])
        if union.size > MAX_CODE_VALUES:
            self.values = self.counts = None
            return
        merged = np.zeros(union.size, dtype=np.int64)
        merged[np.searchsorted(union, known)] += known_counts
        merged[np.searchsorted(union, values)] += counts
        self.values, self.counts = union, merged
        self._cap()

    def _cap(self) -> None:
        """Forget the values past the cap of the column's kind."""
        values = self.values
        if values is None:
            return
        cap = MAX_CODE_VALUES + 1 if self.integer else MAX_COUNTED_VALUES
        if values.size >= cap:
            self.values = self.counts = None

"""One pass over the rows: a mergeable summary of every column.

:func:`summarise` reads a source (a DataFrame in memory is a source with one batch; files
are read in record batches) and keeps, per column, what the role rules and the fitted
statistics need: counts, missing values, first values and whether any differs, a
different value on every row or not, how many text values are numbers, level counts; and
for the columns that may be read as numbers, per side of the train/validation split, the
float64 mean and variance (Chan's merge, :class:`~steadyclf.schema.stats.RunningStats`),
missing counts, and the range. Summaries of different batches or processes merge, in row
order, into the summary of all the rows, so files read in passes, shards of a distributed
run and a DataFrame in memory all give the same summary of the same rows.

A weight column (``ColumnPlan.weight``) is read with the rows: its values are checked
(:mod:`steadyclf.schema.weights`), rows of weight 0 are left out like rows without a
label, the weights are summed per label and side, and the numeric tally keeps weighted
statistics beside the plain ones.

Later statistics that need another look at the values (exact quantiles) are computed by
:mod:`steadyclf.schema.quantiles` from the same source.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..exceptions import DataError
from ..io.sources import rows_per_read
from .columns import ColumnPlan
from .distinct import MAX_CODE_VALUES, MAX_COUNTED_VALUES, ValueCounts
from .labels import check_target, values_seen
from .split import SplitRule
from .stats import RunningStats
from .values import (
    blanks_as_missing,
    check_scalar_cells,
    column_values_at,
    forced_numeric_role,
    overflow_error,
    shift_rows,
)
from .weights import WeightTally, weight_values

if TYPE_CHECKING:
    from ..io.sources import Source
    from ..parallel import DistributedContext

__all__ = [
    "MAX_CODE_VALUES",
    "MAX_COUNTED_VALUES",
    "ColumnSummary",
    "NumericTally",
    "TableSummary",
    "summarise",
]

#: Distinct levels counted per categorical column before the rarest are pruned.
MAX_COUNTED_LEVELS = 1 << 16
#: Distinct values kept to decide whether a text column holds dates.
DATE_SAMPLE = 200
#: Distinct target values counted before the target is refused as not binary.
MAX_LABELS = 100
#: Rows of a numeric block converted to float64 at a time (cache-sized temporaries).
CHUNK_ROWS = 1 << 14
_UNSET: Any = object()


@dataclass
class ColumnSummary:
    """What one pass learns about one column, mergeable across batches and processes.

    Enough to take every role decision (:mod:`steadyclf.schema.roles`) on the whole
    column: missing values, constant or not, a different value on every row (ID-like) or
    not, how many text values are numbers (or booleans), the first distinct values
    (dates?), level counts; ``low``/``high`` are set from the numeric tally at the end.
    """

    name: str
    kind: str
    n_rows: int = 0
    n_missing: int = 0
    dtypes: list[str] = field(default_factory=list)
    first_present: Any = _UNSET  # the first value that is not missing
    differs: bool = False  # two present values differ
    unique: bool = True  # no present value seen twice (so far)
    # Sorted hashes of the values while checking `unique`; None past the size limit.
    hashes: NDArray[np.uint64] | None = field(default_factory=lambda: np.empty(0, np.uint64))
    n_numbers: int = 0  # present values that parse as numbers (text columns)
    all_bool: bool = True  # every present value is a boolean (text columns)
    non_number: tuple[int, Any] | None = None  # first (row, value) that does not parse
    sample: list[Any] = field(default_factory=list)  # first distinct present values
    levels: Counter[str] | None = None
    pruned: bool = False
    forced_role: str | None = None  # numeric role of a column listed as numeric
    low: float | None = None
    high: float | None = None
    n_values: int = 0  # distinct present numbers (see ValueCounts.n_values)
    integer: bool = False  # a number column whose every present value is an integer
    # Its distinct values (sorted) and their rows, when there are at most MAX_CODE_VALUES.
    value_counts: tuple[NDArray[np.float64], NDArray[np.int64]] | None = None

    def merge(self, other: ColumnSummary) -> ColumnSummary:
        """Add ``other`` (rows that come after this one's) in place; return ``self``."""
        self.differs |= other.differs or _differ(self.first_present, other.first_present)
        if self.first_present is _UNSET:
            self.first_present = other.first_present
        self.forced_role = self.forced_role or other.forced_role
        self.n_rows += other.n_rows
        self.n_missing += other.n_missing
        self.dtypes += [d for d in other.dtypes if d not in self.dtypes]
        self.merge_hashes(other)
        self.n_numbers += other.n_numbers
        self.all_bool &= other.all_bool
        if self.non_number is None:
            self.non_number = other.non_number
        self.sample = _first_distinct([*self.sample, *other.sample])
        if other.levels is not None:
            self.levels = (self.levels or Counter()) + other.levels
        self.pruned |= other.pruned
        return self

    def merge_hashes(self, other: ColumnSummary) -> None:
        """Update ``unique`` with the value hashes of ``other``."""
        if not (self.unique and other.unique):
            self.unique, self.hashes = False, None
        elif self.hashes is None or other.hashes is None:
            self.hashes = None  # too many values to check: no repeat so far counts as unique
        elif np.isin(other.hashes, self.hashes).any():
            self.unique, self.hashes = False, None
        else:
            self.hashes = np.union1d(self.hashes, other.hashes)

    @property
    def n_present(self) -> int:
        """Rows with a value."""
        return self.n_rows - self.n_missing

    @property
    def dtype(self) -> str:
        """The dtype of the whole column (int + NaN in another batch -> float)."""
        if len(self.dtypes) <= 1:
            return self.dtypes[0] if self.dtypes else "object"
        try:
            return str(np.result_type(*[np.dtype(d) for d in self.dtypes]))
        except TypeError:
            return "object"


def _differ(a: Any, b: Any) -> bool:
    if a is _UNSET or b is _UNSET:
        return False
    return bool(pd.isna(a) != pd.isna(b) or (not pd.isna(a) and a != b))


def _first_distinct(values: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(values))[:DATE_SAMPLE]


#: Largest first value a column's tally is shifted by (2**500, about 3e150).
SHIFT_LIMIT = 2.0**500


@dataclass
class NumericTally:
    """Mean, variance, missing counts and range of the numeric candidates, per side.

    Values are tallied as ``x - shift`` (a value of the column, 0 beyond
    :data:`SHIFT_LIMIT`): the chunk means then stay small, so merging thousands of chunks
    of ``1e6 + 1e-6 * x`` loses no precision.
    Training and validation rows are kept apart (the split is only known to be used at
    the end). When rows are weighted, the same statistics weighted by the rows' weights
    are kept beside the plain ones (``train_w``..., counts being sums of weights): which
    the scaling uses is only known at the end too (weights all equal are no weights).
    ``values`` counts each column's distinct present values and tells whether they are
    all integers (:class:`~steadyclf.schema.distinct.ValueCounts`): the same however the
    rows were cut into batches or processes.
    """

    names: list[str]
    shift: NDArray[np.float64] = field(init=False)
    train: RunningStats = field(init=False)
    valid: RunningStats = field(init=False)
    train_missing: NDArray[np.int64] = field(init=False)
    valid_missing: NDArray[np.int64] = field(init=False)
    low: NDArray[np.float64] = field(init=False)
    high: NDArray[np.float64] = field(init=False)
    seen: NDArray[np.bool_] = field(init=False)
    train_w: RunningStats = field(init=False)
    valid_w: RunningStats = field(init=False)
    train_missing_w: NDArray[np.float64] = field(init=False)
    valid_missing_w: NDArray[np.float64] = field(init=False)
    values: list[ValueCounts] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.names)
        self.shift = np.zeros(n)
        self.train, self.valid = RunningStats.empty(n), RunningStats.empty(n)
        self.train_missing = np.zeros(n, dtype=np.int64)
        self.valid_missing = np.zeros(n, dtype=np.int64)
        self.low, self.high = np.full(n, np.inf), np.full(n, -np.inf)
        self.seen = np.zeros(n, dtype=bool)
        self.train_w, self.valid_w = RunningStats.empty(n), RunningStats.empty(n)
        self.train_missing_w, self.valid_missing_w = np.zeros(n), np.zeros(n)
        self.values = [ValueCounts() for _ in range(n)]

    @property
    def n_values(self) -> NDArray[np.int64]:
        """Distinct present values of each column (:attr:`ValueCounts.n_values`)."""
        return np.array([v.n_values for v in self.values], dtype=np.int64)

    def add(
        self,
        columns: NDArray[np.intp],
        block: NDArray[Any],
        in_valid: NDArray[np.bool_] | None,
        weights: NDArray[np.float64] | None = None,
    ) -> NDArray[np.int64]:
        """Tally ``block`` (rows x ``columns``, any real dtype) a chunk at a time.

        ``in_valid`` flags validation rows (``None``: none); ``weights`` are the rows'
        weights, if any. Returns the missing count of each column of the block.
        """
        missing = np.zeros(len(columns), dtype=np.int64)
        for start in range(0, block.shape[0], CHUNK_ROWS):
            chunk = block[start : start + CHUNK_ROWS]
            part = slice(start, start + CHUNK_ROWS)
            valid = None if in_valid is None else in_valid[part]
            missing += self._add_chunk(columns, chunk, valid)
            if weights is not None:
                self._add_weighted(columns, chunk, valid, weights[part])
        return missing

    def _add_weighted(
        self,
        columns: NDArray[np.intp],
        chunk: NDArray[Any],
        in_valid: NDArray[np.bool_] | None,
        w: NDArray[np.float64],
    ) -> None:
        """The weighted statistics of a chunk (after :meth:`_add_chunk` set the shift)."""
        x = np.subtract(chunk, self.shift[columns], dtype=np.float64)
        extreme = chunk.dtype == np.float64
        gaps = np.isnan(x)
        every = RunningStats.of_block(x, extreme=extreme, weights=w)
        missing = (gaps * w[:, None]).sum(axis=0)
        if in_valid is None or not in_valid.any():
            self._merge(self.train_w, columns, every)
            self.train_missing_w[columns] += missing
            return
        held = RunningStats.of_block(x[in_valid], extreme=extreme, weights=w[in_valid])
        self._merge(self.valid_w, columns, held)
        self._merge(self.train_w, columns, every.without(held))
        held_missing = (gaps[in_valid] * w[in_valid, None]).sum(axis=0)
        self.valid_missing_w[columns] += held_missing
        self.train_missing_w[columns] += missing - held_missing

    def _add_chunk(
        self, columns: NDArray[np.intp], chunk: NDArray[Any], in_valid: NDArray[np.bool_] | None
    ) -> NDArray[np.int64]:
        fresh = ~self.seen[columns]
        if fresh.any():
            first = _first_present(chunk)
            found = fresh & ~np.isnan(first)
            # A value beyond 2**500 gives no precision to keep, and a shift that size
            # would overflow the differences to values of the other sign (-1.8e308 then
            # 3e292): such a column is tallied unshifted.
            ordinary = np.abs(first[found]) <= SHIFT_LIMIT
            self.shift[columns[found]] = np.where(ordinary, first[found], 0.0)
            self.seen[columns[found]] = True
        # The range of the values as they are (not shifted: the same in every process).
        # Plain min/max propagate NaN: they tell which columns need the NaN-aware ones.
        low = chunk.min(axis=0).astype(np.float64)
        high = chunk.max(axis=0).astype(np.float64)
        gaps = np.flatnonzero(np.isnan(low))
        isnan = np.isnan(chunk[:, gaps]) if gaps.size else None
        n_missing = np.zeros(len(columns), dtype=np.int64)
        if isnan is not None:
            n_missing[gaps] = isnan.sum(axis=0)
            low[gaps] = np.fmin.reduce(chunk[:, gaps], axis=0)
            high[gaps] = np.fmax.reduce(chunk[:, gaps], axis=0)
        self.low[columns] = np.fmin(self.low[columns], low)
        self.high[columns] = np.fmax(self.high[columns], high)
        for k, j in enumerate(columns.tolist()):
            self.values[j].add(chunk[:, k])
        x = np.subtract(chunk, self.shift[columns], dtype=np.float64)
        # Values from float32 or integers cannot reach magnitudes beyond 2**±500.
        extreme = chunk.dtype == np.float64
        every = RunningStats.of_block(x, extreme=extreme)
        if in_valid is None or not in_valid.any():
            self._merge(self.train, columns, every)
            self.train_missing[columns] += n_missing
            return n_missing
        # The held-out rows (a small share) on their own; the training rows are every row
        # but those: no copy of the large side.
        held = RunningStats.of_block(x[in_valid], extreme=extreme)
        self._merge(self.valid, columns, held)
        self._merge(self.train, columns, every.without(held))
        held_missing = isnan[in_valid].sum(axis=0) if isnan is not None else 0
        self.valid_missing[columns[gaps]] += held_missing
        self.train_missing[columns] += n_missing
        self.train_missing[columns[gaps]] -= held_missing
        return n_missing

    @staticmethod
    def _merge(into: RunningStats, columns: NDArray[np.intp], part: RunningStats) -> None:
        """Merge ``part`` (statistics of ``columns``) into the full-width ``into``."""
        full = RunningStats.empty(into.n_features)
        for name in ("count", "mean", "m2", "exponent"):
            getattr(full, name)[columns] = getattr(part, name)
        into.merge(full)

    def merge(self, other: NumericTally) -> NumericTally:
        """Add ``other`` (rows after these) in place; return ``self``."""
        # Re-express the other statistics relative to this tally's shift (exact for
        # nearby values) and adopt the other's shift where this one has seen nothing.
        self.shift = np.where(self.seen, self.shift, other.shift)
        offset = other.shift - self.shift
        for mine, theirs in (
            (self.train, other.train),
            (self.valid, other.valid),
            (self.train_w, other.train_w),
            (self.valid_w, other.valid_w),
        ):
            mine.merge(replace(theirs, mean=theirs.mean + offset))
        self.seen |= other.seen
        self.train_missing += other.train_missing
        self.valid_missing += other.valid_missing
        self.train_missing_w += other.train_missing_w
        self.valid_missing_w += other.valid_missing_w
        self.low, self.high = np.fmin(self.low, other.low), np.fmax(self.high, other.high)
        for counted, more in zip(self.values, other.values, strict=True):
            counted.merge(more)
        return self

    def fold_validation_into_training(self) -> None:
        """No rows are held out after all: every row is a training row."""
        self.train.merge(self.valid)
        self.train_missing += self.valid_missing
        self.valid = RunningStats.empty(len(self.names))
        self.valid_missing[:] = 0
        self.train_w.merge(self.valid_w)
        self.train_missing_w += self.valid_missing_w
        self.valid_w = RunningStats.empty(len(self.names))
        self.valid_missing_w[:] = 0

    def training_stats(self, names: Sequence[str], *, weighted: bool = False) -> RunningStats:
        """The training statistics of ``names``, in the units of the values (no shift);
        ``weighted``: the statistics weighted by the rows' weights."""
        index = [self.names.index(n) for n in names]
        train = self.train_w if weighted else self.train
        per_column = {
            f.name: np.asarray(getattr(train, f.name))[index].copy()
            for f in fields(train)
            if f.init and isinstance(getattr(train, f.name), np.ndarray)
        }
        stats = RunningStats(**per_column)
        stats.mean = stats.mean + self.shift[index]
        return stats


def _first_present(x: NDArray[Any]) -> NDArray[np.float64]:
    values = np.asarray(x, dtype=np.float64)
    present = ~np.isnan(values)
    first = values[present.argmax(axis=0), np.arange(values.shape[1])]
    return np.where(present.any(axis=0), first, np.nan)


@dataclass
class TableSummary:
    """The summary of every row read: columns, numeric tallies, label counts.

    ``labels`` maps each target value to its ``[training, validation]`` row counts;
    ``n_dropped`` counts rows skipped for a missing target; ``digest`` (when asked for)
    is a SHA-256 of the rows' values in order, to tell whether two runs saw the same data.
    ``weights`` tallies the row weights, when a weight column is read (rows of weight 0
    are skipped like rows without a label: they count nowhere else).
    """

    plan: ColumnPlan
    columns: dict[str, ColumnSummary]
    numeric: NumericTally
    labels: dict[Any, list[int]] = field(default_factory=dict)
    n_rows: int = 0
    n_dropped: int = 0
    first_dropped: list[int] = field(default_factory=list)
    digest: str | None = None
    #: Training and validation rows of this process (the counts of a distributed run's
    #: summary cover every process).
    local_train: int = 0
    local_valid: int = 0
    weights: WeightTally | None = None

    def merge(self, other: TableSummary) -> TableSummary:
        """Add ``other`` (rows after these) in place; return ``self``."""
        for name, column in other.columns.items():
            self.columns[name].merge(column)
        if self.weights is not None and other.weights is not None:
            self.weights.merge(other.weights)
        for value, (t, v) in other.labels.items():
            counts = self.labels.setdefault(value, [0, 0])
            counts[0] += t
            counts[1] += v
        self.n_rows += other.n_rows
        self.n_dropped += other.n_dropped
        self.first_dropped = (self.first_dropped + other.first_dropped)[:5]
        self.numeric.merge(other.numeric)
        if self.digest is not None and other.digest is not None:
            self.digest = hashlib.sha256((self.digest + other.digest).encode()).hexdigest()
        return self

    def finish(self) -> TableSummary:
        """Set what only the whole column tells: range, and whether values differ."""
        tally = self.numeric
        n_values = tally.n_values
        for j, name in enumerate(tally.names):
            col = self.columns[name]
            low, high = float(tally.low[j]), float(tally.high[j])
            if np.isfinite(low) and np.isfinite(high):
                col.low, col.high = low, high
            col.n_values = int(n_values[j])
            counted = tally.values[j]
            col.integer = counted.integer and col.n_present > 0
            if col.integer and counted.values is not None and counted.counts is not None:
                col.value_counts = (counted.values, counted.counts)
            if col.kind in NUMBER_KINDS:  # two different values <=> min < max
                col.differs = bool(low < high)
        return self

    def fold_validation_into_training(self) -> None:
        """No rows are held out after all: every row is a training row."""
        self.numeric.fold_validation_into_training()
        for counts in self.labels.values():
            counts[0], counts[1] = counts[0] + counts[1], 0
        if self.weights is not None:
            for sums in self.weights.labels.values():
                sums[0], sums[1] = sums[0] + sums[1], 0.0
        self.local_train, self.local_valid = self.local_train + self.local_valid, 0

    @property
    def n_train(self) -> int:
        """Training rows (all rows when nothing is held out)."""
        return sum(t for t, _ in self.labels.values())

    @property
    def mean_training_weight(self) -> float | None:
        """The mean weight of the training rows (rows of weight 0 are not rows here);
        ``None`` without a weight column or training rows."""
        if self.weights is None or not self.n_train:
            return None
        return sum(t for t, _ in self.weights.labels.values()) / self.n_train

    @property
    def n_valid(self) -> int:
        """Validation rows."""
        return sum(v for _, v in self.labels.values())


#: Kinds whose values the numeric tally reads directly.
NUMBER_KINDS = ("float", "int", "bool", "datetime")
_NUMBER_ROLES = {"bool": "boolean", "datetime": "datetime", "int": "numeric", "float": "numeric"}


class Accumulator:
    """Turns batches of rows into a :class:`TableSummary` (one per process)."""

    def __init__(
        self,
        plan: ColumnPlan,
        split: SplitRule,
        *,
        drop_missing_target: bool = False,
        max_levels: int = MAX_COUNTED_LEVELS,
        max_hashes: int = 1 << 20,
        fingerprint: bool = False,
        weight_label: str = "the weights",
    ) -> None:
        self.plan = plan
        self.split = split
        self.drop_missing_target = drop_missing_target
        self.max_levels = max_levels
        self.max_hashes = max_hashes
        columns = {n: ColumnSummary(n, plan.kinds[n]) for n in plan.features}
        self.summary = TableSummary(plan, columns, NumericTally(plan.numeric_candidates))
        if plan.weight is not None:
            self.summary.weights = WeightTally(weight_label)
        self._digest = hashlib.sha256() if fingerprint else None
        # Number columns: missing values and 'constant' follow from the numeric tally
        # (NaN count, min == max), with no per-column pandas work.
        self.numbers = {n for n in self.summary.numeric.names if plan.kinds[n] in NUMBER_KINDS}

    def add(self, start: int, frame: pd.DataFrame) -> None:
        """Tally the rows of ``frame``, whose first row is at global position ``start``."""
        plan, summary = self.plan, self.summary
        frame = blanks_as_missing(frame, plan.features)  # the target's blanks: its own rule
        in_valid = self.split.mask(start, len(frame))
        weights = None
        if plan.target is not None:
            frame, in_valid, weights = self._labels(frame, start, in_valid)
        if self._digest is not None:
            self._digest.update(str((start, len(frame))).encode())
            self._digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        for name in plan.features:
            col = summary.columns[name]
            if name in self.numbers:
                self._add_number_column(col, frame[name])
            else:
                self._add_column(col, frame[name], start)
        self._add_numeric(frame, start, in_valid if in_valid.any() else None, weights)
        summary.n_rows += len(frame)

    def _labels(
        self, frame: pd.DataFrame, start: int, in_valid: NDArray[np.bool_]
    ) -> tuple[pd.DataFrame, NDArray[np.bool_], NDArray[np.float64] | None]:
        """The rows kept (a label, a weight > 0), their validation flags and weights."""
        target = self.plan.target
        y = frame[target]
        missing = y.isna().to_numpy()
        positions = np.arange(start, start + len(frame), dtype=np.int64)
        if missing.any():
            # Counted (and, unless they are dropped, refused at the end with the count).
            dropped = start + np.flatnonzero(missing)
            self.summary.n_dropped += int(dropped.size)
            self.summary.first_dropped = [*self.summary.first_dropped, *dropped[:5].tolist()][:5]
            keep = ~missing
            frame, in_valid, y = frame.loc[keep], in_valid[keep], y.loc[keep]
            positions = positions[keep]
        weights = None
        if self.summary.weights is not None:
            frame, in_valid, y, weights = self._weights(frame, positions, in_valid, y)
        labels = self.summary.labels
        for side, rows in ((0, ~in_valid), (1, in_valid)):
            for value, count in y[rows].value_counts(sort=False).items():
                labels.setdefault(value, [0, 0])[side] += int(count)
        if len(labels) > MAX_LABELS:
            raise DataError(
                f"Only binary classification is supported: the target {target!r} has more than {MAX_LABELS} values ({values_seen(labels)})"
            )
        return frame, in_valid, weights

    def _weights(
        self,
        frame: pd.DataFrame,
        rows: NDArray[np.int64],
        in_valid: NDArray[np.bool_],
        y: pd.Series,
    ) -> tuple[pd.DataFrame, NDArray[np.bool_], pd.Series, NDArray[np.float64]]:
        """Check the weights of the labelled rows (global positions ``rows``), tally them,
        and leave out the rows of weight 0."""
        tally = self.summary.weights
        assert tally is not None and self.plan.weight is not None
        w = weight_values(self.plan.weight, frame[self.plan.weight], rows, tally.label)
        zero = w == 0
        if zero.any():
            tally.n_zero += int(zero.sum())
            tally.zero_labels |= set(y[zero].unique().tolist())
            keep = ~zero
            frame, in_valid, y, w = frame.loc[keep], in_valid[keep], y.loc[keep], w[keep]
        if w.size:
            tally.low, tally.high = min(tally.low, float(w.min())), max(tally.high, float(w.max()))
        codes, values = pd.factorize(y, sort=False)
        for side, mask in ((0, ~in_valid), (1, in_valid)):
            sums = np.bincount(codes[mask], weights=w[mask], minlength=len(values))
            for value, total in zip(values, sums, strict=True):
                tally.labels.setdefault(value, [0.0, 0.0])[side] += float(total)
        return frame, in_valid, y, w

    def _add_number_column(self, col: ColumnSummary, series: pd.Series) -> None:
        """The per-column facts of a number column that the numeric tally does not give."""
        if col.n_rows == 0 and col.name in self.plan.numeric:
            col.forced_role = forced_numeric_role(series)
        if col.first_present is _UNSET:
            for head in (series.iloc[:1024], series):  # the first rows nearly always do
                present = head.notna().to_numpy()
                if present.any():
                    col.first_present = head.iloc[int(present.argmax())]
                    break
        if str(series.dtype) not in col.dtypes:
            col.dtypes.append(str(series.dtype))
        if col.kind == "int" and col.unique:
            self._check_unique(col, series.dropna())
        col.n_rows += len(series)

    def _add_column(self, col: ColumnSummary, series: pd.Series, start: int) -> None:
        if col.kind == "complex":
            raise DataError(
                f"column {col.name!r} holds complex numbers; steadyclf reads real numbers"
            )
        try:
            check_scalar_cells(col.name, series)
        except DataError as exc:
            raise shift_rows(exc, start) from None
        present = series.dropna()
        if col.n_rows == 0 and col.name in self.plan.numeric:
            col.forced_role = forced_numeric_role(series)
        if len(present):
            head = present.iloc[0]
            if col.first_present is _UNSET:
                col.first_present = head
            if not col.differs:
                col.differs = _differ(head, col.first_present) or bool((present != head).any())
        if str(series.dtype) not in col.dtypes:
            col.dtypes.append(str(series.dtype))
        col.n_missing += len(series) - len(present)
        if col.kind in ("text", "category", "int") and col.unique:
            self._check_unique(col, present)
        if col.kind in ("text", "category"):
            if len(col.sample) < DATE_SAMPLE:
                head_values = present.drop_duplicates().head(DATE_SAMPLE).tolist()
                col.sample = _first_distinct([*col.sample, *head_values])
            if col.kind == "text":
                col.all_bool &= bool(
                    present.empty or pd.api.types.infer_dtype(present, skipna=True) == "boolean"
                )
                self._add_numbers(col, series, present, start)
        if self.plan.counts_levels(col.name):
            self._add_levels(col, series)
        col.n_rows += len(series)

    @staticmethod
    def _add_numbers(col: ColumnSummary, series: pd.Series, present: pd.Series, start: int) -> None:
        """Count the text values that parse as numbers (each distinct value parsed once)."""
        counts = present.value_counts(sort=False)
        try:
            parsed = pd.to_numeric(pd.Series(counts.index, dtype=object), errors="coerce")
        except OverflowError:
            raise overflow_error(col.name, series) from None
        if pd.api.types.is_complex_dtype(parsed.dtype):
            raise DataError(
                f"column {col.name!r} holds complex numbers; steadyclf reads real numbers"
            )
        numbers = parsed.notna().to_numpy()
        col.n_numbers += int(counts.to_numpy()[numbers].sum())
        if col.non_number is None and not numbers.all():
            bad = present.isin(counts.index[~numbers]).to_numpy()
            i = int(np.flatnonzero(bad)[0])
            row = start + int(np.flatnonzero(series.notna().to_numpy())[i])
            col.non_number = (row, present.iloc[i])

    def _check_unique(self, col: ColumnSummary, present: pd.Series) -> None:
        values = present.to_numpy()
        # Too narrow a range to hold n distinct integers: a repeat, with no hashing.
        if (
            values.dtype.kind in "iu"
            and values.size
            and (int(values.max()) - int(values.min()) + 1 < values.size)
        ):
            col.unique, col.hashes = False, None
            return
        hashes = pd.util.hash_pandas_object(present, index=False).to_numpy()
        batch = np.unique(hashes).astype(np.uint64)
        if batch.size < hashes.size:
            col.unique, col.hashes = False, None
            return
        col.merge_hashes(ColumnSummary(col.name, col.kind, hashes=batch))
        if col.hashes is not None and col.hashes.size > self.max_hashes:
            col.hashes = None

    def _add_levels(self, col: ColumnSummary, series: pd.Series) -> None:
        from .values import category_strings

        counts = col.levels if col.levels is not None else Counter()
        # Levels spelled as prediction spells values, whoever read them (category_key).
        strings = category_strings(series)
        counts.update({str(k): int(v) for k, v in strings.value_counts().items()})
        if len(counts) > self.max_levels:
            # Keep the most frequent half: a level frequent enough to make the vocabulary
            # is counted from (nearly) its first appearance. Exact below the limit.
            kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_levels // 2]
            counts = Counter(dict(kept))
            col.pruned = True
        col.levels = counts

    def _add_numeric(
        self,
        frame: pd.DataFrame,
        start: int,
        in_valid: NDArray[np.bool_] | None,
        weights: NDArray[np.float64] | None = None,
    ) -> None:
        """Tally the numeric candidates: numpy number columns as blocks, others one by one."""
        tally = self.summary.numeric
        groups: dict[np.dtype[Any], list[int]] = {}
        others: list[int] = []
        for j, name in enumerate(tally.names):
            col = self.summary.columns[name]
            dtype = frame[name].dtype
            plain = col.forced_role in (None, "numeric") and col.kind in ("float", "int")
            if plain and isinstance(dtype, np.dtype) and dtype.kind in "fiu":
                groups.setdefault(dtype, []).append(j)
            else:
                others.append(j)
        for index in groups.values():
            names = [tally.names[j] for j in index]
            block = frame[names].to_numpy(copy=False)
            columns = np.asarray(index, dtype=np.intp)
            self._refuse_infinite(block, names, start)
            missing = tally.add(columns, block, in_valid, weights)
            self._count_missing(names, missing)
        if others:
            values = np.column_stack(
                [self._values(self.summary.columns[tally.names[j]], frame, start) for j in others]
            )
            missing = tally.add(np.asarray(others, dtype=np.intp), values, in_valid, weights)
            self._count_missing([tally.names[j] for j in others], missing)

    def _count_missing(self, names: Sequence[str], missing: NDArray[np.int64]) -> None:
        for name, count in zip(names, missing, strict=True):
            if name in self.numbers:
                self.summary.columns[name].n_missing += int(count)

    @staticmethod
    def _refuse_infinite(block: NDArray[Any], names: Sequence[str], start: int) -> None:
        from .values import refuse_infinite

        if block.dtype.kind == "f":
            try:
                refuse_infinite(block, names)
            except DataError as exc:
                raise shift_rows(exc, start) from None

    def _values(self, col: ColumnSummary, frame: pd.DataFrame, start: int) -> NDArray[np.float64]:
        """The column as float64 under the numeric role it would get (NaN if none)."""
        series = frame[col.name]
        if col.forced_role is not None:
            return column_values_at(col.name, series, col.forced_role, start)
        if col.kind in ("text", "category"):
            if col.all_bool and col.n_present:
                return column_values_at(col.name, series, "boolean", start)
            if col.n_numbers < col.n_present:  # not all numbers: never numeric
                return np.full(len(series), np.nan)
            return np.asarray(
                pd.to_numeric(series, errors="coerce").astype("float64"), dtype=np.float64
            )
        return column_values_at(col.name, series, _NUMBER_ROLES.get(col.kind, "numeric"), start)

    def finish(self) -> TableSummary:
        """The summary of every row added."""
        if self._digest is not None:
            self.summary.digest = self._digest.hexdigest()
        return self.summary


def summarise(
    source: Source,
    plan: ColumnPlan,
    split: SplitRule,
    *,
    budget: int,
    drop_missing_target: bool = False,
    fingerprint: bool = False,
    context: DistributedContext | None = None,
    weight_label: str = "the weights",
) -> TableSummary:
    """Read ``source`` once and summarise every row (merged over processes, in rank order).

    With ``context`` (a distributed run) ``source`` is this process's shard; the partial
    summaries of all processes are gathered and merged in rank order, so every process
    gets the summary of all the rows. ``weight_label`` names the weight column of
    ``plan`` (if any) in messages.
    """
    # Value hashes kept per column to tell ID columns: 1/16 of the budget in all.
    max_hashes = max(1 << 16, budget // 16 // 8 // max(1, len(plan.features)))
    acc = Accumulator(
        plan,
        split,
        drop_missing_target=drop_missing_target,
        max_hashes=max_hashes,
        fingerprint=fingerprint,
        weight_label=weight_label,
    )
    read = {plan.target, plan.weight}
    columns = [c for c in source.columns if c in read or c in plan.features]
    # Larger batches than for training: nothing else of size is held during this pass.
    rows = rows_per_read(source, columns, budget, share=16)
    for start, frame in source.batches(columns, batch_rows=rows):
        acc.add(start, frame)
    summary = acc.finish()
    summary.local_train, summary.local_valid = summary.n_train, summary.n_valid
    if context is not None:
        parts = context.all_gather_object(summary)
        summary = parts[0]
        for part in parts[1:]:
            summary.merge(part)
    weights = summary.weights
    if summary.n_rows == 0 and not summary.n_dropped and not (weights and weights.n_zero):
        raise DataError(f"the data in {source.name} has no rows")
    check_target(summary, drop_missing_target)
    return summary.finish()

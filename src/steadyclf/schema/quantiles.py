"""Exact order statistics (medians, quantiles) of columns read in passes.

Values are ordered by their float64 bit patterns, turned into unsigned keys. Each pass
over the source either counts the next 16 bits of the values that share the known prefix
of a wanted order statistic (a histogram, merged across processes), or, once few enough
values share that prefix, collects them and selects the exact one. A table in memory, or
data whose values fit the budget, is settled in the first pass; larger data in two or
three. Histograms are summed and collected values gathered across processes, so every
process finds the same values, equal to ``np.nanquantile`` / ``np.nanmedian`` on all rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .split import SplitRule
from .values import column_values_at

if TYPE_CHECKING:
    from ..io.sources import Source
    from ..train.distributed import DistributedContext

__all__ = ["collect_limit", "exact_quantiles", "order_ranks"]

#: Bits of the float64 sort key resolved by each histogram pass.
_RADIX_BITS = 16


def _sort_keys(x: NDArray[np.float64]) -> NDArray[np.uint64]:
    """uint64 keys in the same order as the float64 values (NaN excluded beforehand)."""
    bits = np.ascontiguousarray(x, dtype=np.float64).view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint64(1 << 63))


def _key_value(key: int) -> float:
    bits = np.uint64(key)
    raw = bits & np.uint64((1 << 63) - 1) if key >> 63 else ~bits
    return float(np.array([raw], dtype=np.uint64).view(np.float64)[0])


@dataclass
class _Target:
    """One order statistic being searched: the ``rank``-th value within ``prefix``."""

    column: int
    rank: int  # within the values that share the prefix
    count: int  # values that share the prefix
    origin: int = 0  # the rank among all the column's values
    prefix: int = 0
    bits: int = 0
    value: float | None = None

    def matches(self, keys: NDArray[np.uint64]) -> NDArray[np.bool_]:
        if self.bits == 0:
            return np.ones(keys.shape, dtype=bool)
        return (keys >> np.uint64(64 - self.bits)) == np.uint64(self.prefix)


def collect_limit(budget: int, n_targets: int) -> int:
    """Values collected per order statistic for the final selection: 1/64 of the budget
    in all (8 bytes each, with room for the arrays numpy makes while selecting)."""
    return max(1 << 16, budget // 64 // max(1, n_targets))


def order_ranks(n: int, probabilities: Sequence[float]) -> list[int]:
    """The 0-based ranks ``np.quantile`` (linear) interpolates between, for ``n`` values."""
    ranks: set[int] = set()
    for p in probabilities:
        h = (n - 1) * p
        ranks.update({int(np.floor(h)), int(np.ceil(h))})
    return sorted(r for r in ranks if 0 <= r < n)


def _quantile(sorted_values: dict[int, float], n: int, p: float) -> float:
    """``np.quantile`` (linear) from the order statistics it needs; the median as numpy."""
    if n == 0:
        return 0.0
    h = (n - 1) * p
    lo, hi = int(np.floor(h)), int(np.ceil(h))
    a, b = sorted_values[lo], sorted_values[hi]
    if p == 0.5:
        return float(np.mean([a, b]))  # as np.median: the mean of the two middle values
    return float(a + (h - lo) * (b - a))


def exact_quantiles(
    source: Source,
    columns: Sequence[tuple[str, str]],
    counts: Sequence[int],
    probabilities: Sequence[float],
    split: SplitRule,
    *,
    budget: int | None,
    target: str | None = None,
    context: DistributedContext | None = None,
) -> NDArray[np.float64]:
    """Quantiles ``probabilities`` of each ``(column, role)`` over the training rows.

    ``counts`` gives each column's number of present training values (from the summary);
    ``target``, when given, is read too and rows where it is missing are skipped (they
    were dropped). ``budget`` bounds the values collected at once (``None``: no bound, for
    data in memory). Returns an array of shape ``(len(columns), len(probabilities))``;
    a column without values gets 0.
    """
    targets = [
        _Target(j, rank, n, rank)
        for j, n in enumerate(counts)
        for rank in order_ranks(int(n), probabilities)
    ]
    limit = None if budget is None else collect_limit(budget, len(targets))
    names = [name for name, _ in columns]
    read = [*names, target] if target is not None and target not in names else names
    rows = None if budget is None else _read_rows(source, read, budget)
    while True:
        for t in targets:
            if t.value is None and t.bits == 64:  # every bit known: the value itself
                t.value = _key_value(t.prefix)
        open_ = [t for t in targets if t.value is None]
        if not open_:
            break
        collect = [t for t in open_ if limit is None or t.count <= limit]
        refine = [t for t in open_ if not (limit is None or t.count <= limit)]
        # Targets that share a column and a prefix share the values collected, and the
        # histogram of their next digit (all of a column's in the first pass): one
        # histogram per prefix, not per target, bounds the memory and the counting.
        groups = sorted({(t.column, t.bits, t.prefix) for t in collect})
        found: list[list[NDArray[np.floating]]] = [[] for _ in groups]
        prefixes = sorted({(t.column, t.bits, t.prefix) for t in refine})
        hists = np.zeros((len(prefixes), 1 << _RADIX_BITS), dtype=np.int64)
        for start, frame in source.batches(read, batch_rows=rows):
            keep = ~split.mask(start, len(frame))
            if target is not None:
                keep &= frame[target].notna().to_numpy()
            whole = [
                j
                for j in range(len(columns))
                if not any(t.column == j for t in refine)
                and not any(g[0] == j and g[1] for g in groups)
            ]
            # Columns whose every value is wanted (no prefix known yet): no sort keys. Data
            # in memory is one batch: each column is settled at once and not kept.
            for j, x in _training_values(frame, columns, whole, keep, start):
                for i, (column, _, _) in enumerate(groups):
                    if column != j:
                        continue
                    if rows is None:
                        members = [t for t in collect if t.column == j]
                        ranks = [t.rank for t in members]
                        for t, value in zip(members, _select(x, ranks), strict=True):
                            t.value = value
                    else:
                        found[i].append(x)
            for j, (name, role) in enumerate(columns):
                if j in whole:
                    continue
                values = _values(name, frame[name], role, start)
                x = values[keep & ~np.isnan(values)].astype(np.float64, copy=False)
                keys = _sort_keys(x)
                for i, (column, bits, prefix) in enumerate(groups):
                    if column == j:
                        found[i].append(x[_Target(j, 0, 0, 0, prefix, bits).matches(keys)])
                for i, (column, bits, prefix) in enumerate(prefixes):
                    if column == j:
                        sel = keys[_Target(j, 0, 0, 0, prefix, bits).matches(keys)]
                        shift = np.uint64(64 - bits - _RADIX_BITS)
                        digits = (sel >> shift) & np.uint64((1 << _RADIX_BITS) - 1)
                        hists[i] += np.bincount(digits.astype(np.int64), minlength=1 << _RADIX_BITS)
        collected = [
            f[0] if len(f) == 1 else np.concatenate(f) if f else np.zeros(0) for f in found
        ]
        if context is not None:
            hists = context.all_reduce_sum(hists)
            gathered = context.all_gather_object(collected)
            collected = [np.concatenate([g[i] for g in gathered]) for i in range(len(groups))]
        for (column, bits, prefix), v in zip(groups, collected, strict=True):
            members = [
                t
                for t in collect
                if (t.column, t.bits, t.prefix) == (column, bits, prefix) and t.value is None
            ]
            if members:
                for t, value in zip(members, _select(v, [t.rank for t in members]), strict=True):
                    t.value = value
        for t in refine:
            hist = hists[prefixes.index((t.column, t.bits, t.prefix))]
            below = np.cumsum(hist)
            digit = int(np.searchsorted(below, t.rank, side="right"))
            t.rank -= int(below[digit - 1]) if digit else 0
            t.count = int(hist[digit])
            t.prefix = (t.prefix << _RADIX_BITS) | digit
            t.bits += _RADIX_BITS
    out = np.zeros((len(columns), len(probabilities)), dtype=np.float64)
    for j, n in enumerate(counts):
        ordered = {t.origin: float(t.value or 0.0) for t in targets if t.column == j}
        for k, p in enumerate(probabilities):
            out[j, k] = _quantile(ordered, int(n), p) if n else 0.0
    return out


def _select(values: NDArray[np.floating], ranks: Sequence[int]) -> list[float]:
    """The values of the given 0-based ranks in sorted order, reordering ``values`` in place.

    One partition per rank, largest first, each of the prefix the previous one left
    (everything below a partitioned rank is smaller): much faster than numpy's
    several-rank partition for close ranks, such as the two middle values of a median.
    """
    found: dict[int, float] = {}
    bound = len(values)
    for rank in sorted(set(ranks), reverse=True):
        part = values[:bound]
        part.partition(rank)
        found[rank] = float(part[rank])
        bound = rank
    return [found[r] for r in ranks]


#: Float columns gathered together (bounds the copy: rows x this many columns at a time).
_GATHER_COLUMNS = 4


def _training_values(
    frame: Any,
    columns: Sequence[tuple[str, str]],
    wanted: Sequence[int],
    keep: NDArray[np.bool_],
    start: int,
) -> Iterator[tuple[int, NDArray[np.floating]]]:
    """Each wanted column's training values, without missing ones, as its own array.

    Float columns of one dtype are taken a few at a time: the training rows gathered once,
    then laid out column by column (a frame built on a row-major array reads each column
    with a stride; two sequential passes beat a strided gather per column).
    """
    blocks: dict[Any, list[int]] = {}
    for j in wanted:
        name, role = columns[j]
        dtype = frame[name].dtype
        if role == "numeric" and isinstance(dtype, np.dtype) and dtype.kind == "f":
            blocks.setdefault(dtype, []).append(j)
        else:
            values = column_values_at(name, frame[name], role, start)
            yield j, values[keep & ~np.isnan(values)]
    index = np.flatnonzero(keep)
    for group in blocks.values():
        for first in range(0, len(group), _GATHER_COLUMNS):
            part = group[first : first + _GATHER_COLUMNS]
            block = frame[[columns[j][0] for j in part]].to_numpy()
            by_column = np.ascontiguousarray(block[index].T)
            for row, j in zip(by_column, part, strict=True):
                gaps = np.isnan(row)
                yield j, (row[~gaps] if gaps.any() else row)


def _values(name: str, series: Any, role: str, start: int) -> NDArray[np.floating]:
    """The column's numbers: a float column as it is (float32 stays float32: the order,
    and the middle values, are the same in float64), any other through its role."""
    dtype = series.dtype
    if role == "numeric" and isinstance(dtype, np.dtype) and dtype.kind == "f":
        return np.asarray(series.to_numpy())
    return column_values_at(name, series, role, start)


def _read_rows(source: Source, columns: Sequence[str], budget: int) -> int | None:
    from ..io.sources import FrameSource, read_rows_for_budget

    if isinstance(source, FrameSource):
        return None
    return read_rows_for_budget(source.row_bytes(columns), budget)

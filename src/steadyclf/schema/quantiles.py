"""Exact order statistics (medians, quantiles) of columns read in passes.

Values are ordered by their float64 bit patterns, turned into unsigned keys. Each pass
over the source either counts the next 16 bits of the values that share the known prefix
of a wanted order statistic (a histogram, merged across processes), or, once few enough
values share that prefix, collects them and selects the exact one. A table in memory, or
data whose values fit the budget, is settled in the first pass; larger data in two or
three. Histograms are summed and collected values gathered across processes, so every
process finds the same values, equal to ``np.nanquantile`` / ``np.nanmedian`` on all rows.

With row weights, a row of weight ``w`` counts as ``w / unit`` rows (``unit``: the
smallest weight, so that the result does not depend on the weights' scale): histograms
sum weights instead of counting rows, and an order statistic is the value at a position
of that repeated sequence. Integer weights whose smallest is 1 thus give exactly the
quantiles of the rows repeated that many times (scikit-learn's meaning of a weight), and
equal weights the unweighted ones.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..io.sources import rows_per_read
from .split import SplitRule
from .values import column_values_at

if TYPE_CHECKING:
    from ..io.sources import Source
    from ..parallel import DistributedContext

__all__ = ["Weighting", "collect_limit", "exact_quantiles", "order_ranks"]

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
    rank: float  # within the values that share the prefix (a row count, or a weight)
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


def order_ranks(n: float, probabilities: Sequence[float]) -> list[int]:
    """The 0-based ranks ``np.quantile`` (linear) interpolates between, for ``n`` values
    (``n`` may be a sum of weights: the length of the repeated sequence)."""
    ranks: set[int] = set()
    for p in probabilities:
        h = (n - 1) * p
        ranks.update({int(np.floor(h)), int(np.ceil(h))})
    return sorted(r for r in ranks if 0 <= r < n)


def _quantile(sorted_values: dict[int, float], n: float, p: float) -> float:
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
    counts: Sequence[float],
    probabilities: Sequence[float],
    split: SplitRule,
    *,
    budget: int | None,
    target: str | None = None,
    context: DistributedContext | None = None,
    weight: Weighting | None = None,
) -> NDArray[np.float64]:
    """Quantiles ``probabilities`` of each ``(column, role)`` over the training rows.

    ``counts`` gives each column's number of present training values (from the summary);
    ``target``, when given, is read too and rows where it is missing are skipped (they
    were dropped). ``budget`` bounds the values collected at once (``None``: no bound, for
    data in memory). Returns an array of shape ``(len(columns), len(probabilities))``;
    a column without values gets 0.

    ``weight`` names the weight column: rows of weight 0 are skipped and, if
    ``weight.weighted``, the others weighted (see the module docstring); ``counts`` are
    then the sums of the weights (in units of ``weight.unit``) of each column's present
    training values, and ``weight.rows`` the number of those values, which sizes what is
    collected.
    """
    weighted = weight is not None and weight.weighted
    sizes = weight.rows if weight is not None and weighted else counts
    targets = [
        _Target(j, rank, int(sizes[j]), rank)
        for j, n in enumerate(counts)
        for rank in order_ranks(n if weighted else int(n), probabilities)
    ]
    limit = None if budget is None else collect_limit(budget, len(targets))
    names = [name for name, _ in columns]
    extra = [c for c in (target, None if weight is None else weight.column) if c is not None]
    read = [*names, *[c for c in extra if c not in names]]
    rows = None if budget is None else rows_per_read(source, read, budget)
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
        found_w: list[list[NDArray[np.float64]]] = [[] for _ in groups]
        hists = np.zeros((len(prefixes), 1 << _RADIX_BITS), dtype=np.int64)
        masses = np.zeros(hists.shape if weighted else (0, 0))
        # Indexes by column and by prefix: every loop below is linear in the columns (a
        # table of 1,500 columns spent seconds in scans of every target for each column).
        groups_of = _positions_by(g[0] for g in groups)
        prefixes_of = _positions_by(p[0] for p in prefixes)
        collect_of = _positions_by(t.column for t in collect)
        # Columns whose every value is wanted (no prefix known yet): no sort keys.
        unsettled = {t.column for t in refine} | {g[0] for g in groups if g[1]}
        whole = [j for j in range(len(columns)) if j not in unsettled]
        partial = [j for j in range(len(columns)) if j in unsettled]
        for start, frame in source.batches(read, batch_rows=rows):
            keep = ~split.mask(start, len(frame))
            if target is not None:
                keep &= frame[target].notna().to_numpy()
            w = None
            if weight is not None:
                w = weight.of(frame)
                keep &= w > 0
                w = w if weighted else None
            # Data in memory is one batch: each whole column is settled at once, not kept.
            for j, x, xw in _training_values(frame, columns, whole, keep, start, w):
                for i in groups_of.get(j, ()):
                    if rows is None:
                        members = [collect[m] for m in collect_of.get(j, ())]
                        ranks = [t.rank for t in members]
                        for t, value in zip(members, _select(x, ranks, xw), strict=True):
                            t.value = value
                    else:
                        found[i].append(x)
                        if xw is not None:
                            found_w[i].append(xw)
            for j in partial:
                name, role = columns[j]
                values = _values(name, frame[name], role, start)
                present = keep & ~np.isnan(values)
                x = values[present].astype(np.float64, copy=False)
                xw = None if w is None else w[present]
                keys = _sort_keys(x)
                for i in groups_of.get(j, ()):
                    _, bits, prefix = groups[i]
                    match = _Target(j, 0, 0, 0, prefix, bits).matches(keys)
                    found[i].append(x[match])
                    if xw is not None:
                        found_w[i].append(xw[match])
                for i in prefixes_of.get(j, ()):
                    _, bits, prefix = prefixes[i]
                    match = _Target(j, 0, 0, 0, prefix, bits).matches(keys)
                    shift = np.uint64(64 - bits - _RADIX_BITS)
                    digits = ((keys[match] >> shift) & np.uint64((1 << _RADIX_BITS) - 1)).astype(
                        np.int64
                    )
                    hists[i] += np.bincount(digits, minlength=1 << _RADIX_BITS)
                    if xw is not None:
                        masses[i] += np.bincount(
                            digits, weights=xw[match], minlength=1 << _RADIX_BITS
                        )
        collected = [_joined(f) for f in found]
        collected_w = [_joined(f) for f in found_w] if weighted else None
        if context is not None:
            hists = context.all_reduce_sum(hists)
            if weighted:
                masses = context.all_reduce_sum(masses)
            gathered = context.all_gather_object((collected, collected_w))
            collected = [np.concatenate([g[0][i] for g in gathered]) for i in range(len(groups))]
            if weighted:
                collected_w = [
                    np.concatenate([g[1][i] for g in gathered]) for i in range(len(groups))
                ]
        of_group = _positions_by((t.column, t.bits, t.prefix) for t in collect)
        for i, (group, v) in enumerate(zip(groups, collected, strict=True)):
            members = [t for t in (collect[m] for m in of_group[group]) if t.value is None]
            if members:
                vw = None if collected_w is None else collected_w[i]
                selected = _select(v, [t.rank for t in members], vw)
                for t, value in zip(members, selected, strict=True):
                    t.value = value
        prefix_index = {prefix: i for i, prefix in enumerate(prefixes)}
        for t in refine:
            i = prefix_index[(t.column, t.bits, t.prefix)]
            hist = hists[i]
            mass = masses[i] if weighted else hist
            below = np.cumsum(mass)
            digit = int(np.searchsorted(below, t.rank, side="right"))
            # A sum of weights may round below the rank sought: the last bucket with rows.
            digit = min(digit, int(np.flatnonzero(hist)[-1]))
            if digit:  # ranks count rows, or units of weight
                t.rank -= float(below[digit - 1]) if weighted else int(below[digit - 1])
            t.count = int(hist[digit])
            t.prefix = (t.prefix << _RADIX_BITS) | digit
            t.bits += _RADIX_BITS
    out = np.zeros((len(columns), len(probabilities)), dtype=np.float64)
    of_column = _positions_by(t.column for t in targets)
    for j, n in enumerate(counts):
        ordered = {
            t.origin: float(t.value or 0.0) for t in (targets[m] for m in of_column.get(j, ()))
        }
        for k, p in enumerate(probabilities):
            length = n if weighted else int(n)
            out[j, k] = _quantile(ordered, length, p) if n else 0.0
    return out


@dataclass(frozen=True)
class Weighting:
    """The rows' weights for :func:`exact_quantiles`: the column, the unit (a row of
    weight ``unit`` counts as one row) and, per column, how many values there are;
    ``weighted`` false: the column only leaves out the rows of weight 0."""

    column: str
    unit: float
    rows: Sequence[int]
    weighted: bool = True

    def of(self, frame: Any) -> NDArray[np.float64]:
        """The rows' weights in units (0 where the row is left out: no label, weight 0)."""
        values = np.asarray(pd.to_numeric(frame[self.column], errors="coerce"), dtype=np.float64)
        return np.where(np.isfinite(values) & (values > 0), values / self.unit, 0.0)


def _positions_by(keys: Iterable[Hashable]) -> dict[Hashable, list[int]]:
    """The positions of each key in ``keys``, in order."""
    out: dict[Hashable, list[int]] = {}
    for position, key in enumerate(keys):
        out.setdefault(key, []).append(position)
    return out


def _joined(parts: list[NDArray[Any]]) -> NDArray[Any]:
    return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0)


def _select(
    values: NDArray[np.floating],
    ranks: Sequence[float],
    weights: NDArray[np.float64] | None = None,
) -> list[float]:
    """The values of the given 0-based ranks in sorted order, reordering ``values`` in place.

    One partition per rank, largest first, each of the prefix the previous one left
    (everything below a partitioned rank is smaller): much faster than numpy's
    several-rank partition for close ranks, such as the two middle values of a median.
    With ``weights``, a value of weight ``w`` takes ``w`` ranks: the values are sorted and
    the rank ``r`` is the first value whose cumulative weight exceeds ``r``.
    """
    if weights is not None:
        order = np.argsort(values, kind="stable")
        cumulative = np.cumsum(weights[order])
        at = np.searchsorted(cumulative, np.asarray(ranks, dtype=np.float64), side="right")
        at = np.minimum(at, len(values) - 1)
        return [float(values[order[i]]) for i in at]
    found: dict[int, float] = {}
    bound = len(values)
    for rank in sorted({int(r) for r in ranks}, reverse=True):
        part = values[:bound]
        part.partition(rank)
        found[rank] = float(part[rank])
        bound = rank
    return [found[int(r)] for r in ranks]


#: Float columns gathered together (bounds the copy: rows x this many columns at a time).
_GATHER_COLUMNS = 4


def _training_values(
    frame: Any,
    columns: Sequence[tuple[str, str]],
    wanted: Sequence[int],
    keep: NDArray[np.bool_],
    start: int,
    weights: NDArray[np.float64] | None = None,
) -> Iterator[tuple[int, NDArray[np.floating], NDArray[np.float64] | None]]:
    """Each wanted column's training values, without missing ones, as its own array, with
    their rows' weights (``None`` without ``weights``).

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
            present = keep & ~np.isnan(values)
            yield j, values[present], None if weights is None else weights[present]
    index = np.flatnonzero(keep)
    kept_w = None if weights is None else weights[index]
    for group in blocks.values():
        for first in range(0, len(group), _GATHER_COLUMNS):
            part = group[first : first + _GATHER_COLUMNS]
            block = frame[[columns[j][0] for j in part]].to_numpy()
            by_column = np.ascontiguousarray(block[index].T)
            for row, j in zip(by_column, part, strict=True):
                gaps = np.isnan(row)
                if not gaps.any():
                    yield j, row, kept_w
                else:
                    yield j, row[~gaps], None if kept_w is None else kept_w[~gaps]


def _values(name: str, series: Any, role: str, start: int) -> NDArray[np.floating]:
    """The column's numbers: a float column as it is (float32 stays float32: the order,
    and the middle values, are the same in float64), any other through its role."""
    dtype = series.dtype
    if role == "numeric" and isinstance(dtype, np.dtype) and dtype.kind == "f":
        return np.asarray(series.to_numpy())
    return column_values_at(name, series, role, start)

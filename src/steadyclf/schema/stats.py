"""Standardisation statistics that can be computed in chunks and merged.

The statistics are accumulated in float64 with the pairwise update of Chan, Golub and
LeVeque, so they can come from one array, from chunks of a file read one after the other,
or from several processes whose partial results are merged. Merging is exact up to
floating-point rounding, whatever the order. With row weights, a block's ``count`` is the
sum of the weights and its mean and ``m2`` are weighted; merging is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["RunningStats"]

# A feature whose standard deviation is below this fraction of its magnitude carries no
# usable signal in float64 and is treated as constant (scale 1).
_RELATIVE_CONSTANT_TOL = 1e-12
#: Columns whose largest magnitude is beyond 2**±500 (about 3e150 or 3e-151) keep ``m2``
#: in units of ``4**exponent``: their squares would overflow (or underflow) float64.
_EXPONENT_LIMIT = 500


@dataclass
class RunningStats:
    """Per-column count, mean and sum of squared deviations (``m2``), ignoring NaN.

    Any finite magnitude works: for a column with values beyond about 1e150 (or below
    1e-150) ``m2`` is kept divided by ``4**exponent``, a power of two chosen from the
    data, so ``std`` stays exact where the squares themselves would overflow. For every
    other column ``exponent`` is 0 and ``m2`` is the plain sum.

    Examples
    --------
    >>> import numpy as np
    >>> stats = RunningStats.empty(1)
    >>> stats.update(np.array([[1.0], [2.0]])).update(np.array([[3.0]]))  # doctest: +ELLIPSIS
    RunningStats(...)
    >>> stats.mean, stats.std
    (array([2.]), array([0.81649658]))
    """

    count: NDArray[np.float64]
    mean: NDArray[np.float64]
    m2: NDArray[np.float64]
    n_features: int = field(init=False)
    exponent: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        self.n_features = int(self.mean.shape[0])
        if self.exponent is None:
            self.exponent = np.zeros(self.n_features, dtype=np.float64)

    @classmethod
    def empty(cls, n_features: int) -> RunningStats:
        """Statistics of no rows yet."""
        zeros = np.zeros(n_features, dtype=np.float64)
        return cls(zeros.copy(), zeros.copy(), zeros.copy())

    @classmethod
    def from_array(
        cls,
        x: NDArray[np.floating],
        chunk_rows: int = 1 << 14,
        rows: NDArray[np.integer] | None = None,
    ) -> RunningStats:
        """Statistics of one 2-D block, computed with a two-pass (centred) formula.

        Rows are processed ``chunk_rows`` at a time (less memory, cache-sized passes),
        all shifted by the first chunk's mean so that merging the chunks loses nothing
        to the magnitude of the values (a column like ``1e6 + 1e-6 * x`` keeps its std
        to 1e-9 relative). ``rows``, if given, selects the rows of ``x`` to use (indices,
        gathered a chunk at a time: the selection is never copied whole).
        """
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"expected a 2-D array, got shape {x.shape}")
        n = x.shape[0] if rows is None else len(rows)

        def chunk(start: int) -> NDArray[np.floating]:
            stop = start + chunk_rows
            return x[start:stop] if rows is None else x[rows[start:stop]]

        # float32 (or narrower) values are far from 2**+-500: no exponent to look for.
        extreme = not (x.dtype.kind == "f" and x.dtype.itemsize <= 4)
        first = cls._from_block(np.asarray(chunk(0), dtype=np.float64), extreme)
        if n <= chunk_rows:
            return first
        shift = first.mean
        stats = cls._from_block(np.subtract(chunk(0), shift, dtype=np.float64), extreme)
        for start in range(chunk_rows, n, chunk_rows):
            block = np.subtract(chunk(start), shift, dtype=np.float64)
            stats.merge(cls._from_block(block, extreme))
        stats.mean = stats.mean + shift
        return stats

    @classmethod
    def of_block(
        cls,
        x: NDArray[np.float64],
        *,
        extreme: bool = True,
        weights: NDArray[np.float64] | None = None,
    ) -> RunningStats:
        """Statistics of one small block (a cache-sized chunk), in one two-pass step.

        ``extreme=False`` skips the search for magnitudes beyond 2**±500 (values that
        came from float32 or integers cannot reach them). With row ``weights`` (> 0),
        ``count`` is the sum of the weights of the values present and ``mean`` and
        ``m2`` are weighted: a row of weight ``k`` counts as ``k`` rows.
        """
        if weights is not None:
            return cls._weighted(np.asarray(x, dtype=np.float64), weights, extreme)
        return cls._from_block(np.asarray(x, dtype=np.float64), extreme)

    @classmethod
    def _weighted(
        cls, x: NDArray[np.float64], weights: NDArray[np.float64], extreme: bool
    ) -> RunningStats:
        exponent = _exponent(x) if extreme else np.zeros(x.shape[1], dtype=np.int64)
        if exponent.any():
            x = np.ldexp(x, -exponent)
        w = np.asarray(weights, dtype=np.float64)[:, None]
        finite = ~np.isnan(x)
        present = np.where(finite, w, 0.0)
        count = present.sum(axis=0)
        safe = np.maximum(count, 1e-300)
        with np.errstate(invalid="ignore", over="ignore"):
            mean = np.where(count > 0, np.where(finite, x * w, 0.0).sum(axis=0) / safe, 0.0)
            centred = np.where(finite, x - mean, 0.0)
            # The correction step of the unweighted case: the weighted mean of residuals.
            correction = np.where(count > 0, (centred * present).sum(axis=0) / safe, 0.0)
            mean = mean + correction
            centred = np.where(finite, centred - correction, 0.0)
        m2 = np.einsum("ij,ij->j", centred * present, centred)
        return cls(count, np.ldexp(mean, exponent), m2, exponent.astype(np.float64))

    @classmethod
    def _from_block(cls, x: NDArray[np.float64], extreme: bool = True) -> RunningStats:
        exponent = _exponent(x) if extreme else np.zeros(x.shape[1], dtype=np.int64)
        if exponent.any():
            x = np.ldexp(x, -exponent)  # m2 in units of 4**exponent (see the class docstring)
        n = x.shape[0]
        column_sums = x.sum(axis=0)
        if n and not np.isnan(column_sums).any():
            # The common case, nothing missing: no masks, and three passes over the block.
            count = np.full(x.shape[1], float(n))
            mean = column_sums / n
            centred = x - mean
            correction = centred.sum(axis=0) / n
            mean = mean + correction
            # sum((c - d)**2) = sum(c**2) - n * d**2 when d is the mean of c: exact, and
            # no fourth pass to subtract the (rounding-sized) correction first.
            m2 = np.einsum("ij,ij->j", centred, centred) - n * correction**2
            return cls(count, np.ldexp(mean, exponent), m2, exponent.astype(np.float64))
        finite = ~np.isnan(x)
        if finite.all():  # no rows, or an overflowing sum
            count = np.full(x.shape[1], float(n))
            mean = x.mean(axis=0) if n else np.zeros(x.shape[1])
            centred = x - mean
            correction = centred.mean(axis=0) if n else np.zeros(x.shape[1])
            mean = mean + correction
            centred -= correction
        else:
            count = finite.sum(axis=0).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(count > 0, np.nansum(x, axis=0) / np.maximum(count, 1), 0.0)
                centred = np.where(finite, x - mean, 0.0)
                # One correction step: a column sum of values like 1e6 + 1e-6 * x rounds to
                # an error comparable to the spread itself; the mean of the residuals
                # removes it.
                correction = centred.sum(axis=0) / np.maximum(count, 1)
                mean = mean + correction
                centred = np.where(finite, centred - correction, 0.0)
        m2 = np.einsum("ij,ij->j", centred, centred)
        return cls(count, np.ldexp(mean, exponent), m2, exponent.astype(np.float64))

    def update(self, x: NDArray[np.floating]) -> RunningStats:
        """Add a block of rows in place and return ``self``."""
        return self.merge(RunningStats.from_array(x))

    def merge(self, other: RunningStats) -> RunningStats:
        """Merge another partial result into this one in place; return ``self``."""
        if other.n_features != self.n_features:
            raise ValueError(f"cannot merge {other.n_features} columns into {self.n_features}")
        total = self.count + other.count
        safe_total = np.maximum(total, 1.0)
        mine, theirs = self._exponents(), other._exponents()
        # A side without rows has no scale of its own.
        exponent = np.where(
            self.count == 0,
            theirs,
            np.where(other.count == 0, mine, np.maximum(mine, theirs)),
        )
        # Both sides in units of 2**exponent (exact; the identity when exponents are 0).
        delta = np.ldexp(other.mean, -exponent) - np.ldexp(self.mean, -exponent)
        m2_mine = np.ldexp(self.m2, 2 * (mine - exponent))
        m2_theirs = np.ldexp(other.m2, 2 * (theirs - exponent))
        self.mean = self.mean + np.ldexp(delta * (other.count / safe_total), exponent)
        self.m2 = m2_mine + m2_theirs + delta**2 * (self.count * other.count / safe_total)
        self.exponent = exponent.astype(np.float64)
        self.count = total
        return self

    def without(self, part: RunningStats) -> RunningStats:
        """The statistics of these rows minus ``part``'s (a subset of them): Chan's merge
        run backwards. Exact up to rounding relative to ``m2`` when ``part`` is the smaller
        side (as the held-out rows are). Returns a new object."""
        mine, theirs = self._exponents(), part._exponents()
        exponent = np.maximum(mine, theirs)
        rest = self.count - part.count
        safe_rest = np.maximum(rest, 1.0)
        scale = np.ldexp(1.0, -exponent)
        mean_all, mean_part = self.mean * scale, part.mean * scale
        mean = np.where(rest > 0, (self.count * mean_all - part.count * mean_part) / safe_rest, 0.0)
        delta = mean_part - mean
        m2_all = np.ldexp(self.m2, 2 * (mine - exponent))
        m2_part = np.ldexp(part.m2, 2 * (theirs - exponent))
        with np.errstate(invalid="ignore", divide="ignore"):
            cross = delta**2 * part.count * rest / np.maximum(self.count, 1.0)
        m2 = np.where(rest > 0, np.maximum(m2_all - m2_part - cross, 0.0), 0.0)
        return RunningStats(rest, np.ldexp(mean, exponent), m2, exponent.astype(np.float64))

    def _exponents(self) -> NDArray[np.int64]:
        assert self.exponent is not None
        return self.exponent.astype(np.int64)

    @property
    def var(self) -> NDArray[np.float64]:
        """Population variance per column (0 where a column has no value; may be inf)."""
        with np.errstate(over="ignore"):
            return np.ldexp(self._scaled_var(), 2 * self._exponents())

    @property
    def std(self) -> NDArray[np.float64]:
        """Population standard deviation per column."""
        return np.ldexp(np.sqrt(self._scaled_var()), self._exponents())

    def _scaled_var(self) -> NDArray[np.float64]:
        return np.where(self.count > 0, self.m2 / np.maximum(self.count, 1.0), 0.0)

    @property
    def scale(self) -> NDArray[np.float64]:
        """Divisor for standardisation: the std, or 1 for constant columns (never 0/NaN)."""
        std = self.std
        constant = ~np.isfinite(std) | (
            std <= _RELATIVE_CONSTANT_TOL * np.maximum(np.abs(self.mean), 1e-300)
        )
        constant |= std == 0
        return np.where(constant, 1.0, std)

    def as_arrays(self) -> NDArray[np.float64]:
        """Pack as a ``(4, n_features)`` array (count, mean, m2, exponent), e.g. to gather."""
        assert self.exponent is not None
        return np.stack([self.count, self.mean, self.m2, self.exponent])

    @classmethod
    def from_arrays(cls, packed: NDArray[np.float64]) -> RunningStats:
        """Inverse of :meth:`as_arrays` (a 3-row pack has exponent 0)."""
        packed = np.asarray(packed, dtype=np.float64)
        exponent = packed[3].copy() if packed.shape[0] > 3 else None
        return cls(packed[0].copy(), packed[1].copy(), packed[2].copy(), exponent)


def _exponent(x: NDArray[np.float64]) -> NDArray[np.int64]:
    """Per column, the binary exponent of the largest magnitude when it is extreme, else 0."""
    if x.shape[0] == 0:
        return np.zeros(x.shape[1], dtype=np.int64)
    # Two NaN-skipping reductions, no temporary array (an all-NaN column gives NaN: 0).
    high, low = np.fmax.reduce(x, axis=0), np.fmin.reduce(x, axis=0)
    peak = np.fmax(np.abs(high), np.abs(low))
    peak = np.where(np.isnan(peak), 0.0, peak)
    _, exponent = np.frexp(peak)
    extreme = np.abs(exponent) > _EXPONENT_LIMIT
    return np.where(extreme & (peak > 0), exponent, 0).astype(np.int64)

"""Train/validation split decided row by row, so it is the same in every mode.

Each row's side depends only on its global position and the seed, through a 64-bit
mixing hash (SplitMix64's finaliser). In memory, streaming through file chunks, or spread
over several processes, a row at position ``i`` always lands on the same side, so every
mode fits its statistics on exactly the same rows. The labels do not enter the hash, so
each class is held out at the same rate: stratified in expectation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["SplitRule", "row_uniform", "validation_mask"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def row_uniform(positions: NDArray[np.integer], seed: int) -> NDArray[np.float64]:
    """A uniform number in [0, 1) per row position, fixed by ``seed``."""
    with np.errstate(over="ignore"):
        z = positions.astype(np.uint64) + np.uint64(seed & 0xFFFFFFFF) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def validation_mask(
    positions: NDArray[np.integer], fraction: float, seed: int
) -> NDArray[np.bool_]:
    """True for rows held out for validation."""
    return row_uniform(np.asarray(positions), seed) < fraction


@dataclass(frozen=True)
class SplitRule:
    """How rows are split: validation rows are ``row_uniform(position, seed) < fraction``."""

    fraction: float
    seed: int

    def mask(self, start: int, n: int) -> NDArray[np.bool_]:
        """Validation flags of the rows at positions ``start .. start + n - 1``."""
        if self.fraction <= 0:
            return np.zeros(n, dtype=bool)
        return validation_mask(
            np.arange(start, start + n, dtype=np.int64), self.fraction, self.seed
        )

"""Plain JSON values, by one rule for every file and every ``--json`` output.

:func:`to_jsonable` turns what steadyclf reports (dicts of NumPy scalars, tuples, arrays)
into values :func:`json.dumps` writes with ``allow_nan=False``: a number that is not
finite (NaN, inf) becomes ``null`` (a value that does not exist: a metric on one class, a
column without values), never the non-standard ``NaN`` token, never an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: tuples become lists, NumPy scalars Python ones, NaN/inf None;
    an object of another type is recorded by its ``repr``.

    Examples
    --------
    >>> to_jsonable({"auc": np.float64(0.5), "loss": float("nan"), "sizes": (64, 32)})
    {'auc': 0.5, 'loss': None, 'sizes': [64, 32]}
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)  # an object parameter: recorded, not restored

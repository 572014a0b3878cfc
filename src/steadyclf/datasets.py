"""Built-in datasets that reproduce the problem steadyclf exists to solve.

``heart_rate``: one raw feature far from zero (HR ~ N(92, 10)), labelled ``HR >= 91``.
A simple problem that an MLP fed raw inputs fails to learn.

``centred_nonlinear``: two small concentric circles centred at (0, 0). A harder
problem that the same MLP learns, because its inputs already sit near zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import make_circles

__all__ = ["centred_nonlinear", "heart_rate"]


def heart_rate(
    n: int = 1000, random_state: int | None = 0, *, threshold: float = 91.0
) -> tuple[pd.DataFrame, pd.Series]:
    """Heart rates around 92 bpm; the label is whether HR is at least ``threshold``.

    Parameters
    ----------
    n : int
        Number of rows.
    random_state : int or None
        Seed of the generator.
    threshold : float
        Label boundary (91 in the original question).

    Returns
    -------
    X : DataFrame with one column ``HR``
    y : Series of 0/1 named ``target``

    Examples
    --------
    >>> X, y = heart_rate(n=5, random_state=0)
    >>> list(X.columns), X.shape
    (['HR'], (5, 1))
    """
    rng = np.random.default_rng(random_state)
    hr = rng.normal(92.0, 10.0, size=n)
    X = pd.DataFrame({"HR": hr})
    y = pd.Series((hr >= threshold).astype(np.int64), name="target")
    return X, y


def centred_nonlinear(
    n: int = 1000, random_state: int | None = 0, *, noise: float = 0.05, radius: float = 0.5
) -> tuple[pd.DataFrame, pd.Series]:
    """Two concentric circles centred at (0, 0), scaled to a small radius.

    The outer circle has radius ``radius`` and the inner one half of it, so every
    feature has mean about 0 and a standard deviation well below 1.

    Returns
    -------
    X : DataFrame with columns ``x1``, ``x2``
    y : Series of 0/1 (1 = inner circle) named ``target``
    """
    X, y = make_circles(n_samples=n, noise=noise, factor=0.5, random_state=random_state)
    frame = pd.DataFrame(X * radius, columns=["x1", "x2"])
    return frame, pd.Series(y.astype(np.int64), name="target")

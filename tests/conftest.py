"""Shared fixtures: tiny synthetic data with fixed seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from steadyclf.datasets import heart_rate


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    # Tests train many tiny models; one thread avoids oversubscribing the CI machine.
    torch.set_num_threads(1)


@pytest.fixture
def hr_data() -> tuple[pd.DataFrame, pd.Series]:
    return heart_rate(n=400, random_state=0)


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    return X, y

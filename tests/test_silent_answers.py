"""Issue 22, round 3 of "no silent wrong answer": what the model saves and what it
refuses, each with a message that names the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import steadyclf
from steadyclf import BinaryClassifier

FAST = {"hidden": (4,), "max_epochs": 10, "random_state": 0, "weight_decay": 1e-2}
FAST |= {"numeric_embedding": "none", "validation_fraction": 0.2}


def _table(n: int = 120, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x": rng.normal(size=n), "city": rng.choice(["Oslo", "Rome"], size=n)})
    y = (X["x"] + (X["city"] == "Rome") + 0.5 * rng.normal(size=n) > 0.5).astype(int).to_numpy()
    return X, y


# -- item 5: the parameters of the fit are saved, not the current ones ----------------------
def test_set_params_after_fit_saves_the_fitted_parameters(tmp_path: Path) -> None:
    X, y = _table()
    clf = BinaryClassifier(**FAST).fit(X, y)
    before = clf.predict_proba(X)
    clf.set_params(hidden=(8, 8), normalize="standardize", max_epochs=1)
    again = steadyclf.load(clf.save(tmp_path / "model"))
    assert again.get_params()["hidden"] == (4,) and again.normalize == "robust"
    assert again.max_epochs == 10
    np.testing.assert_array_equal(again.predict_proba(X), before)
    assert clf.hidden == (8, 8)  # the estimator keeps what set_params asked for the next fit
    clf.fit(X, y)  # ... and the next fit uses it and saves it
    assert steadyclf.load(clf.save(tmp_path / "next")).hidden == (8, 8)

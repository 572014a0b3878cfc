"""numeric_embedding='periodic': PLR embeddings of the numeric inputs, opt-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import steadyclf
from steadyclf import BinaryClassifier
from steadyclf.cli import main
from steadyclf.exceptions import ParameterError


def _waves(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A label that flips eight times along one column (many thresholds), 10 % noise, a
    0/1 column, a text column and missing values."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    y = ((np.sin(4 * x) > 0) ^ (rng.random(n) < 0.1)).astype(int)
    frame = pd.DataFrame(
        {
            "x": x,
            "flag": rng.random(n) < 0.5,
            "z": rng.normal(size=n),
            "c": rng.choice(["u", "v"], n),
        }
    )
    frame.loc[rng.choice(n, 50, replace=False), "z"] = np.nan
    return frame, y


def test_periodic_embeddings_learn_a_column_of_many_thresholds() -> None:
    X, y = _waves(3000, seed=0)
    train, test = slice(0, 2000), slice(2000, None)
    plain = BinaryClassifier(random_state=0).fit(X[train], y[train])
    embedded = BinaryClassifier(random_state=0, numeric_embedding="periodic").fit(
        X[train], y[train]
    )
    # Every numeric input but the boolean one is embedded.
    assert embedded.module_.arch.periodic == (0, 2) and plain.module_.arch.periodic == ()
    auc_plain = roc_auc_score(y[test], plain.predict_proba(X[test])[:, 1])
    auc_embedded = roc_auc_score(y[test], embedded.predict_proba(X[test])[:, 1])
    # Measured 0.70 and 0.91: the plain 64-unit network cannot bend eight times in a
    # few hundred full-batch steps; the embeddings give it the waves directly.
    assert auc_embedded > 0.85 and auc_embedded > auc_plain + 0.1


def test_an_embedded_model_predicts_the_same_everywhere(tmp_path: Path) -> None:
    X, y = _waves(1200, seed=1)
    clf = BinaryClassifier(random_state=0, numeric_embedding="periodic").fit(X, y)
    x_num, x_cat = clf._raw_inputs(X, reset=False)
    with torch.no_grad():
        torch_logits = clf.module_(torch.from_numpy(x_num), torch.from_numpy(x_cat)).double()
    raw = clf._logits(x_num, x_cat)  # the NumPy forward pass predictions go through
    # The fitted module computes in float32 (cos and sin of arguments up to about 20
    # radians: absolute errors near 1e-6), the NumPy pass in float64; parity at float64
    # precision is tests/test_numpy_forward.py's, on the same weights in float64.
    np.testing.assert_allclose(raw, torch_logits.numpy(), rtol=0, atol=1e-4)
    assert np.ptp(raw) > 1.0  # logits that differ, so the comparison means something
    loaded = steadyclf.load(clf.save(tmp_path / "model"))
    assert loaded.get_params()["numeric_embedding"] == "periodic"
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("normalize", ["batchnorm", "none"])
def test_embeddings_need_scaled_inputs(normalize: str, capsys: pytest.CaptureFixture[str]) -> None:
    X, y = _waves(100, seed=2)
    with pytest.raises(ParameterError, match="numeric_embedding='periodic' embeds scaled"):
        BinaryClassifier(numeric_embedding="periodic", normalize=normalize).fit(X, y)
    code = main(
        [
            "train",
            "x.csv",
            "--target",
            "y",
            "--out",
            "m",
            "--numeric-embedding",
            "periodic",
            "--normalize",
            normalize,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "needs normalize 'robust' or 'standardize'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

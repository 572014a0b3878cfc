"""File prediction as a library function (steadyclf.predict_file), the one the command
line's ``predict`` runs: bounded batches, the same numbers as the model in memory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import steadyclf
from steadyclf import BinaryClassifier, DataError
from steadyclf.datasets import heart_rate
from steadyclf.io.jsonable import to_jsonable


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    X, y = heart_rate(n=300, random_state=1)
    root = tmp_path_factory.mktemp("predict_file")
    model = BinaryClassifier(max_epochs=5, hidden=(8,)).fit(X, y).save(root / "model")
    X.assign(row=[f"r{i:03d}" for i in range(len(X))]).to_csv(root / "rows.csv", index=False)
    return model, X


def test_predictions_written_in_small_batches_match_the_model(
    saved: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    model, X = saved
    out = tmp_path / "pred.parquet"
    # 20 kB: the rows are read in several batches.
    done = steadyclf.predict_file(
        model, model.parent / "rows.csv", out, memory_budget="20kB", id_column="row"
    )
    written = pd.read_parquet(out)
    assert done.n_rows == len(X) and list(written.columns) == ["row", "probability", "label"]
    assert written["row"].tolist() == [f"r{i:03d}" for i in range(len(X))]
    expected = steadyclf.load(model).predict_proba(X)[:, 1]
    # Same float64 NumPy forward pass on the same rows: batching changes no bit.
    np.testing.assert_array_equal(written["probability"].to_numpy(), expected)
    assert done.ignored == [] and done.predictions is None


def test_bad_input_is_one_clear_error(saved: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    model, _ = saved
    with pytest.raises(DataError, match="id column 'nope' is not in the data"):
        steadyclf.predict_file(
            model, model.parent / "rows.csv", tmp_path / "p.csv", id_column="nope"
        )
    with pytest.raises(DataError, match="threshold must be between 0 and 1"):
        steadyclf.predict_file(model, model.parent / "rows.csv", threshold=1.5)
    assert not list(tmp_path.iterdir())  # no half-written output


def test_one_rule_for_numbers_json_cannot_hold() -> None:
    value = {"auc": np.float64("nan"), "loss": math.inf, "n": np.int64(3), "sizes": (1, 2)}
    assert to_jsonable(value) == {"auc": None, "loss": None, "n": 3, "sizes": [1, 2]}
    json.dumps(to_jsonable(value), allow_nan=False)

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from steadyclf import BinaryClassifier, ParameterError
from steadyclf.datasets import heart_rate
from steadyclf.demo import SETUPS, TARGET_LOSS, run_demo, write_demo


@pytest.fixture(scope="module")
def result():  # type: ignore[no-untyped-def]
    return run_demo(iterations=40, n_rows=200)


def test_every_setup_runs_on_both_datasets(result) -> None:  # type: ignore[no-untyped-def]
    assert [(r.dataset, r.setup) for r in result.rows] == [
        (d, s.key) for d in ("heart-rate", "centred-nonlinear") for s in SETUPS
    ]
    assert set(result.headlines) == {"heart-rate", "centred-nonlinear"}
    assert "HR sits far from zero" in result.headlines["heart-rate"]


@pytest.mark.parametrize("key", ["standardize", "defaults", "original"])
def test_numbers_come_from_the_runs(result, key: str) -> None:  # type: ignore[no-untyped-def]
    # The same set-up trained here, through the estimator, gives the row's numbers.
    setup = next(s for s in SETUPS if s.key == key)
    X, y = heart_rate(n=200, random_state=0)
    X_test, y_test = heart_rate(n=200, random_state=1)
    params = {"max_epochs": 40, **setup.params}
    clf = BinaryClassifier(random_state=0, **params).fit(X, y)
    losses = np.array([r["train_loss"] for r in clf.history_ if r.get("member", 0) == 0])
    row = next(r for r in result.rows if (r.dataset, r.setup) == ("heart-rate", key))
    assert row.iterations_run == losses.size
    below = np.flatnonzero(losses < TARGET_LOSS)
    assert row.iterations_to_target == (int(below[0]) + 1 if below.size else None)
    assert row.final_loss == losses[-1]
    assert row.test_accuracy == accuracy_score(y_test, clf.predict(X_test))
    if setup.fixed_budget:
        assert row.iterations_run == 40  # fixed budget, no early stopping


def test_the_original_problem_is_reproduced(result) -> None:  # type: ignore[no-untyped-def]
    rows = {(r.dataset, r.setup): r for r in result.rows}
    original = rows["heart-rate", "original"]
    defaults = rows["heart-rate", "defaults"]
    assert original.iterations_to_target is None and original.final_loss > 0.5
    assert "inputs not normalised: feature HR" in original.finding
    assert defaults.iterations_to_target is not None and defaults.iterations_to_target <= 20
    assert defaults.finding == "no warning"
    assert defaults.train_accuracy > 0.97


def test_write_demo_writes_figure_table_and_json(result, tmp_path) -> None:  # type: ignore[no-untyped-def]
    paths = write_demo(result, tmp_path / "out")
    assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = paths["table"].read_text()
    assert "| heart-rate | raw inputs, sigmoid, Adam lr 1e-3 | never |" in table
    data = json.loads(paths["json"].read_text())
    assert len(data["rows"]) == 10 and data["iterations"] == 40
    assert data["rows"][0]["losses"] == result.rows[0].losses
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "demo.json",
        "demo.md",
        "demo.png",
    ]


def test_table_marks_early_stops(result) -> None:  # type: ignore[no-untyped-def]
    table = result.table()
    assert table.count("\n") == 11  # header, rule, ten rows
    stopped = [r for r in result.rows if r.iterations_run < 40]
    for row in stopped:
        assert f"(stopped at {row.iterations_run})" in table


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ParameterError, match="iterations"):
        run_demo(iterations=0)
    with pytest.raises(ParameterError, match="unknown dataset"):
        run_demo(iterations=5, n_rows=50, datasets=["iris"])

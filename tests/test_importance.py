"""Which columns matter: permutation importance per raw column, from Python and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import steadyclf
from steadyclf import BinaryClassifier, DataError, ParameterError
from steadyclf.cli import main
from steadyclf.evaluation import log_loss
from steadyclf.importance import permutations
from steadyclf.io.jsonable import to_jsonable
from steadyclf.nn.shuffles import ColumnShuffles


def _noise_and_one_signal(n: int, seed: int, signal: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Numeric and categorical noise columns; the label depends on ``signal`` only."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "n1": rng.normal(size=n),
            "n2": rng.normal(50.0, 10.0, size=n),
            "c1": rng.choice(["a", "b", "c", "d"], size=n),
            "c2": rng.choice(["x", "y"], size=n),
            "n3": rng.lognormal(size=n),
            "signal_num": rng.normal(size=n),
            "signal_cat": rng.choice(["low", "mid", "high", "top"], size=n),
        }
    )
    if signal == "signal_num":
        logit = 2.5 * frame["signal_num"].to_numpy()
        frame = frame.drop(columns="signal_cat")
    else:
        effect = {"low": -2.5, "mid": -0.8, "high": 0.8, "top": 2.5}
        logit = frame["signal_cat"].map(effect).to_numpy()
        frame = frame.drop(columns="signal_num")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, y


@pytest.mark.parametrize("signal", ["signal_num", "signal_cat"])
def test_the_informative_column_ranks_first(signal: str) -> None:
    X, y = _noise_and_one_signal(1_500, 0, signal)
    clf = BinaryClassifier(random_state=0, hidden=(16,)).fit(X[:1000], y[:1000])
    found = steadyclf.explain(clf, X[1000:], y[1000:], n_repeats=5)
    ranked = [c.column for c in found.columns]
    assert ranked[0] == signal
    top, rest = found.columns[0], found.columns[1:]
    assert top.low > 0.1  # clearly above zero
    assert all(c.importance < top.low for c in rest)
    assert all(c.low <= c.importance <= c.high for c in found.columns)
    assert [c.rank for c in found.columns] == list(range(1, len(found.columns) + 1))
    assert found.n_rows == 500 and found.n_repeats == 5 and found.scoring == "roc_auc"
    frame = found.to_frame()
    assert list(frame["column"]) == ranked
    text = str(found)
    assert text.splitlines()[2].split()[1] == signal  # the table starts with it


def test_a_categorical_moves_as_one_column_and_log_loss_scoring() -> None:
    X, y = _noise_and_one_signal(1_500, 1, "signal_cat")
    clf = BinaryClassifier(random_state=0, hidden=(16,)).fit(X[:1000], y[:1000])
    found = steadyclf.explain(clf, X[1000:], y[1000:], scoring="log_loss", n_repeats=3)
    # One entry per raw column (not per one-hot input), the categorical first.
    assert sorted(c.column for c in found.columns) == sorted(X.columns)
    assert found.columns[0].column == "signal_cat" and found.columns[0].role == "categorical"
    assert found.columns[0].importance > 0.1  # log loss rises
    expected = log_loss(y[1000:], clf.predict_proba(X[1000:])[:, 1])
    assert found.baseline == pytest.approx(expected, rel=1e-12)


def test_columns_the_model_dropped_are_listed_apart_and_arrays_work() -> None:
    X, y = _noise_and_one_signal(900, 2, "signal_num")
    X = X.assign(row_id=[f"r{i}" for i in range(len(X))], constant=1.0)
    clf = BinaryClassifier(random_state=0, hidden=(8,)).fit(X[:600], y[:600])
    found = steadyclf.explain(clf, X[600:], y[600:], n_repeats=2, max_rows=200)
    assert found.unused == ["row_id", "constant"]
    assert "row_id" not in [c.column for c in found.columns] and found.n_rows == 200
    assert "not used by the model (dropped in training): row_id, constant" in str(found)
    numeric = X[["n1", "signal_num"]].to_numpy()
    clf = BinaryClassifier(random_state=0, hidden=(8,)).fit(numeric[:600], y[:600])
    found = steadyclf.explain(clf, numeric[600:], y[600:], n_repeats=2)
    assert found.columns[0].column == "x1"
    # One shuffle per column has no spread: no interval, not one of width 0.
    once = steadyclf.explain(clf, numeric[600:], y[600:], n_repeats=1)
    assert all(np.isnan([c.std, c.low, c.high]).all() for c in once.columns)
    assert "1 repeat;" in str(once) and str(once).count("n/a (one repeat)") == 2
    assert [c["low"] for c in to_jsonable(once.to_dict())["columns"]] == [None, None]


def test_bad_input_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    X, y = _noise_and_one_signal(400, 3, "signal_num")
    clf = BinaryClassifier(random_state=0, hidden=(4,), max_epochs=5).fit(X, y)
    with pytest.raises(ParameterError, match="scoring"):
        steadyclf.explain(clf, X, y, scoring="accuracy")
    with pytest.raises(ParameterError, match="n_repeats"):
        steadyclf.explain(clf, X, y, n_repeats=0)
    with pytest.raises(DataError, match="both classes"):
        steadyclf.explain(clf, X[y == 1], y[y == 1])
    with pytest.raises(DataError, match="not classes of the model"):
        steadyclf.explain(clf, X, np.where(y == 1, "yes", "no"))
    with pytest.raises(steadyclf.SchemaError, match="missing column 'n1'"):
        steadyclf.explain(clf, X.drop(columns="n1"), y)
    with pytest.raises(steadyclf.NotFittedError):
        steadyclf.explain(BinaryClassifier(), X, y)


def test_progress_bar_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    X, y = _noise_and_one_signal(400, 4, "signal_num")
    clf = BinaryClassifier(random_state=0, hidden=(4,), max_epochs=5).fit(X, y)
    steadyclf.explain(clf, X, y, n_repeats=2, progress=True)
    assert "permutation importance" in capsys.readouterr().err
    steadyclf.explain(clf, X, y, n_repeats=2)  # not a terminal: no bar
    assert capsys.readouterr().err == ""


def test_cli_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X, y = _noise_and_one_signal(1_200, 5, "signal_num")
    data = X.assign(label=np.where(y == 1, "yes", "no"))
    data[:800].to_csv(tmp_path / "train.csv", index=False)
    data[800:].to_csv(tmp_path / "test.csv", index=False)
    model = tmp_path / "model"
    assert main(["train", str(tmp_path / "train.csv"), "--target", "label", "--out", str(model),
                 "--hidden", "16", "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    code = main(["explain", str(model), str(tmp_path / "test.csv"), "--repeats", "3"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("column importance: drop in ROC AUC when the column is shuffled")
    assert lines[2].split()[:2] == ["1", "signal_num"]
    code = main(["explain", str(model), str(tmp_path / "test.csv"), "--json", "--target", "label"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["columns"][0]["column"] == "signal_num"
    assert summary["n_repeats"] == 5 and summary["target"] == "label"
    code = main(["explain", str(model), str(tmp_path / "test.csv"), "--repeats", "0"])
    assert code == 2 and "--repeats must be a positive integer" in capsys.readouterr().err


def _score(clf: BinaryClassifier, frame: pd.DataFrame, truth: np.ndarray, scoring: str) -> float:
    """The score explain measures, from the table itself: predict_proba of the positive class."""
    p = clf.predict_proba(frame)[:, clf.classes_.tolist().index(clf.positive_class_)]
    return float(roc_auc_score(truth, p)) if scoring == "roc_auc" else -log_loss(truth, p)


@pytest.mark.parametrize(
    ("names", "embedding"),
    [(None, "none"), (("event", "none"), "none"), (None, "periodic")],
    ids=["0-1", "strings", "periodic"],
)
def test_shuffling_encoded_inputs_equals_shuffling_the_raw_columns(
    names: tuple[str, str] | None, embedding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """explain encodes the rows once and shuffles a column's encoded inputs (its value, its
    codes, its target-statistics code), updating the first layers by that column's inputs
    only (its features, its periodic embedding); that must score as shuffling the raw
    column and predicting the table again, for every kind of column. (Differences: a few
    ulps of the logits.)"""
    fast = []
    shuffled_logits = ColumnShuffles.logits

    def counted(self: ColumnShuffles, columns: Any, order: Any) -> Any:
        fast.append(len(columns))
        return shuffled_logits(self, columns, order)

    monkeypatch.setattr(ColumnShuffles, "logits", counted)
    rng = np.random.default_rng(5)
    n = 700
    X = pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "gaps": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),  # indicator
            "cat": rng.choice(["a", "b", "c"], size=n),
            "many": rng.choice([f"l{i}" for i in range(300)], size=n),  # target statistics
            "code": rng.integers(0, 12, size=n),  # an integer that may be read as codes too
        }
    )
    logit = X["num"] + (X["cat"] == "a") + 0.2 * X["code"] - 1 + np.nan_to_num(X["gaps"])
    events = rng.random(n) < 1 / (1 + np.exp(-logit))
    y = events.astype(int) if names is None else np.where(events, *names)
    params = dict(random_state=0, hidden=(16,), max_epochs=30, numeric_embedding=embedding)
    clf = BinaryClassifier(**params).fit(X[:500], y[:500])
    assert clf.encoder_.target_columns  # 'many' enters by target statistics
    rows, labels = X[500:].reset_index(drop=True), y[500:]
    truth = (labels == clf.positive_class_).astype(int)
    used = [c.name for c in clf.encoder_.columns_ if c.role != "dropped"]
    seed = int(np.random.default_rng(3).integers(0, 2**31 - 1))  # as explain draws it
    for scoring in ("roc_auc", "log_loss"):
        found = steadyclf.explain(clf, rows, labels, scoring=scoring, n_repeats=2, random_state=3)
        baseline = _score(clf, rows, truth, scoring)
        by_name = {c.column: c for c in found.columns}
        for j, name in enumerate(used):
            drops = []
            for order in permutations(len(rows), 2, seed, j):
                shuffled = rows.copy()
                shuffled[name] = rows[name].to_numpy()[order]
                drops.append(baseline - _score(clf, shuffled, truth, scoring))
            assert by_name[name].importance == pytest.approx(np.mean(drops), abs=1e-12)
            assert by_name[name].std == pytest.approx(np.std(drops), abs=1e-12)
    # Every shuffle took the first-layer update, periodic embeddings included.
    assert clf.module_.arch.periodic if embedding == "periodic" else not clf.module_.arch.periodic
    assert len(fast) == 2 * 2 * len(used)

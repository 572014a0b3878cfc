"""Drift: how new rows differ from the training data, per column, batch by batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from steadyclf import BinaryClassifier, ParameterError
from steadyclf.cli import main
from steadyclf.drift import DriftReport, drift_format
from steadyclf.schema.encoder import TabularEncoder


def _training(n: int = 2_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(20, 60, n),
            "income": rng.normal(3_000, 500, n),
            "city": rng.choice(["Oslo", "Rome", "Lima"], n),
            "member": rng.choice([True, False], n),
        }
    )
    frame.loc[rng.random(n) < 0.02, "income"] = np.nan
    return frame


def _new_rows(n: int = 1_000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = _training(n, seed)
    frame["age"] = rng.uniform(40, 80, n)  # half of the rows above the training maximum
    frame.loc[rng.random(n) < 0.3, "income"] = np.nan  # 2 % missing in training, 30 % now
    frame["city"] = np.where(rng.random(n) < 0.2, "Quito", frame["city"])  # a new level
    return frame


def test_each_kind_of_drift_is_counted_and_flagged() -> None:
    report = DriftReport(TabularEncoder.fit(_training()))
    report.update(_new_rows())
    columns = {c["column"]: c for c in report.columns()}
    age, income, city, member = (columns[n] for n in ("age", "income", "city", "member"))
    assert age["above_share"] == pytest.approx(0.5, abs=0.05) and age["below_share"] == 0
    assert age["flagged"] and "outside the training range" in age["reasons"][0]
    assert income["training_missing_share"] == pytest.approx(0.02, abs=0.01)
    assert income["missing_share"] == pytest.approx(0.3, abs=0.04)
    assert income["flagged"] and income["reasons"][0].startswith("missing 1.3% in training, 30")
    assert city["unseen_share"] == pytest.approx(0.2, abs=0.04)
    assert city["training_unseen_share"] == 0.0
    assert city["unseen_examples"][0][0] == "Quito" and city["flagged"]
    assert not member["flagged"] and "outside_share" not in member  # booleans have no range
    assert [c["column"] for c in report.flagged()] == ["age", "income", "city"]
    assert report.summary().startswith(
        "3 of 4 columns differ from the training data (1,000 rows checked): age ("
    )


def test_rows_like_the_training_rows_raise_no_flag() -> None:
    report = DriftReport(TabularEncoder.fit(_training()))
    report.update(_training(1_000, seed=5))
    assert report.flagged() == []
    assert report.summary() == "no column drifted from the training data (1,000 rows checked)"


def test_batches_and_merged_reports_count_as_the_whole() -> None:
    encoder = TabularEncoder.fit(_training())
    rows = _new_rows()
    whole = DriftReport(encoder)
    whole.update(rows)
    batched = DriftReport(encoder)
    for start in range(0, len(rows), 300):
        batched.update(pa.RecordBatch.from_pandas(rows[start : start + 300], preserve_index=False))
    halves = [DriftReport(encoder), DriftReport(encoder)]
    halves[0].update(rows[:400])
    halves[1].update(rows[400:])
    merged = halves[0].merge(halves[1])
    assert batched.to_dict() == whole.to_dict() == merged.to_dict()
    other = DriftReport(TabularEncoder.fit(_training().drop(columns="age")))
    with pytest.raises(ParameterError, match="different models"):
        whole.merge(other)


def test_a_categorical_that_kept_only_its_frequent_levels() -> None:
    # 100 levels, 64 kept: the training rows of the other 36 are the baseline share.
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"code": [f"L{i}" for i in rng.integers(0, 100, 5_000)], "x": 1.0})
    train["x"] = rng.normal(size=len(train))
    encoder = TabularEncoder.fit(train)
    info = encoder.categorical_columns[0]
    baseline = info.n_other / (info.n_rows - info.n_missing)
    assert 0.2 < baseline < 0.5
    report = DriftReport(encoder)
    report.update(train.sample(1_000, random_state=0))
    column = next(c for c in report.columns() if c["column"] == "code")
    assert column["unseen_share"] == pytest.approx(baseline, abs=0.05) and not column["flagged"]


def test_reports_are_written_as_json_or_markdown(tmp_path: Path) -> None:
    report = DriftReport(TabularEncoder.fit(_training()))
    report.update(_new_rows())
    data = json.loads(report.write(tmp_path / "drift.json").read_text())
    assert data["rows"] == 1_000 and data["flagged"] == ["age", "income", "city"]
    assert data["thresholds"]["missing_change"] == 0.05
    text = report.write(tmp_path / "drift.md").read_text()
    assert text.startswith("# Drift against the training data\n\n3 of 4 columns differ")
    assert "| city | categorical | 0.0% -> 0.0% | 0.0% -> 2" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drift.json", "drift.md"]
    with pytest.raises(ParameterError, match=r"\.json or \.md"):
        drift_format(tmp_path / "drift.txt")


def test_predict_writes_a_drift_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = _training(600)
    train["y"] = (train["age"] > 40).astype(int)
    clf = BinaryClassifier(random_state=0, hidden=(4,), max_epochs=5).fit(
        train.drop(columns="y"), train["y"]
    )
    model = clf.save(tmp_path / "model")
    _new_rows(300).to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "drift.json"
    code = main(["predict", str(model), str(tmp_path / "new.csv"), "--out",
                 str(tmp_path / "p.csv"), "--drift-report", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning: 3 of 4 columns differ from the training data" in err and str(out) in err
    assert json.loads(out.read_text())["flagged"] == ["age", "income", "city"]
    code = main(["predict", str(model), str(tmp_path / "new.csv"), "--drift-report",
                 str(tmp_path / "drift.html")])  # fmt: skip
    assert code == 2 and "drift report is written as .json or .md" in capsys.readouterr().err

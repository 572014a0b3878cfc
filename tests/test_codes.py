"""integer_codes: numeric columns of integer codes (an hour, an id) read as categories too."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import steadyclf
from steadyclf import BinaryClassifier, choice
from steadyclf.choice import CODE_READING_MIN_Z, codes_gain
from steadyclf.cli import main
from steadyclf.exceptions import ParameterError
from steadyclf.schema.distinct import MAX_CODE_VALUES
from steadyclf.schema.roles import (
    CODE_MIN_ROWS_PER_LEVEL,
    ID_CODE_MIN_VALUES,
    MAX_CATEGORIES,
    ColumnInfo,
    code_candidates,
)
from steadyclf.schema.values import encode_codes
from steadyclf.train.crossfit import CrossFit

#: Fast fits: rows held out (no cross-fitting), one small layer.
FAST = {"validation_fraction": 0.2, "hidden": (32,)}


def _hours_and_ids(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A label that rises and falls twice over the day (no threshold on the hour separates
    it) and moves with each of 300 ids (ids 1000-1299, effects unrelated to their order)."""
    rng = np.random.default_rng(seed)
    hour = rng.integers(0, 24, n)
    ids = rng.integers(1000, 1300, n)
    effect = np.random.default_rng(99).normal(0.0, 1.0, 300)
    x = rng.normal(size=n)
    logit = 1.5 * np.cos(hour / 24 * 4 * np.pi) + effect[ids - 1000] + 0.5 * x
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"hour": hour, "id": ids, "x": x}), y


def _visits(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A count whose order is what matters: the label's log odds rise with it."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(4, n)
    x = rng.normal(size=n)
    logit = 0.6 * (visits - 4) + 0.5 * x
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"visits": visits, "x": x}), y


def _info(name: str, n_values: int, **fields: object) -> ColumnInfo:
    base: dict[str, object] = {"integer": True, "n_rows": 100_000, "n_values": n_values}
    return ColumnInfo(name, str(fields.pop("role", "numeric")), "int64", **(base | fields))  # type: ignore[arg-type]


def test_candidates_are_integer_columns_of_few_values_or_an_id_s_many() -> None:
    infos = [
        _info("hour", 24),
        _info("weekday", 7),
        _info("three", 3),
        _info("two", 2),  # a flag: one number says it
        _info("flag", 2, role="boolean"),
        _info("price", 24, integer=False),  # not integers
        _info("age", 80),  # between few and many: a quantity, more likely
        _info("film", 9066),
        _info("few_rows", 300, n_rows=300 * CODE_MIN_ROWS_PER_LEVEL - 1),  # ids seen ~once
        _info("many", MAX_CODE_VALUES + 1),  # past the summary's count
        _info("listed", 12),  # the user listed it as numeric
        _info("text", 12, role="categorical"),
        _info("when", 30, role="datetime"),
    ]
    assert code_candidates(infos, numeric=["listed"]) == ["hour", "weekday", "three", "film"]
    edges = [_info("a", MAX_CATEGORIES), _info("b", MAX_CATEGORIES + 1)]
    edges += [_info("c", ID_CODE_MIN_VALUES - 1), _info("d", ID_CODE_MIN_VALUES)]
    assert code_candidates(edges) == ["a", "d"]


def test_numbers_are_coded_as_numbers() -> None:
    levels = ["7", "-3", "12"]
    values = np.array([7.0, -3.0, 12.0, 7.5, 8.0, np.nan, -0.0, 1e300])
    assert encode_codes(values, levels).tolist() == [2, 3, 4, 1, 1, 0, 1, 1]


def test_an_integer_is_one_level_for_every_reader(tmp_path: Path) -> None:
    X, y = _hours_and_ids(1500, 0)
    clf = BinaryClassifier(random_state=0, max_epochs=5, integer_codes="category", **FAST)
    clf.fit(X, y)
    hour = next(c for c in clf.encoder_.columns_ if c.name == "hour")
    assert hour.read_as_category and hour.levels and set(hour.levels) <= {str(h) for h in range(24)}
    new = X.head(200).copy()
    new.loc[:4, "hour"] = [25, 3, 7, 12, 30]  # 25 and 30: never seen
    new["id"] = new["id"].astype(float)  # 7.0: the same level as 7
    new.loc[5, "id"] = np.nan  # a gap makes the column float, as a CSV reader would
    proba = clf.predict_proba(new)[:, 1]
    _x_num, x_cat = clf.encoder_.transform(new)
    codes = dict(zip([c.name for c in clf.encoder_.categorical_columns], x_cat.T, strict=False))
    assert codes["hour"][0] == codes["hour"][4] == 1  # unseen, as an unseen text level
    assert codes["id"][5] == 0  # missing
    ints = X.head(200).copy()
    ints.loc[:4, "hour"] = [25, 3, 7, 12, 30]
    kept = np.arange(200) != 5
    np.testing.assert_allclose(proba[kept], clf.predict_proba(ints)[kept, 1], rtol=0, atol=1e-12)
    # The command line reads a CSV file's text "7.0" and "7" as the same numbers.
    path = tmp_path / "new.csv"
    new.to_csv(path, index=False)
    clf.save(tmp_path / "model")
    out = tmp_path / "scored.csv"
    assert main(["predict", str(tmp_path / "model"), str(path), "--out", str(out)]) == 0
    scored = pd.read_csv(out)
    column = next(c for c in scored.columns if "prob" in c)
    np.testing.assert_allclose(scored[column].to_numpy(), proba, rtol=0, atol=1e-6)


def _held_out_aucs(
    table: Callable[[int, int], tuple[pd.DataFrame, np.ndarray]],
) -> tuple[dict[str, float], BinaryClassifier]:
    """Test ROC AUC with integer_codes 'none' and 'category' (4,000 rows each), and the
    model of the latter."""
    X, y = table(4000, 0)
    X_test, y_test = table(4000, 100)
    auc = {}
    for codes in ("none", "category"):
        # Without embeddings: they too can carve an hour out of its number (the race of
        # the defaults tries them), and the reading is what is measured here.
        clf = BinaryClassifier(
            random_state=0, integer_codes=codes, numeric_embedding="none", **FAST
        ).fit(X, y)
        auc[codes] = roc_auc_score(y_test, clf.predict_proba(X_test)[:, 1])
    return auc, clf


def test_hours_and_ids_read_as_categories_beat_the_numbers_alone() -> None:
    auc, clf = _held_out_aucs(_hours_and_ids)
    read = {c.name: c for c in clf.encoder_.columns_ if c.read_as_category}
    assert list(read) == ["hour", "id"]
    assert read["hour"].describe() == "hour: integer with 24 values, read as a category too"
    assert read["id"].n_values == 300 and len(read["id"].target_levels) == 300
    # Measured (seeds 0-2): 0.55-0.60 without the reading, 0.785-0.791 with it (the true
    # probabilities score 0.815): a gain of 0.195-0.235.
    assert auc["category"] > auc["none"] + 0.1, auc


def test_a_monotone_count_read_as_a_category_costs_little() -> None:
    auc, clf = _held_out_aucs(_visits)
    assert [c.name for c in clf.encoder_.columns_ if c.read_as_category] == ["visits"]
    # Measured (seeds 0-2): -0.003 to +0.007 ROC AUC against the numbers alone.
    assert auc["category"] > auc["none"] - 0.02, auc


def test_the_reading_is_saved_and_predicted_alike_by_numpy_and_torch(tmp_path: Path) -> None:
    X, y = _hours_and_ids(1500, 1)
    clf = BinaryClassifier(random_state=0, max_epochs=20, integer_codes="category", **FAST)
    clf.fit(X, y)
    x_num, x_cat = clf.encoder_.transform(X)
    with torch.no_grad():
        logits = clf.module_(torch.from_numpy(x_num), torch.from_numpy(x_cat)).double().numpy()
    scale, bias = clf.calibration_["scale"], clf.calibration_["bias"]
    # The fitted module computes in float32; the NumPy pass in float64.
    np.testing.assert_allclose(clf.decision_function(X), scale * logits + bias, atol=1e-4)
    assert np.ptp(logits) > 1.0
    path = clf.save(tmp_path / "model")
    schema = json.loads((path / "model.json").read_text())["schema"]["columns"]
    hour = next(c for c in schema if c["name"] == "hour")
    assert hour["read_as_category"] and hour["integer"] and hour["role"] == "numeric"
    loaded = steadyclf.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_a_model_with_a_level_that_is_no_integer_is_refused() -> None:
    data = {"name": "hour", "role": "numeric", "dtype": "int64", "read_as_category": True}
    assert ColumnInfo.from_dict(data | {"levels": ["7", "-3"]}).read_as_category
    for bad in (["7", "seven"], ["7.5"], ["inf"]):
        with pytest.raises(ValueError, match=r"column 'hour' is read as a category with level"):
            ColumnInfo.from_dict(data | {"levels": bad})
    # Only a numeric column is read as a category too.
    assert not ColumnInfo.from_dict(data | {"role": "boolean"}).read_as_category


def test_models_saved_before_the_reading_load_unchanged(tmp_path: Path) -> None:
    X, y = _hours_and_ids(600, 2)
    clf = BinaryClassifier(random_state=0, max_epochs=3, integer_codes="none", **FAST)
    clf = clf.fit(X, y)
    assert not any(c.read_as_category for c in clf.encoder_.columns_)
    path = clf.save(tmp_path / "model")
    model = json.loads((path / "model.json").read_text())
    for column in model["schema"]["columns"]:
        column.pop("integer", None)  # as written before integer codes existed
    model["parameters"].pop("integer_codes")
    model.pop("checksum")  # nor had a checksum: it claims nothing
    (path / "model.json").write_text(json.dumps(model))
    old = steadyclf.load(path)
    assert not any(c.read_as_category or c.integer for c in old.encoder_.columns_)
    np.testing.assert_array_equal(old.predict_proba(X), clf.predict_proba(X))


def test_the_parameter_is_checked_and_given_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ParameterError, match="integer_codes must be one of 'auto', 'none'"):
        BinaryClassifier(integer_codes="yes").check_params()
    X, y = _hours_and_ids(1600, 3)  # 5 rows or more per id: the ids are read too
    data = tmp_path / "data.csv"
    X.assign(y=y).to_csv(data, index=False)
    args = ["train", str(data), "--target", "y", "--out", str(tmp_path / "m")]
    assert main([*args, "--integer-codes", "maybe"]) == 2
    assert "maybe" in capsys.readouterr().err
    fast = ["--max-epochs", "3", "--validation-fraction", "0.2"]
    assert main([*args, "--integer-codes", "category", *fast]) == 0
    out = capsys.readouterr().out
    assert "hour: integer with 24 values, read as a category too" in out
    assert "id: integer with 300 values, read as a category too" in out


def test_inspect_the_report_doctor_and_drift_show_the_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from steadyclf.doctor import diagnose
    from steadyclf.drift import DriftReport
    from steadyclf.report import _schema

    X, y = _hours_and_ids(1600, 4)
    clf = BinaryClassifier(random_state=0, max_epochs=3, integer_codes="category", **FAST)
    clf.fit(X, y)
    assert main(["inspect", str(clf.save(tmp_path / "m"))]) == 0
    out = capsys.readouterr().out
    assert "hour: numeric (int64); integer with 24 values, read as a category too" in out
    rows = {r["name"]: r["detail"] for r in _schema(clf)}
    assert rows["hour"].endswith("; integer with 24 values, read as a category too")
    assert "read as a category" not in rows["x"]
    # The doctor, which trains nothing, names the candidates.
    codes = [f for f in diagnose(X, y).findings if f.kind == "codes"]
    assert len(codes) == 1 and codes[0].features == ["hour", "id"]
    assert codes[0].severity == "info" and "integer_codes='category'" in codes[0].fix
    # Drift: one entry per column, with its range as a number and its unseen values as a
    # category (hours with a half: inside the range, no level).
    drift = DriftReport(clf.encoder_)
    drift.update(X.head(300).assign(hour=X["hour"].head(300).clip(1, 22) + 0.5))
    columns = {c["column"]: c for c in drift.columns()}
    assert list(columns) == ["hour", "id", "x"] and columns["hour"]["rows"] == 300
    assert columns["hour"]["outside_share"] == 0 and columns["hour"]["unseen_share"] == 1
    assert "outside the vocabulary" in columns["hour"]["reasons"][0]
    assert columns["hour"]["unseen_examples"][0][0].endswith(".5")
    assert not columns["x"]["flagged"] and not columns["id"]["flagged"]
    assert "unseen levels" in drift.to_markdown()


@pytest.mark.parametrize(
    "values",
    [
        np.array([-5, 3, 3, -5, 0, 7], dtype=np.int64),  # dense: counted by bincount
        np.array([np.iinfo(np.int64).min, 0, np.iinfo(np.int64).max, 0], dtype=np.int64),
        np.array([2**63, 5, 5], dtype=np.uint64),
        np.array([1e20, 1e20 + 2**14, np.nan, -0.0, 0.0, 1e20]),  # integers beyond 2**53
        np.array([-3.0, np.nan, 2.0, -3.0]),
    ],
    ids=["dense", "int64-extremes", "uint64", "large-floats", "floats-with-gaps"],
)
def test_distinct_integers_are_counted_exactly(values: np.ndarray) -> None:
    from steadyclf.schema.distinct import ValueCounts

    counted = ValueCounts()
    counted.add(values)
    present = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    expected, counts = np.unique(present.astype(np.float64), return_counts=True)
    assert counted.integer and counted.values is not None and counted.counts is not None
    np.testing.assert_array_equal(counted.values, expected)
    np.testing.assert_array_equal(counted.counts, counts)


@pytest.mark.parametrize(
    "settings",
    [FAST, {"hidden": (32,), "max_epochs": 60}],
    ids=["race-on-the-hold-out", "cross-fitted"],
)
def test_the_defaults_find_the_reading_where_it_lowers_the_loss(settings: dict[str, Any]) -> None:
    """integer_codes='auto' (the default) tries both readings: the hour and the ids read as
    categories win, on held-out rows (a race) as out of fold (small data)."""
    X, y = _hours_and_ids(2000, 0)
    X_test, y_test = _hours_and_ids(4000, 100)
    clf = BinaryClassifier(random_state=0, **settings).fit(X, y)
    assert list(clf.plan_["integer_codes_candidates"]) == ["none", "category"]
    assert clf.plan_["integer_codes"] == "category"
    assert [c.name for c in clf.encoder_.columns_ if c.read_as_category] == ["hour", "id"]
    facts = clf.data_.get("race") or clf.data_["cross_fit"]
    assert facts  # the losses of both readings are reported
    if "race" not in clf.data_:  # small data: a gain beyond noise (the hours and ids)
        assert facts["integer_codes_gain_z"] >= CODE_READING_MIN_Z
    # The numbers alone score 0.55-0.60 here (test above); the reading ~0.78.
    assert roc_auc_score(y_test, clf.predict_proba(X_test)[:, 1]) > 0.7


def test_the_defaults_keep_a_monotone_count_a_number_or_lose_nothing() -> None:
    X, y = _visits(4000, 0)
    X_test, y_test = _visits(4000, 100)
    auto = BinaryClassifier(random_state=0, **FAST).fit(X, y)
    plain = BinaryClassifier(random_state=0, integer_codes="none", **FAST).fit(X, y)
    auc_auto = roc_auc_score(y_test, auto.predict_proba(X_test)[:, 1])
    auc_plain = roc_auc_score(y_test, plain.predict_proba(X_test)[:, 1])
    # 4,000 test rows: an AUC's standard error is ~0.008; the choice may keep either
    # reading, and what it keeps must not cost more than that.
    assert auc_auto > auc_plain - 0.01, (auto.plan_["integer_codes"], auc_auto, auc_plain)


def _cross_fit(logits: np.ndarray) -> CrossFit:
    return CrossFit(0.01, logits, [], [], losses={0.01: 0.5})


def test_codes_gain_is_the_per_row_saving_in_standard_errors() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000).astype(np.float64)
    truth = np.where(y == 1, 1.0, -1.0)
    plain = rng.normal(size=2000) * 0.1  # knows nothing
    clear = plain + truth  # right on every row: a large saving, many standard errors
    noise = plain + rng.normal(size=2000) * 0.05  # as good, up to noise
    codes = ["none", "category"]
    assert codes_gain(codes, [_cross_fit(plain), _cross_fit(clear)], y, None, None) > 10
    assert abs(codes_gain(codes, [_cross_fit(plain), _cross_fit(noise)], y, None, None)) < 3
    assert codes_gain(codes, [_cross_fit(clear), _cross_fit(plain)], y, None, None) < -10
    # Without a finished candidate of each kind there is nothing to compare.
    assert codes_gain(codes, [_cross_fit(plain), None], y, None, None) is None
    # Weights: the mean is weighted, and few heavy rows count as few rows (Kish).
    w = np.ones(2000)
    z = codes_gain(codes, [_cross_fit(plain), _cross_fit(clear)], y, w, None)
    assert z == pytest.approx(
        codes_gain(codes, [_cross_fit(plain), _cross_fit(clear)], y, None, None)
    )
    heavy = np.where(np.arange(2000) < 20, 1000.0, 1e-6)
    z_heavy = codes_gain(codes, [_cross_fit(plain), _cross_fit(clear)], y, heavy, None)
    assert z_heavy is not None and 0 < z_heavy < z / 5


def test_small_data_keeps_codes_that_are_noise_as_numbers() -> None:
    """An integer column of ten codes unrelated to the label: the reading saves no
    out-of-fold loss (z about -1.6 here; over seeds such codes give z around 0 with a
    spread near 1, so the one-standard-error rule keeps them as numbers most of the time),
    and the numbers-only reading is kept."""
    rng = np.random.default_rng(8)
    n = 1500
    x = rng.normal(size=n)
    X = pd.DataFrame({"code": rng.integers(0, 10, n), "x": x})
    y = (rng.random(n) < 1 / (1 + np.exp(-1.5 * x))).astype(int)
    clf = BinaryClassifier(random_state=0, hidden=(32,), max_epochs=60).fit(X, y)
    assert clf.plan_["folds"] > 1
    assert list(clf.plan_["integer_codes_candidates"]) == ["none", "category"]
    assert clf.data_["cross_fit"]["integer_codes_gain_z"] < CODE_READING_MIN_Z
    assert clf.integer_codes_ == "none"


def test_the_rule_decides_between_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hours and ids save many standard errors: the reading is kept, unless the rule
    asks for more than any gain (then numbers only, though their loss is higher)."""
    X, y = _hours_and_ids(1500, 0)
    kw: dict[str, Any] = {"random_state": 0, "hidden": (32,), "max_epochs": 40}
    kept = BinaryClassifier(**kw).fit(X, y)
    assert kept.integer_codes_ == "category"
    losses = kept.data_["cross_fit"]["integer_codes"]
    assert losses["category"] < losses["none"]
    monkeypatch.setattr(choice, "CODE_READING_MIN_Z", 1e9)
    refused = BinaryClassifier(**kw).fit(X, y)
    assert refused.integer_codes_ == "none"
    assert refused.data_["cross_fit"]["integer_codes_gain_z"] == pytest.approx(
        kept.data_["cross_fit"]["integer_codes_gain_z"]
    )

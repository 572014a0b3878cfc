"""Issue 22, round 3 of "no silent wrong answer": what the model saves and what it
refuses, each with a message that names the problem."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import steadyclf
from steadyclf import BinaryClassifier, DataError, ModelFileError
from steadyclf.cli import main
from steadyclf.persistence import refresh_checksum
from steadyclf.predictor import Predictor

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


# -- item 8: what crashed without a clear message ----------------------------------------------
def test_a_subnormal_weight_is_a_weight_like_any_other() -> None:
    """A weight of 1e-310 made every other row count 1e310 rows in the scaling's
    quantiles: float('inf') and an OverflowError. It is now nearly a row left out."""
    X, y = _table(200)
    w = np.ones(len(y))
    w[5] = 0.0
    left_out = BinaryClassifier(**FAST).fit(X, y, sample_weight=w).predict_proba(X)
    w[5] = 1e-310
    tiny = BinaryClassifier(**FAST).fit(X, y, sample_weight=w).predict_proba(X)
    assert np.isfinite(tiny).all()
    # Robust scaling interpolates its quantiles in units of the smallest weight, bounded
    # by the weights' sum / 2**52 (so 1e-310 is a unit of 4e-14): the 5 % and 95 %
    # quantiles move by up to a row's gap; 0.02 bounds what that does in 10 Adam steps.
    np.testing.assert_allclose(tiny, left_out, rtol=0, atol=0.02)


def _resigned(model: Path, tmp_path: Path, edit: Any) -> Path:
    copy = Path(shutil.copytree(model, tmp_path / "edited"))
    index = json.loads((copy / "model.json").read_text())
    edit(index)
    (copy / "model.json").write_text(json.dumps(index))
    refresh_checksum(copy, files=False)  # re-signed: the field's own check must refuse it
    return copy


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    X, y = _table()
    return BinaryClassifier(**FAST).fit(X, y).save(tmp_path_factory.mktemp("m") / "model")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda i: i.update(training=[1, 2]), r"field 'training' is a list, not an object"),
        (lambda i: i["schema"].update(columns="x"), r"'schema.columns' is not a list of objects"),
        (lambda i: i["schema"]["columns"][1].update(levels=7), r"a field of an unexpected type"),
        (lambda i: i.update(versions="1.0"), r"field 'versions' is a str, not an object"),
    ],
)
def test_inspect_refuses_a_malformed_model_json_in_one_line(
    saved: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Any,
    message: str,
) -> None:
    copy = _resigned(saved, tmp_path, edit)
    assert main(["inspect", str(copy)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err), err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda i: i["calibration"].update(method="isotonic"),
            r"calibration method 'isotonic' is not one of 'none', 'temperature', 'platt'",
        ),
        (
            lambda i: i["classes"].update(values=[1, 1]),
            r"classes.values lists the class 1 twice",
        ),
    ],
)
def test_a_model_json_with_an_unknown_method_or_a_class_twice_is_refused(
    saved: Path, tmp_path: Path, edit: Any, message: str
) -> None:
    copy = _resigned(saved, tmp_path, edit)
    with pytest.raises(ModelFileError, match=message):
        steadyclf.load(copy)
    with pytest.raises(ModelFileError, match=message):
        Predictor.load(copy)


def test_streamed_predict_reads_late_text_as_an_unseen_level_with_any_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A categorical of integers in training; text on row 19,000 of the new file. With a
    small budget the first block's inferred type (integers) refused it, naming a row of
    the block; now every budget reads the column as text and the text is an unseen level."""
    rng = np.random.default_rng(0)
    n = 20_000
    frame = pd.DataFrame({"x": rng.normal(size=n).round(3), "c": rng.integers(1, 4, n)})
    y = (frame["x"] + (frame["c"] == 2) + rng.normal(size=n) > 0.5).astype(int)
    train = tmp_path / "train.csv"
    frame.head(2000).assign(y=y[:2000]).to_csv(train, index=False)
    clf = BinaryClassifier(categorical=["c"], **FAST).fit(
        pd.read_csv(train).drop(columns="y"), y[:2000]
    )
    model = clf.save(tmp_path / "model")
    late = frame.astype({"c": object})
    late.loc[19_000, "c"] = "three"
    late.to_csv(tmp_path / "new.csv", index=False)
    expected = clf.predict_proba(late)[:, 1]
    with pytest.warns(steadyclf.UnseenLevelsWarning):  # one row, all of it unseen
        unseen = clf.predict_proba(late.loc[[19_000]].assign(c="never seen"))[0, 1]
    assert expected[19_000] == pytest.approx(unseen, abs=1e-15)
    for budget in ([], ["--memory-budget", "256KB"]):
        assert main(["predict", str(model), str(tmp_path / "new.csv"), *budget]) == 0
        got = pd.read_csv(io.StringIO(capsys.readouterr().out))["probability"].to_numpy()
        # The CSV round trip of x (3 decimals, exact in text) gives the same float64s.
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_predictor_takes_what_the_estimator_takes() -> None:
    import polars as pl

    X, y = _table()
    clf = BinaryClassifier(**FAST).fit(X.drop(columns="city"), y)
    predictor = Predictor.from_state(clf.to_state())
    plain = X.drop(columns="city")
    expected = clf.predict_proba(plain)[:, 1]
    for table in (plain, pl.from_pandas(plain), plain.to_numpy()):
        np.testing.assert_allclose(predictor.probability(table), expected, rtol=1e-12)
    with pytest.raises(TypeError, match=r"a pandas or polars DataFrame, .* got list"):
        predictor.probability([[0.5]])
    with pytest.raises(DataError, match=r"X has 3 columns, but the model reads 1"):
        predictor.probability(np.zeros((2, 3)))

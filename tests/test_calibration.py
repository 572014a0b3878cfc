"""Calibration: temperature and Platt scaling fitted on held-out logits, chosen by
cross-fitting, stored in the model and used by every prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import steadyclf
from steadyclf import BinaryClassifier, ParameterError
from steadyclf.calibration import (
    MIN_CALIBRATION_ROWS,
    OUT_OF_FOLD_MARGIN_SE,
    calibrate,
    calibration_metrics,
    describe_calibration,
    expected_calibration_error,
    fit_scaling,
    reliability_bins,
)
from steadyclf.cli import main
from steadyclf.evaluation import log_loss
from steadyclf.persistence import INDEX_FILE, refresh_checksum


def _logits(n: int, seed: int, *, scale: float = 1.0, bias: float = 0.0):  # type: ignore[no-untyped-def]
    """Logits z whose true probability is sigmoid(scale * z + bias), and labels from it."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.5, size=n)
    y = (rng.random(n) < expit(scale * z + bias)).astype(float)
    return z, y


def test_fit_scaling_recovers_a_temperature_and_a_bias() -> None:
    z, y = _logits(40_000, 0, scale=0.4)
    scale, bias = fit_scaling(z, y, "temperature")  # type: ignore[misc]
    assert scale == pytest.approx(0.4, abs=0.02) and bias == 0.0
    z, y = _logits(40_000, 1, scale=1.5, bias=-1.0)
    scale, bias = fit_scaling(z, y, "platt")  # type: ignore[misc]
    assert scale == pytest.approx(1.5, abs=0.06) and bias == pytest.approx(-1.0, abs=0.06)


def test_a_map_that_would_reverse_the_ranking_is_refused() -> None:
    z, y = _logits(2_000, 2, scale=-1.0)  # the logit ranks the rows backwards
    assert fit_scaling(z, y, "temperature") is None
    result = calibrate(z, y, "platt")
    assert result["method"] == "none" and "reverse the ranking" in result["reason"]
    assert (result["scale"], result["bias"]) == (1.0, 0.0)


def test_perfectly_separated_rows_keep_a_finite_scale() -> None:
    z = np.linspace(-3, 3, 400)
    y = (z > 0).astype(float)
    found = fit_scaling(z, y, "temperature")
    assert found is not None and np.isfinite(found[0]) and found[0] < 50


def test_expected_calibration_error_uses_bins_of_equal_mass() -> None:
    # Two bins of 4 rows: predicted 0.1 observed 0.25, predicted 0.9 observed 0.75.
    p = [0.1] * 4 + [0.9] * 4
    y = [1, 0, 0, 0, 1, 1, 1, 0]
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.15)
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0
    report = calibration_metrics(y, p)
    assert report["brier"] == pytest.approx(np.mean((np.array(p) - y) ** 2))
    assert report["log_loss"] == pytest.approx(log_loss(y, p))


def test_auto_keeps_the_identity_for_calibrated_logits() -> None:
    z, y = _logits(3_000, 3)
    result = calibrate(z, y, "auto")
    assert result["method"] == "none"
    assert set(result["cross_fitted_log_loss"]) == {"none", "temperature", "platt"}
    assert result["before"] == result["after"]


@pytest.mark.parametrize(
    ("scale", "bias", "chosen"), [(0.35, 0.0, "temperature"), (0.9, 1.2, "platt")]
)
def test_auto_picks_the_map_that_lowers_the_log_loss_of_new_rows(
    scale: float, bias: float, chosen: str
) -> None:
    z, y = _logits(3_000, 4, scale=scale, bias=bias)
    result = calibrate(z, y, "auto", seed=1)
    assert result["method"] == chosen
    assert result["after"]["log_loss"] < result["before"]["log_loss"]
    assert result["after"]["ece"] < result["before"]["ece"]
    # On fresh rows from the same distribution, the map lowers the log loss too.
    z_new, y_new = _logits(20_000, 5, scale=scale, bias=bias)
    fitted = expit(result["scale"] * z_new + result["bias"])
    assert log_loss(y_new, fitted) < log_loss(y_new, expit(z_new)) - 0.01
    assert chosen in describe_calibration(result) and "->" in describe_calibration(result)


def test_too_few_rows_and_one_wild_logit() -> None:
    z, y = _logits(MIN_CALIBRATION_ROWS - 1, 6, scale=0.3)
    result = calibrate(z, y, "temperature")
    assert result["method"] == "none" and "too few held-out rows" in result["reason"]
    # A row the network extrapolates on (logit -4e6, label 1) does not decide the map alone.
    z, y = _logits(3_000, 7)
    z[0], y[0] = -4e6, 1.0
    result = calibrate(z, y, "auto")
    assert np.isfinite(result["cross_fitted_log_loss"]["none"])
    assert result["cross_fitted_log_loss"]["none"] < 1.0


def test_calibrate_refuses_an_unknown_method() -> None:
    with pytest.raises(ParameterError, match="calibration must be one of"):
        calibrate([0.0], [1.0], "isotonic")
    with pytest.raises(ParameterError, match="calibration must be one of"):
        BinaryClassifier(calibration="isotonic").fit(np.zeros((4, 1)), [0, 1, 0, 1])


def _imbalanced(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (rng.random(n) < expit(1.5 * X["a"] - 2.5)).astype(int)
    return X, y


@pytest.fixture(scope="module")
def weighted() -> tuple[BinaryClassifier, pd.DataFrame, np.ndarray]:
    # pos_weight='balanced' shifts every logit by log(n_neg / n_pos): probabilities far too
    # high, a bias that Platt scaling on the held-out rows takes back.
    X, y = _imbalanced(12_000, 0)
    clf = BinaryClassifier(random_state=0, pos_weight="balanced", hidden=(8,), max_epochs=30)
    return clf.fit(X, y), X, y


def test_the_estimator_calibrates_on_its_held_out_rows(
    weighted: tuple[BinaryClassifier, pd.DataFrame, np.ndarray],
) -> None:
    clf, _, _ = weighted
    cal = clf.calibration_
    assert cal["method"] == "platt" and cal["requested"] == "auto"
    assert cal["bias"] < -1.0  # takes back most of log(n_neg / n_pos)
    assert cal["n_rows"] == clf.data_["n_valid"]
    assert cal["after"]["log_loss"] < cal["before"]["log_loss"] - 0.05
    assert clf.validation_metrics_["calibration"]["after"] == cal["after"]
    # The validation metrics are those of the calibrated probabilities.
    assert clf.validation_metrics_["log_loss"] == pytest.approx(cal["after"]["log_loss"])
    X_new, y_new = _imbalanced(5_000, 1)
    proba = clf.predict_proba(X_new)[:, 1]
    raw = expit((clf.decision_function(X_new) - cal["bias"]) / cal["scale"])
    assert log_loss(y_new, proba) < log_loss(y_new, raw) - 0.05
    np.testing.assert_allclose(proba, expit(clf.decision_function(X_new)), rtol=1e-12)


def test_the_calibration_is_saved_and_applied_after_loading(
    tmp_path: Path, weighted: tuple[BinaryClassifier, pd.DataFrame, np.ndarray]
) -> None:
    clf, X, _ = weighted
    again = steadyclf.load(clf.save(tmp_path / "m"))
    assert again.calibration_ == json.loads(json.dumps(clf.calibration_))
    np.testing.assert_array_equal(again.predict_proba(X[:500]), clf.predict_proba(X[:500]))
    index = json.loads((tmp_path / "m" / INDEX_FILE).read_text())
    assert index["calibration"]["before"]["log_loss"] > index["calibration"]["after"]["log_loss"]
    assert index["parameters"]["calibration"] == "auto"


def test_a_model_saved_before_the_parameter_existed_loads(
    tmp_path: Path, weighted: tuple[BinaryClassifier, pd.DataFrame, np.ndarray]
) -> None:
    clf, X, _ = weighted
    path = clf.save(tmp_path / "old")
    index = json.loads((path / INDEX_FILE).read_text())
    del index["parameters"]["calibration"]
    (path / INDEX_FILE).write_text(json.dumps(index))
    refresh_checksum(path)
    again = steadyclf.load(path)
    assert again.calibration == "auto"
    np.testing.assert_array_equal(again.predict_proba(X[:50]), clf.predict_proba(X[:50]))


def test_none_and_small_data_keep_the_identity() -> None:
    X, y = _imbalanced(3_000, 2)
    off = BinaryClassifier(random_state=0, calibration="none", validation_fraction=0.2).fit(X, y)
    assert off.calibration_["method"] == "none" and off.calibration_["reason"] == (
        "calibration='none'"
    )
    assert "calibration" not in off.validation_metrics_
    # Small data holds no rows out: the map is fitted on the members' out-of-fold logits.
    small = BinaryClassifier(random_state=0, calibration="platt").fit(X, y)
    assert small.validation_fraction_ == 0 and len(small.module_.bodies) == 5
    assert small.calibration_["method"] == "platt" and small.calibration_["n_rows"] == len(y)
    assert small.validation_metrics_["calibration"]["method"] == "platt"
    # Too few positives to cross-fit: one network on every row, nothing to calibrate on.
    few = BinaryClassifier(random_state=0, calibration="platt", max_epochs=5)
    few.fit(X.iloc[:60], np.r_[np.ones(4, dtype=int), np.zeros(56, dtype=int)])
    assert few.calibration_ | {} == {
        "method": "none",
        "scale": 1.0,
        "bias": 0.0,
        "requested": "platt",
        "n_rows": 0,
        "reason": "no held-out rows",
    }
    assert describe_calibration(few.calibration_) == "none (no held-out rows)"


def test_train_summary_shows_the_calibration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = _imbalanced(600, 3)
    path = tmp_path / "train.csv"
    X.assign(y=y).to_csv(path, index=False)
    code = main(
        ["train", str(path), "--target", "y", "--out", str(tmp_path / "m"), "--hidden", "8"]
    )
    out = capsys.readouterr().out
    assert (
        code == 0 and "\ncalibration: " in out and "fitted on 600 out-of-fold rows: log loss" in out
    )
    code = main(
        ["train", str(path), "--target", "y", "--out", str(tmp_path / "m2"), "--hidden", "8",
         "--calibration", "temperature", "--validation-fraction", "0.5", "--json"]
    )  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["calibration"]["method"] == "temperature"
    assert summary["calibration"]["n_rows"] == summary["validation"]["n"]


def test_the_margin_sets_how_clear_a_gain_must_be() -> None:
    # Slightly too confident logits: a small, real gain from a temperature.
    z, y = _logits(1_500, 8, scale=0.85)
    strict = calibrate(z, y, "auto", margin=50.0)
    assert strict["method"] == "none" and "within the noise" in strict["reason"]
    honest = calibrate(z, y, "auto", margin=OUT_OF_FOLD_MARGIN_SE)
    assert honest["method"] in ("temperature", "platt")
    crossed = honest["cross_fitted_log_loss"]
    assert crossed[honest["method"]] < crossed["none"]


def test_auto_fits_platt_on_the_out_of_fold_logits_of_small_data() -> None:
    X, y = _imbalanced(3_000, 5)
    clf = BinaryClassifier(random_state=0).fit(X, y)
    assert len(clf.module_.bodies) == 5
    chosen = clf.calibration_
    assert chosen["method"] == "platt" and chosen["requested"] == "auto"
    assert "out-of-fold" in chosen["reason"] and chosen["n_rows"] == len(y)
    # The map is the one Platt scaling gives those logits: fitted, not the identity.
    assert (chosen["scale"], chosen["bias"]) != (1.0, 0.0)
    assert chosen["after"]["log_loss"] <= chosen["before"]["log_loss"]


def test_reliability_bins_keep_tied_probabilities_together() -> None:
    """A table with repeated rows ties many probabilities: where the cut between two bins
    falls inside a tie, the bins (and the ECE) must not depend on how the tied rows are
    ordered, as they did when bins were cut from the sorted rows."""
    rng = np.random.default_rng(0)
    p = np.repeat([0.1, 0.3, 0.5, 0.7], [30, 45, 10, 15])
    y = (rng.random(p.size) < p).astype(float)
    bins = reliability_bins(y, p, n_bins=4)
    # Quarters start at rows 0, 25, 50 and 75; each value goes where its first row falls:
    # 0.1 (rows 0-29) in the first, 0.3 (30-74) in the second, 0.5 and 0.7 in the last.
    assert [b["rows"] for b in bins] == [30, 45, 25]
    for b, value in zip(bins[:2], (0.1, 0.3), strict=True):
        assert b["low"] == b["high"] == value and b["predicted"] == pytest.approx(value)
        assert b["observed"] == pytest.approx(y[p == value].mean())
    assert (bins[2]["low"], bins[2]["high"]) == (0.5, 0.7)
    ece = expected_calibration_error(y, p, n_bins=4)
    for seed in range(5):  # the same rows in another order
        order = np.random.default_rng(seed).permutation(p.size)
        assert reliability_bins(y[order], p[order], n_bins=4) == bins
        assert expected_calibration_error(y[order], p[order], n_bins=4) == pytest.approx(ece)


def test_reliability_bins_with_weights_hold_equal_weight() -> None:
    p = np.linspace(0.05, 0.95, 40)
    y = (np.arange(40) % 3 == 0).astype(float)
    w = np.where(p > 0.5, 3.0, 1.0)
    bins = reliability_bins(y, p, n_bins=2, sample_weight=w)
    # 20 rows of weight 1, then 20 of weight 3: a row goes to the half where its share of
    # the cumulative weight starts, so the halves hold 41 and 39 of the 80.
    assert [b["weight"] for b in bins] == [41.0, 39.0]
    first = p < bins[1]["low"]
    assert bins[0]["observed"] == pytest.approx(np.average(y[first], weights=w[first]))
    assert bins[0]["predicted"] == pytest.approx(np.average(p[first], weights=w[first]))

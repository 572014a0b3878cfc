"""Categoricals with more levels than one-hot keeps: target rate and frequency per level."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

import steadyclf
from steadyclf import BinaryClassifier
from steadyclf.schema.target_stats import FOLDS, SMOOTHING, TargetCounts, target_folds
from steadyclf.train import batches


def _levels_table(
    n: int, n_levels: int, seed: int, effect: float = 1.0
) -> tuple[pd.DataFrame, np.ndarray]:
    """A numeric column and a text column of ``n_levels`` equally frequent levels, each
    with its own effect on the label."""
    rng = np.random.default_rng(seed)
    level = rng.integers(0, n_levels, n)
    effects = effect * np.random.default_rng(99).normal(size=n_levels)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(effects[level] + 0.5 * x)))).astype(int)
    return pd.DataFrame({"x": x, "user": [f"u{v}" for v in level]}), y


def test_out_of_fold_rates_leave_out_the_rows_own_fold() -> None:
    codes = np.array([[2], [2], [2], [3], [2], [3]], dtype=np.int64)
    labels = np.array([1, 0, 1, 1, 1, 0], dtype=np.float64)
    positions = np.arange(6)
    folds = target_folds(positions, seed=5)
    counts = TargetCounts.empty([4])
    counts.add(codes, labels, folds)
    tables = counts.tables()
    prior = 4 / 6
    # Undo the standardisation with two known points: the final rates of levels 2 and 3.
    final = tables.final[0][:, 0]
    rate = lambda pos, rows: (pos + SMOOTHING * prior) / (rows + SMOOTHING)  # noqa: E731
    slope = (final[2] - final[3]) / (rate(3, 4) - rate(1, 2))
    for row in range(6):
        others = folds != folds[row]
        same = others & (codes[:, 0] == codes[row, 0])
        expected = rate(labels[same].sum(), same.sum())
        got = tables.training_values(codes[row : row + 1], positions[row : row + 1], seed=5)
        assert got[0, 0] == pytest.approx(final[2] + slope * (expected - rate(3, 4)), abs=1e-9)
    # Unseen levels get the overall rate; the frequency is log(1 + rows), standardised.
    assert final[1] == pytest.approx(final[2] + slope * (prior - rate(3, 4)), abs=1e-9)
    frequency = tables.final[0][:, 1]
    assert frequency[2] > frequency[3] > frequency[1] == frequency[0]
    assert set(np.unique(folds)) <= set(range(FOLDS))


def test_levels_beyond_the_one_hot_cap_are_learned() -> None:
    X, y = _levels_table(12_000, 400, seed=0)
    clf = BinaryClassifier(random_state=0).fit(X[:8000], y[:8000])
    info = next(c for c in clf.encoder_.columns_ if c.name == "user")
    assert len(info.levels) == 64 and len(info.target_levels) == 400
    assert "target rate and frequency of 400" in info.describe()
    auc = roc_auc_score(y[8000:], clf.predict_proba(X[8000:])[:, 1])
    # One-hot of the 64 most frequent levels covers 16 % of the rows; x alone reaches
    # about 0.62. The level effects (sd 1) learned per level take it well past that.
    x_only = roc_auc_score(y[8000:], X["x"][8000:])
    assert x_only < 0.65 and auc > 0.72


def _noise_pairs() -> tuple[pd.DataFrame, np.ndarray]:
    """Levels of three rows each and labels of pure noise."""
    rng = np.random.default_rng(1)
    n = 6000
    level = np.repeat(np.arange(n // 3), 3)
    return pd.DataFrame({"x": rng.normal(size=n), "trio": [f"t{v}" for v in level]}), rng.integers(
        0, 2, n
    )


def _estimate_and_test(X: pd.DataFrame, y: np.ndarray) -> tuple[float, float, float]:
    clf = BinaryClassifier(random_state=0).fit(X[:4000], y[:4000])
    p = clf.predict_proba(X[4000:])[:, 1]
    prior = log_loss(y[4000:], np.full(2000, y[:4000].mean()))
    return clf.validation_metrics_["log_loss"], log_loss(y[4000:], p), prior


@pytest.mark.filterwarnings("ignore::steadyclf.UnseenLevelsWarning")  # new trios, on purpose
def test_a_row_s_own_label_does_not_leak_into_its_statistics() -> None:
    """With labels of pure noise, a rate holding the row's own label looks informative
    in training: the out-of-fold estimate would promise what new rows do not give."""
    estimate, test, prior = _estimate_and_test(*_noise_pairs())
    assert test < prior + 0.01  # nothing to learn, nothing wrongly learned
    assert abs(estimate - test) < 0.02  # and the estimate says so


@pytest.mark.filterwarnings("ignore::steadyclf.UnseenLevelsWarning")  # new trios, on purpose
def test_leaking_statistics_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above can fail: with in-fold statistics (the out-of-fold step skipped)."""
    monkeypatch.setattr(batches.BatchEncoder, "out_of_fold", lambda *args, **kwargs: None)
    estimate, test, _ = _estimate_and_test(*_noise_pairs())
    assert estimate < test - 0.1


def test_files_read_in_passes_get_the_same_tables(tmp_path: Path) -> None:
    X, y = _levels_table(3000, 150, seed=2)
    path = tmp_path / "data.parquet"
    X.assign(label=y).to_parquet(path, row_group_size=500)
    params = {"random_state": 0, "max_epochs": 3, "validation_fraction": 0.2}
    memory = BinaryClassifier(**params).fit(X, y)
    streamed = BinaryClassifier(**params).fit_files(
        str(path), "label", stream=True, memory_budget="2MB"
    )
    assert streamed.data_["streamed"]
    for a, b in zip(
        memory.module_.encoder.target.tables(),
        streamed.module_.encoder.target.tables(),
        strict=True,
    ):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-12)


def test_saved_models_keep_their_tables(tmp_path: Path) -> None:
    X, y = _levels_table(3000, 120, seed=3)
    clf = BinaryClassifier(random_state=0, max_epochs=5).fit(X, y)
    again = steadyclf.load(clf.save(tmp_path / "model"))
    new = X.iloc[:50].assign(user=["u1", "never seen", None, *X["user"][3:50]])
    np.testing.assert_array_equal(again.predict_proba(new), clf.predict_proba(new))
    assert again.encoder_.columns_[1].target_levels == clf.encoder_.columns_[1].target_levels


@pytest.mark.filterwarnings("ignore::steadyclf.UnseenLevelsWarning")  # u7 left out, on purpose
def test_rows_of_weight_zero_are_not_counted() -> None:
    X, y = _levels_table(3000, 120, seed=4)
    weight = np.where(X["user"] == "u7", 0.0, 1.0)
    clf = BinaryClassifier(random_state=0, max_epochs=3).fit(X, y, sample_weight=weight)
    info = clf.encoder_.columns_[1]
    # Rows of weight 0 are left out as rows without a label are: u7 is a level never seen.
    assert "u7" not in info.target_levels and "u8" in info.target_levels
    assert len(info.target_levels) == 119
    rows = X[X["user"] == "u7"].head(3)
    unseen = rows.assign(user="never seen")
    np.testing.assert_array_equal(clf.predict_proba(rows), clf.predict_proba(unseen))


def test_a_row_of_weight_k_counts_as_k_rows() -> None:
    rng = np.random.default_rng(5)
    n = 400
    codes = rng.integers(0, 30, (n, 2))
    labels = (rng.random(n) < 0.3).astype(np.float32)
    folds = target_folds(np.arange(n), seed=0)
    k = rng.integers(1, 4, n)
    weighted = TargetCounts.empty([30, 30])
    weighted.add(codes, labels, folds, k.astype(np.float64))
    repeated = TargetCounts.empty([30, 30])
    repeated.add(np.repeat(codes, k, axis=0), np.repeat(labels, k), np.repeat(folds, k))
    a, b = weighted.tables(), repeated.tables()
    for x, z in zip(a.final + a.oof, b.final + b.oof, strict=True):
        np.testing.assert_allclose(x, z, rtol=1e-12, atol=1e-12)
    plain = TargetCounts.empty([30, 30])
    plain.add(codes, labels, folds)
    assert not np.allclose(plain.tables().final[0], a.final[0])


def test_one_tiny_weight_does_not_decide_the_smoothing() -> None:
    """A row of weight 1e-6 among 2,000 of weight 1 is nearly a row left out: in units of
    the smallest weight every other row counted a million rows, the smoothing vanished
    and predictions moved by 0.07. SGD and standardised inputs: Adam's first steps turn
    float32 rounding of gradients near 0 into steps of the learning rate, and the
    quantiles of robust scaling move by up to a row's gap (their interpolation counts
    rows in units of the smallest weight); neither is what this test is about."""
    X, y = _levels_table(2000, 120, seed=4)
    params = {"random_state": 0, "max_epochs": 40, "validation_fraction": 0.2, "lr": 0.3}
    params |= {"optimizer": "sgd", "weight_decay": 0.0, "normalize": "standardize"}
    params |= {"early_stopping": False}
    w = np.ones(len(y))
    w[17] = 0.0
    left_out = BinaryClassifier(**params).fit(X, y, sample_weight=w).predict_proba(X)
    w[17] = 1e-6
    tiny = BinaryClassifier(**params).fit(X, y, sample_weight=w).predict_proba(X)
    # 1e-3: the one-hot levels and the tables' order still count the row (rows, not
    # weights, rank the levels); 1e-4 is what that leaves here, 0.07 what the bug did.
    np.testing.assert_allclose(tiny, left_out, rtol=0, atol=1e-3)
    scaled = BinaryClassifier(**params).fit(X, y, sample_weight=3.7 * w).predict_proba(X)
    # The weights' scale: the tables agree to 1e-13 (3.7 w / 3.7 m rounds), and SGD in
    # float32 carries that to well under 1e-6.
    np.testing.assert_allclose(scaled, tiny, rtol=0, atol=1e-6)


def test_weighted_fits_count_weights_in_every_path(tmp_path: Path) -> None:
    """The fitted tables weigh rows by ``weight / mean weight``: scaling every weight
    changes nothing, files read in passes get the same tables, and the weights matter."""
    X, y = _levels_table(3000, 150, seed=6)
    w = np.random.default_rng(0).choice([1.0, 2.0, 5.0], len(y))
    params = {"random_state": 0, "max_epochs": 2, "validation_fraction": 0.2}

    def tables(clf: BinaryClassifier) -> list[np.ndarray]:
        return [t.numpy().copy() for t in clf.module_.encoder.target.tables()]

    weighted = tables(BinaryClassifier(**params).fit(X, y, sample_weight=w))
    scaled = tables(BinaryClassifier(**params).fit(X, y, sample_weight=0.1 * w))
    plain = tables(BinaryClassifier(**params).fit(X, y))
    path = tmp_path / "data.parquet"
    X.assign(label=y, w=w).to_parquet(path, row_group_size=500)
    streamed = BinaryClassifier(**params).fit_files(
        str(path), "label", weight="w", stream=True, memory_budget="2MB"
    )
    assert streamed.data_["streamed"]
    for a, b, c in zip(weighted, scaled, tables(streamed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)
    assert not np.allclose(weighted[0], plain[0], atol=1e-3)

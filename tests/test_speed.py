"""The fast paths of the estimator give the same answers as the general ones (issue: Speed)."""

import numpy as np
import pandas as pd
import pytest
import torch

from steadyclf import BinaryClassifier, DataError, policy
from steadyclf.nn import modules as nn_modules
from steadyclf.nn import numpy_forward
from steadyclf.predictor import calibrate


@pytest.fixture
def wide() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)) * [1e-3, 1.0, 1e3, 1e6] + [0.0, 5.0, -1e4, 1e7]
    y = (X[:, 1] - 5.0 + 0.5 * rng.normal(size=300) > 0).astype(int)
    return X, y


def _fit(X, y, **params) -> BinaryClassifier:
    return BinaryClassifier(random_state=0, max_epochs=15, **params).fit(X, y)


def test_array_and_dataframe_inputs_predict_the_same(wide) -> None:
    X, y = wide
    clf = _fit(X, y)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(4)])
    # The array skips pandas; the frame goes through the per-column encoder.
    # decision_function is the calibrated logit (small data: Platt on out-of-fold logits).
    through_pandas = calibrate(clf._logits(*clf.encoder_.transform(frame)), clf.calibration_)
    np.testing.assert_array_equal(clf.decision_function(X), through_pandas)
    named = _fit(frame, y)
    np.testing.assert_array_equal(named.predict_proba(frame), clf.predict_proba(X))


def test_predictions_do_not_depend_on_the_chunk_size(wide, monkeypatch) -> None:
    X, y = wide
    clf = _fit(X, y)
    whole, logits = clf.predict_proba(X), clf.decision_function(X)
    monkeypatch.setattr(numpy_forward, "PREDICT_BATCH_ROWS", 7)
    # Not bit for bit: the BLAS may pick other kernels (another summation order) for other
    # shapes, on some CPUs (seen on AMD EPYC: 1 ulp on 46 of 600 rows). float64 sums of a
    # few hundred terms of order 1 to 10 reorder to well under 1e-12.
    np.testing.assert_allclose(clf.predict_proba(X), whole, rtol=0, atol=1e-12)
    np.testing.assert_allclose(clf.decision_function(X), logits, rtol=1e-12, atol=1e-12)
    single = np.vstack([clf.predict_proba(X[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(single, whole[:5], rtol=0, atol=1e-12)


def test_encoding_in_chunks_trains_the_same_model(wide, monkeypatch) -> None:
    X, y = wide
    X = X.copy()
    X[::17, 2] = np.nan  # a missing-value indicator and imputation, chunk by chunk
    reference = _fit(X, y)
    monkeypatch.setattr(nn_modules, "ENCODE_BATCH_ROWS", 16)
    chunked = _fit(X, y)
    assert [r["train_loss"] for r in chunked.history_] == [
        r["train_loss"] for r in reference.history_
    ]
    np.testing.assert_array_equal(chunked.predict_proba(X), reference.predict_proba(X))


def test_read_only_inputs_need_no_copy_and_raise_no_warning(wide) -> None:
    # pytest turns warnings into errors: torch warns on read-only NumPy arrays it wraps.
    X, y = wide
    frozen = X.copy()
    frozen.flags.writeable = False
    clf = _fit(frozen, y)
    np.testing.assert_array_equal(clf.predict_proba(frozen), clf.predict_proba(X))
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(4)])
    assert not frame.to_numpy().flags.writeable  # pandas copy-on-write views
    named = _fit(frame, y)
    np.testing.assert_array_equal(named.predict_proba(frame), clf.predict_proba(X))
    assert frozen.tolist() == X.tolist()


def test_fast_path_still_refuses_bad_arrays(wide) -> None:
    X, y = wide
    clf = _fit(X, y)
    bad = X[:3].copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        clf.predict_proba(bad)
    with pytest.raises(ValueError, match="4 features"):
        clf.predict_proba(X[:, :3])
    with pytest.raises(ValueError):
        clf.predict_proba(np.empty((0, 4)))


def test_probabilities_are_a_sigmoid_without_overflow(wide) -> None:
    X, y = wide
    clf = _fit(X, y)
    with torch.no_grad():
        for body in clf.module_.bodies:  # every member (small data cross-fits several)
            body[-1].bias.fill_(-800.0)  # exp(800) overflows float64
    proba = clf.predict_proba(X[:4])
    np.testing.assert_array_equal(proba, [[1.0, 0.0]] * 4)
    assert np.isfinite(clf.decision_function(X[:4])).all()


def test_defaults_by_data_size() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(policy.FULL_BATCH_MAX_ROWS + 1000, 2))
    y = (X[:, 0] > 0).astype(int)
    large = BinaryClassifier(random_state=0, max_epochs=1, early_stopping=False).fit(X, y)
    assert large.batch_size_ == policy.DEFAULT_BATCH_SIZE
    assert large.lr_ == policy.DEFAULT_LR_MINI_BATCH
    small = BinaryClassifier(random_state=0, max_epochs=1).fit(X[:500], y[:500])
    assert small.batch_size_ is None and small.lr_ == policy.DEFAULT_LR_FULL_BATCH


@pytest.mark.parametrize(
    ("n_train", "batch_size", "expected_batch", "expected_lr"),
    [
        (8192, "auto", None, 3e-2),
        (8193, "auto", 1024, 6e-3),
        (131071, "auto", 1024, 6e-3),
        (131072, "auto", 2048, 1.2e-2),
        (10**7, "auto", 2048, 1.2e-2),
        (10**6, 256, 256, 1.5e-3),
        (10**6, 65536, 65536, 3e-2),  # capped at the full-batch rate
        (1000, 4096, None, 3e-2),  # a batch as large as the data is full batch
        (10**6, None, None, 3e-2),
    ],
)
def test_default_batch_and_rate_grow_with_the_data(
    n_train, batch_size, expected_batch, expected_lr
) -> None:
    batch = policy.batch_size_for(n_train, batch_size)
    assert batch == expected_batch
    assert policy.default_lr(batch) == pytest.approx(expected_lr)


@pytest.mark.parametrize(
    ("n_train", "batch_size", "expected"),
    [
        (policy.CHECK_ROWS, 2048, None),  # once an epoch, as on every smaller table
        (policy.CHECK_ROWS + 1, 2048, 65),  # 129 steps: a check after 65, one at the end
        (720_000, 2048, 118),  # 352 steps, 3 checks: every 118 steps (241,664 rows)
        (10**7, 2048, 126),  # 4883 steps, 39 checks: every 258,048 rows
        (10**6, 256, 977),  # 3907 steps, 4 checks
        (10**6, None, None),  # full batch: one step an epoch
    ],
)
def test_large_data_is_checked_inside_its_epochs(n_train, batch_size, expected) -> None:
    assert policy.check_interval(n_train, batch_size) == expected


def test_infinite_dataframe_cell_is_named(wide) -> None:
    X, y = wide
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = _fit(frame, y)
    frame.loc[5, "c"] = -np.inf
    with pytest.raises(DataError, match=r"column 'c' has an infinite value at row 5"):
        clf.predict_proba(frame)


def test_features_in_place_equal_the_encoder(wide, monkeypatch) -> None:
    X, y = wide
    clf = _fit(X.astype(np.float32), y)
    module = clf.module_.float()
    monkeypatch.setattr(nn_modules, "ENCODE_BATCH_ROWS", 64)
    gappy = X.copy()
    gappy[100, 3] = np.nan  # a NaN the model never saw: that chunk goes through the encoder
    for data in (X.astype(np.float32), gappy):
        rows = np.flatnonzero(np.arange(len(data)) % 3 != 0)
        features = torch.empty((rows.size, module.encoder.n_features_out))
        module.encoder.encode(data, np.empty((len(data), 0), np.int64), features, rows)
        with torch.no_grad():
            expected = module.encoder(torch.tensor(data[rows], dtype=torch.float64))
        torch.testing.assert_close(features, expected, rtol=0, atol=0)

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from steadyclf import BinaryClassifier, DataError, NotFittedError, ParameterError, policy
from steadyclf.datasets import heart_rate
from steadyclf.estimator import SKLEARN_EXPECTED_FAILED_CHECKS
from steadyclf.exceptions import UnseenLevelsWarning
from steadyclf.policy import LARGE_DATA_MEMBERS


@parametrize_with_checks(
    [BinaryClassifier(random_state=0)],
    expected_failed_checks=lambda estimator: SKLEARN_EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def test_only_the_weight_equivalence_check_is_expected_to_fail() -> None:
    # Every other check, the sample_weight ones included, must pass.
    assert set(SKLEARN_EXPECTED_FAILED_CHECKS) == {"check_sample_weight_equivalence_on_dense_data"}


def _train_loss(**params: object) -> float:
    X, y = heart_rate(n=1000, random_state=0)
    clf = BinaryClassifier(random_state=0, **params).fit(X, y)  # type: ignore[arg-type]
    return float(clf.history_[-1]["train_loss"])


ORIGINAL = dict(
    hidden=(10,), activation="sigmoid", batch_size=None, early_stopping=False, max_epochs=1000
)


def test_original_setup_fails_and_standardisation_fixes_it() -> None:
    assert _train_loss(normalize="none", lr=1e-3, **ORIGINAL) > 0.5
    assert _train_loss(normalize="standardize", lr=1e-2, **ORIGINAL) < 0.1


@pytest.mark.parametrize("embedding", ["none", "auto"])
@pytest.mark.parametrize(("a", "b"), [(1e-6, 1e6), (1e3, -1e6), (1e6, 0.0), (1e-3, 0.0)])
def test_scale_invariance(a: float, b: float, embedding: str) -> None:
    X, y = heart_rate(n=300, random_state=0)
    params = {"random_state": 0, "max_epochs": 40, "numeric_embedding": embedding}
    base = BinaryClassifier(**params).fit(X, y)
    scaled = BinaryClassifier(**params).fit(a * X + b, y)
    assert scaled.score(a * X + b, y) >= 0.97
    assert abs(scaled.n_iter_ - base.n_iter_) <= max(1, 0.2 * base.n_iter_)
    # 1e6 + 1e-6 * HR keeps HR to about 2e-5 of its spread in float64 (ulp(1e6) = 1.2e-10
    # against a spread of 5e-6): the plain network stays within 1.4e-5 of the base losses;
    # the periodic embedding (cos, sin of 2 pi f x) multiplies that input error by 2 pi f
    # and 40 near-separable epochs grow it to 2.4e-4 in log loss where it is below 0.01
    # (measured). Every other rescale is exact; a rescale that hurt would differ by 0.1+.
    atol = 1e-3 if embedding == "auto" else 0.0
    np.testing.assert_allclose(
        [r["train_loss"] for r in scaled.history_],
        [r["train_loss"] for r in base.history_],
        rtol=1e-3,
        atol=atol,
    )


def test_small_data_cross_fits_members_and_chooses_the_weight_decay() -> None:
    X, y = heart_rate(n=500, random_state=1)
    clf = BinaryClassifier(random_state=0).fit(X, y)
    assert clf.validation_fraction_ == 0 and clf.batch_size_ is None
    assert len(clf.module_.bodies) == 5 and clf.n_iter_ < 5 * clf.max_epochs
    # Each member stops on the fold it does not train on ...
    assert {r["member"] for r in clf.history_} == set(range(5))
    assert all("valid_loss" in r for r in clf.history_)
    # ... so every row is scored out of fold, and that chooses the weight decay.
    assert clf.validation_metrics_["n"] == 500 and clf.validation_metrics_["roc_auc"] > 0.95
    losses = clf.data_["cross_fit"]["out_of_fold_log_loss"]
    assert sorted(float(d) for d in losses) == [1e-3, 1e-2, 1e-1]
    assert f"{clf.weight_decay_:g}" == min(losses, key=losses.get)
    # The members with embeddings train with the decay the plain network chose; the
    # estimate is the chosen network's out-of-fold loss.
    chosen = clf.data_["cross_fit"].get("numeric_embedding", {})
    assert set(chosen) <= {"periodic", "none"}
    kept = chosen.get(clf.numeric_embedding_, min(losses.values()))
    assert kept == min([min(losses.values()), *chosen.values()])
    before = clf.validation_metrics_["calibration"]["before"]["log_loss"]  # out of fold, no map
    assert before == pytest.approx(kept, rel=1e-4)  # float32 vs float64 sums


@pytest.mark.parametrize(
    ("params", "fraction", "decay", "members"),
    [
        # The threshold is tuned on held-out rows, which stop an ensemble of members.
        ({"threshold_metric": "f1"}, 0.1, 0.0, LARGE_DATA_MEMBERS),
        ({"validation_fraction": 0.2}, 0.2, 0.0, LARGE_DATA_MEMBERS),
        ({"weight_decay": 1e-3}, 0.0, 1e-3, 5),  # cross-fitted, the decay given
        ({"early_stopping": False}, 0.0, 0.0, 1),  # plain training: nothing added
        ({"batch_size": 64}, 0.1, 0.0, LARGE_DATA_MEMBERS),  # mini-batches
    ],
)
def test_auto_holdout_and_weight_decay(
    params: dict, fraction: float, decay: float, members: int
) -> None:
    X, y = heart_rate(n=300, random_state=1)
    clf = BinaryClassifier(random_state=0, max_epochs=3, **params).fit(X, y)
    assert clf.validation_fraction_ == fraction and clf.weight_decay_ == pytest.approx(decay)
    assert len(clf.module_.bodies) == members
    assert ("valid_loss" in clf.history_[0]) == (fraction > 0 or members > 1)


def test_larger_data_holds_rows_out_without_weight_decay() -> None:
    X, y = heart_rate(n=9000, random_state=1)
    clf = BinaryClassifier(random_state=0, max_epochs=1).fit(X, y)
    assert clf.validation_fraction_ == 0.1 and clf.weight_decay_ == 0
    assert clf.validation_metrics_["n"] > 800


def test_defaults_converge_fast_on_heart_rate(hr_data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = hr_data
    clf = BinaryClassifier(random_state=0).fit(X, y)
    assert clf.score(X, y) >= 0.98
    assert min(r["train_loss"] for r in clf.history_[:40]) < 0.15


def test_same_seed_same_predictions(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = blobs
    p1 = BinaryClassifier(random_state=7, batch_size=32, max_epochs=5).fit(X, y).predict_proba(X)
    p2 = BinaryClassifier(random_state=7, batch_size=32, max_epochs=5).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)


def test_string_labels_and_classes(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = blobs
    labels = np.where(y == 1, "yes", "no")
    clf = BinaryClassifier(random_state=0).fit(X, labels)
    assert list(clf.classes_) == ["no", "yes"]
    assert set(clf.predict(X)) <= {"no", "yes"}
    proba = clf.predict_proba(X)
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(
        clf.decision_function(X), np.log(proba[:, 1] / proba[:, 0]), rtol=1e-6, atol=1e-6
    )


def test_history_and_fitted_attributes(hr_data: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = hr_data
    clf = BinaryClassifier(random_state=0, max_epochs=15, validation_fraction=0.1).fit(X, y)
    assert clf.n_iter_ == len(clf.history_) <= 15
    row = clf.history_[0]
    for key in (
        "epoch",
        "train_loss",
        "train_accuracy",
        "valid_loss",
        "valid_accuracy",
        "lr",
        "seconds",
    ):
        assert key in row
    assert list(clf.feature_names_in_) == ["HR"]
    assert clf.n_features_in_ == 1


def test_output_bias_starts_at_prior_log_odds() -> None:
    X = np.random.default_rng(0).normal(size=(100, 2))
    y = np.r_[np.ones(20), np.zeros(80)]
    clf = BinaryClassifier(random_state=0, max_epochs=1, lr=1e-12, early_stopping=False).fit(X, y)
    assert clf.module_.body[-1].bias.item() == pytest.approx(np.log(0.2 / 0.8), abs=1e-6)


@pytest.mark.parametrize("normalize", ["batchnorm", "none"])
def test_other_normalisations_train(normalize: str, blobs: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = blobs
    clf = BinaryClassifier(normalize=normalize, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("schedule", ["none", "step", "cosine", "onecycle", "plateau"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adamw"])
def test_schedules_and_optimizers(
    schedule: str, optimizer: str, blobs: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = blobs
    lr = 0.1 if optimizer == "sgd" else 0.02
    clf = BinaryClassifier(
        schedule=schedule, optimizer=optimizer, lr=lr, batch_size=64, max_epochs=20, random_state=0
    )
    assert clf.fit(X, y).score(X, y) > 0.9


def test_step_schedule_lowers_the_rate(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = blobs
    clf = BinaryClassifier(
        schedule="step", lr=0.01, max_epochs=8, early_stopping=False, random_state=0
    ).fit(X, y)
    rates = [r["lr"] for r in clf.history_]
    assert rates[0] == pytest.approx(0.01) and rates[-1] == pytest.approx(0.01 * 0.1**3)


def test_early_stopping_restores_best_weights() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 20))
    y = rng.integers(0, 2, 300)  # pure noise: the validation loss gets worse quickly
    clf = BinaryClassifier(hidden=(128,), patience=5, validation_fraction=0.1, random_state=0).fit(
        X, y
    )
    best = min(r["valid_loss"] for r in clf.history_)
    assert clf.n_iter_ < 300
    assert clf.best_epoch_ == min(clf.history_, key=lambda r: r["valid_loss"])["epoch"]
    assert clf.history_[-1]["valid_loss"] > best


def test_large_data_stops_once_converged_on_the_best_weights() -> None:
    # More training rows than policy.CHECK_ROWS: the validation loss is also checked
    # inside each epoch, and patience counts checks. Labels from a logistic model: the
    # network reaches their floor in a few epochs.
    rng = np.random.default_rng(0)
    n = policy.CHECK_ROWS * 5 // 4
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * X[:, 0] - X[:, 1])))).astype(int)
    clf = BinaryClassifier(random_state=0, max_epochs=40, calibration="none").fit(X, y)
    assert clf.plan_["check_every"] is not None
    assert clf.history_[0]["checks"] == 2
    assert clf.n_iter_ <= 20
    # The weights kept are the best checked ones, not the last.
    valid_losses = [r["valid_loss"] for r in clf.history_]
    assert clf.validation_metrics_["log_loss"] <= min(valid_losses) + 1e-6
    assert clf.validation_metrics_["log_loss"] < valid_losses[-1]


def test_pos_weight_balanced_moves_threshold() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 2))
    y = (X[:, 0] + rng.normal(scale=1.0, size=600) > 1.2).astype(int)
    plain = BinaryClassifier(random_state=0).fit(X, y)
    weighted = BinaryClassifier(random_state=0, pos_weight="balanced").fit(X, y)
    assert weighted.predict(X).mean() > plain.predict(X).mean()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"hidden": (0,)}, "hidden"),
        ({"hidden": (10**9,)}, "parameters"),
        ({"lr": -1.0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"activation": "swish"}, "activation"),
        ({"normalize": "minmax"}, "normalize"),
        ({"schedule": "warm"}, "schedule"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"pos_weight": -2}, "pos_weight"),
    ],
)
def test_bad_parameters_are_refused(
    params: dict, match: str, blobs: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = blobs
    with pytest.raises(ParameterError, match=match):
        BinaryClassifier(**params).fit(X, y)


def test_target_errors(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = blobs
    with pytest.raises(DataError, match="one class"):
        BinaryClassifier().fit(X, np.zeros(200))
    with pytest.raises(DataError, match=r"binary.*0, 1, 2"):
        BinaryClassifier().fit(X, np.arange(200) % 3)
    y_missing = y.astype(float)
    y_missing[[3, 8]] = np.nan
    with pytest.raises(DataError, match=r"2 missing values.*\[3, 8\]"):
        BinaryClassifier().fit(X, y_missing)


def test_predict_before_fit() -> None:
    with pytest.raises(NotFittedError):
        BinaryClassifier().predict(np.zeros((2, 2)))


# -- review defects: each test failed before its fix -------------------------------------------
def test_a_missing_value_the_column_never_had_is_the_training_median() -> None:
    rng = np.random.default_rng(0)
    age = rng.normal(50, 10, 800)
    y = (age + 5 * rng.normal(size=800) > 52).astype(int)
    X = pd.DataFrame({"age": age, "other": rng.normal(size=800)})
    clf = BinaryClassifier(random_state=0).fit(X, y)
    gap = clf.predict_proba(pd.DataFrame({"age": [np.nan], "other": [0.3]}))[0, 1]
    median = clf.predict_proba(pd.DataFrame({"age": [np.median(age)], "other": [0.3]}))[0, 1]
    zero = clf.predict_proba(pd.DataFrame({"age": [0.0], "other": [0.3]}))[0, 1]
    assert gap == pytest.approx(median, rel=1e-12)  # not age 0 (which predicts ~0)
    assert zero < 0.01 < 0.2 < median
    assert clf.encoder_.unexpected_missing(np.array([[np.nan, 1.0], [1.0, np.nan]])) == {
        "age": 1,
        "other": 1,
    }


@pytest.mark.slow
def test_missing_and_unseen_categories_predict_like_an_average_level() -> None:
    # 20,000 rows: mini-batches, no weight decay to shrink weights that never train.
    rng = np.random.default_rng(0)
    n = 20_000
    city = rng.choice(["a", "b", "c"], n)
    x = rng.normal(size=n)
    effect = pd.Series(city).map({"a": 0.0, "b": 0.2, "c": 0.4}).to_numpy()
    y = (x + effect + rng.normal(size=n) > 0).astype(int)
    clf = BinaryClassifier(random_state=0).fit(pd.DataFrame({"x": x, "city": city}), y)
    assert clf.batch_size_ is not None and clf.weight_decay_ == 0
    test = pd.DataFrame({"x": np.linspace(-3, 3, 200)})
    levels = np.column_stack([clf.predict_proba(test.assign(city=c))[:, 1] for c in "abc"])
    for value in (None, "never seen"):
        if value is None:
            proba = clf.predict_proba(test.assign(city=value))[:, 1]
        else:  # every row an unseen level, on purpose: the model says so
            with pytest.warns(UnseenLevelsWarning):
                proba = clf.predict_proba(test.assign(city=value))[:, 1]
        outside = (proba < levels.min(axis=1) - 1e-12) | (proba > levels.max(axis=1) + 1e-12)
        assert not outside.any(), f"{value!r}: {outside.mean():.0%} of rows outside the levels"


def test_a_refit_that_fails_leaves_the_fitted_model_as_it_was(
    blobs: tuple[np.ndarray, np.ndarray],
) -> None:
    X, y = blobs
    clf = BinaryClassifier(random_state=0, max_epochs=5).fit(X, y)
    before = {k: v for k, v in vars(clf).items() if k.endswith("_")}

    class Boom:
        def on_train_begin(self, trainer: object) -> None:
            raise RuntimeError("boom")

    other = pd.DataFrame({"a": X[:, 0], "b": ["u", "v"] * 100})
    with pytest.raises(RuntimeError, match="boom"):
        clf.fit(other, np.where(y == 1, "yes", "no"), callbacks=[Boom()])
    after = {k: v for k, v in vars(clf).items() if k.endswith("_")}
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] for k in before)
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert clf.predict(X).shape == (200,)


def test_fits_draw_from_their_own_generator(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    import threading

    import torch

    X, y = blobs
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    reference = BinaryClassifier(random_state=3, max_epochs=30).fit(X, y).predict_proba(X)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's random stream is untouched
    results: list[np.ndarray] = []

    def fit() -> None:
        clf = BinaryClassifier(random_state=3, max_epochs=30).fit(X, y)
        results.append(clf.predict_proba(X))

    threads = [threading.Thread(target=fit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for proba in results:  # fits in threads do not disturb each other
        np.testing.assert_array_equal(proba, reference)


def test_thread_count_is_restored_when_a_fit_fails(blobs: tuple[np.ndarray, np.ndarray]) -> None:
    import torch

    X, y = blobs

    class Boom:
        def on_epoch_end(self, trainer: object, record: dict) -> None:
            raise RuntimeError("boom")

    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError):
            BinaryClassifier(random_state=0, batch_size=16).fit(X, y, callbacks=[Boom()])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_one_extreme_value_does_not_blind_the_default_scaling() -> None:
    from sklearn.metrics import roc_auc_score

    def table(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, 3))
        y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
        return pd.DataFrame(x, columns=["signal", "a", "b"]), y

    X, y = table(600, 0)
    X.loc[17, "signal"] = 1e308  # a sentinel, or a unit error
    X_test, y_test = table(2000, 1)
    robust = BinaryClassifier(random_state=0).fit(X, y)
    assert roc_auc_score(y_test, robust.predict_proba(X_test)[:, 1]) > 0.9
    # The mean and standard deviation are the outlier's: every other value scales to ~0.
    standard = BinaryClassifier(random_state=0, normalize="standardize").fit(X, y)
    assert roc_auc_score(y_test, standard.predict_proba(X_test)[:, 1]) < 0.6


def test_columns_the_model_never_reads_may_be_left_out_at_prediction() -> None:
    """A column dropped at fit (``drop=``, an identifier) is never a feature: new rows
    without it predict as they do with it (as ``steadyclf predict`` reads them); any
    other difference in the columns is still refused."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"cid": np.arange(300), "a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = (X["a"] + rng.normal(size=300) > 0).astype(int)
    clf = BinaryClassifier(random_state=0, hidden=(8,), drop=["cid"], max_epochs=20).fit(X, y)
    assert list(clf.feature_names_in_) == ["cid", "a", "b"]
    # The dropped column never reaches the network: the same inputs through the same
    # kernels and shapes, so the same bits.
    np.testing.assert_array_equal(clf.predict_proba(X.drop(columns="cid")), clf.predict_proba(X))
    with pytest.raises(DataError, match="Feature names seen at fit time, yet now missing"):
        clf.predict_proba(X.drop(columns="a"))
    with pytest.raises(DataError, match="should match those that were passed during fit"):
        clf.predict_proba(X[["b", "a"]])  # the dropped column gone, the others reordered


def test_a_model_fitted_without_text_column_names_reads_columns_by_position() -> None:
    """As scikit-learn: fitted on an array (or a frame with numbers for names), a frame of
    any names is read by position (with scikit-learn's warning), and an array predicts
    for a model fitted on a frame with numbers for names; before, both were refused
    ("missing columns 'x0', ...; the model was trained on 'x0', ...")."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(300, 3))
    y = (A[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)
    on_array = BinaryClassifier(random_state=0, hidden=(8,), max_epochs=10).fit(A, y)
    with pytest.warns(UserWarning, match="fitted without feature names"):
        named = on_array.predict_proba(pd.DataFrame(A, columns=["a", "b", "c"]))
    # The same values, encoded and predicted through the same shapes: the same bits.
    np.testing.assert_array_equal(named, on_array.predict_proba(A))
    on_numbers = BinaryClassifier(random_state=0, hidden=(8,), max_epochs=10)
    on_numbers.fit(pd.DataFrame(A), y)
    assert not hasattr(on_numbers, "feature_names_in_")  # scikit-learn's rule: text names
    np.testing.assert_array_equal(
        on_numbers.predict_proba(A), on_numbers.predict_proba(pd.DataFrame(A))
    )
    with pytest.raises(DataError, match="X has 2 features, but BinaryClassifier is expecting 3"):
        on_array.predict_proba(pd.DataFrame(A[:, :2]))

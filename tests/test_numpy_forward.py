"""Prediction without torch: the NumPy forward pass gives the torch module's numbers, the
estimator predicts through it, and loading a model and predicting import no torch."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from architectures import ARCHITECTURES, random_weights, raw_inputs

import steadyclf
from steadyclf import BinaryClassifier
from steadyclf.nn import modules, numpy_forward, shuffles
from steadyclf.nn.modules import module_from_weights, numpy_weights
from steadyclf.nn.numpy_forward import ACTIVATION_FUNCTIONS, NumpyNetwork
from steadyclf.nn.spec import ACTIVATIONS, SINGLE_THREAD_WORK, Architecture, tensor_layout

#: Both paths run the same float64 operations in the same order; only the matrix
#: products may sum in another order (other BLAS kernels): a relative error of a few
#: ulps per product, far below 1e-12 for logits of order 1 to 10.
TOLERANCE = {"rtol": 1e-12, "atol": 1e-12}
#: Periodic embeddings: NumPy takes cosines and sines in float32 (of angles reduced to
#: [-pi, pi] in float64: within 3e-7 of float64 each), which the embedding's weights and the
#: first layer carry to the logits: measured up to 2.7e-6 on the random weights of
#: tests/architectures.py. A wrong stage (a swapped cos/sin half, a missing bias) is off by
#: 0.1 or more.
PERIODIC_TOLERANCE = {"rtol": 1e-5, "atol": 2e-5}


def tolerance(arch: Architecture) -> dict[str, float]:
    return PERIODIC_TOLERANCE if arch.periodic else TOLERANCE


#: Tensors that describe the layout and enter no arithmetic.
def bookkeeping(arch: Architecture) -> set[str]:
    return {"encoder.categorical.vocab_sizes"} | {
        f"bodies.{m}.0.num_batches_tracked" for m in range(arch.n_members)
    }


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_numpy_forward_gives_the_torch_module_s_logits(arch: Architecture) -> None:
    weights = random_weights(arch)
    module = module_from_weights(arch, weights)
    x_num, x_cat = raw_inputs(arch, weights)
    with torch.no_grad():
        expected = module(torch.from_numpy(x_num), torch.from_numpy(x_cat)).numpy()
    got = NumpyNetwork(arch, weights).logits(x_num, x_cat)
    assert np.isfinite(got).all() and got.std() > 0.1  # a test that could fail
    np.testing.assert_allclose(got, expected, **tolerance(arch))


@pytest.mark.parametrize(
    "arch",
    [p for p in ARCHITECTURES if numpy_forward.stackable(p.values[0])],
    ids=lambda a: str(a),
)
def test_stacked_members_give_each_member_s_logits(
    arch: Architecture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Members that read the same features run stacked at prediction (one product for
    # their first layers, NumPy and torch alike); with autograd on, torch runs them one by
    # one as in training. Small chunks: several of them, and a last one that is short.
    weights = random_weights(arch)
    module = module_from_weights(arch, weights)
    x_num, x_cat = raw_inputs(arch, weights, n=300)
    inputs = torch.from_numpy(x_num), torch.from_numpy(x_cat)
    with torch.enable_grad():
        one_by_one = module(*inputs).detach().numpy()
    monkeypatch.setattr(modules, "PREDICT_ROWS", 64)
    monkeypatch.setattr(numpy_forward, "PREDICT_BATCH_ROWS", 64)
    with torch.no_grad():
        stacked = module(*inputs).numpy()
    assert np.isfinite(one_by_one).all() and one_by_one.std() > 0.1
    np.testing.assert_allclose(stacked, one_by_one, **tolerance(arch))
    got = NumpyNetwork(arch, weights).logits(x_num, x_cat)
    np.testing.assert_allclose(got, one_by_one, **tolerance(arch))


def test_prediction_in_chunks_without_categorical_codes_gives_the_whole_batch_s_logits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without autograd the module encodes and scores PREDICT_ROWS rows at a time; a
    # model of numeric columns only may be called without codes (x_cat=None).
    arch = Architecture(4, 1, (), (8,), "relu", clip=True, n_members=3)
    weights = random_weights(arch)
    module = module_from_weights(arch, weights)
    x_num = torch.from_numpy(raw_inputs(arch, weights, n=300)[0])
    with torch.enable_grad():
        whole = module(x_num).detach().numpy()
    monkeypatch.setattr(modules, "PREDICT_ROWS", 64)
    with torch.no_grad():
        chunked = module(x_num).numpy()
        assert module(x_num[:0]).shape == (0,)
    assert chunked.shape == (300,) and whole.std() > 0.1
    np.testing.assert_allclose(chunked, whole, **TOLERANCE)


def test_few_rows_run_the_members_one_by_one_with_the_same_logits() -> None:
    arch = Architecture(3, 1, (4, 5), (8,), "relu", clip=True, n_members=5)
    weights = random_weights(arch)
    x_num, x_cat = raw_inputs(arch, weights, n=numpy_forward.STACK_MIN_ROWS)
    network = NumpyNetwork(arch, weights)
    assert network._stacks(len(x_num)) and not network._stacks(1)
    stacked = network.logits(x_num, x_cat)
    one_by_one = np.concatenate(
        [network.logits(x_num[i : i + 1], x_cat[i : i + 1]) for i in range(5)]
    )
    np.testing.assert_allclose(one_by_one, stacked[:5], **TOLERANCE)


def test_overlapping_predictions_leave_the_blas_threads_as_they_were() -> None:
    # The BLAS limit is process-wide: predictions in two threads at once (a server) share
    # one, and whichever ends last restores the count the first found. Here the first to
    # start ends first (the order that left the process on one thread for good when each
    # saved and restored its own limit).
    from threadpoolctl import threadpool_limits

    work = numpy_forward.MIN_THREADED_WORK  # a chunk that takes the limit
    with threadpool_limits(limits=2, user_api="blas"):
        first, second = numpy_forward.blas_threads(work), numpy_forward.blas_threads(work)
        first.__enter__()
        second.__enter__()
        # While limited, the count the BLAS would use is still the one it had.
        assert numpy_forward.blas_thread_count() == 2
        assert numpy_forward.prediction_threads(chunks=50, work=work) == min(
            2, len(os.sched_getaffinity(0))
        )
        first.__exit__(None, None, None)
        assert numpy_forward._blas_threads_now() == 1  # the second still computes
        second.__exit__(None, None, None)
        assert numpy_forward._blas_threads_now() == 2


def test_members_certain_of_the_answer_combine_as_in_log_space() -> None:
    # The direct formula of mean_probability_logit (NumPy's, and torch's without
    # autograd), and the log-space one it hands logits beyond +-700 (or NaN) to: both
    # the numbers of torch's log-space form (the one autograd takes).
    rng = np.random.default_rng(0)
    cases = [
        rng.normal(0.0, 3.0, size=(5, 50)),
        np.array([[40.0, -40.0, 699.0, -699.0], [38.0, -41.0, 698.0, 1.0]]),
        np.array([[800.0, -800.0, 710.0], [1.0, -2.0, 750.0]]),
        np.array([[np.inf, -np.inf], [0.0, -np.inf]]),
        np.array([[3.0, np.nan], [1.0, 2.0]]),
    ]
    for logits in cases:
        tracked = torch.tensor(logits, requires_grad=True)
        expected = modules.mean_probability_logit(tracked).detach().numpy()
        with np.errstate(all="ignore"):  # as the forward pass calls it (IEEE semantics)
            got = numpy_forward.mean_probability_logit(logits)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        with torch.no_grad():
            direct = modules.mean_probability_logit(torch.from_numpy(logits)).numpy()
        np.testing.assert_allclose(direct, expected, rtol=1e-12, atol=1e-12)


class _Recording(dict):  # type: ignore[type-arg]
    """A weights dict that remembers which tensors were read."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_numpy_forward_reads_every_tensor_of_the_layout(arch: Architecture) -> None:
    # A stage added to the module (and its layout) but not here would be skipped silently.
    weights = _Recording(random_weights(arch))
    NumpyNetwork(arch, weights).logits(*raw_inputs(arch, random_weights(arch), n=10))
    assert set(tensor_layout(arch)) - bookkeeping(arch) - weights.read == set()


def test_every_activation_has_a_numpy_function() -> None:
    assert set(ACTIVATION_FUNCTIONS) == {a.module for a in ACTIVATIONS.values()}


def test_chunks_do_not_change_the_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    arch = Architecture(3, 1, (4,), (8,), "relu", batchnorm=True)
    weights = random_weights(arch)
    x_num, x_cat = raw_inputs(arch, weights, n=500)
    whole = NumpyNetwork(arch, weights).logits(x_num, x_cat)
    monkeypatch.setattr(numpy_forward, "PREDICT_BATCH_ROWS", 7)
    np.testing.assert_allclose(NumpyNetwork(arch, weights).logits(x_num, x_cat), whole, **TOLERANCE)


def test_threads_share_the_chunks_without_changing_the_logits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arch = Architecture(3, 1, (4, 5), (8,), "relu", clip=True, n_members=5)
    weights = random_weights(arch)
    x_num, x_cat = raw_inputs(arch, weights, n=500)
    monkeypatch.setattr(numpy_forward, "PREDICT_BATCH_ROWS", 32)  # 16 chunks, one short
    monkeypatch.setattr(numpy_forward, "prediction_threads", lambda chunks, work: 1)
    alone = NumpyNetwork(arch, weights).logits(x_num, x_cat)
    monkeypatch.setattr(numpy_forward, "prediction_threads", lambda chunks, work: 3)
    shared = NumpyNetwork(arch, weights).logits(x_num, x_cat)
    np.testing.assert_allclose(shared, alone, **TOLERANCE)
    assert alone.std() > 0.1


def test_prediction_threads_follow_the_blas_limit() -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        assert numpy_forward.prediction_threads(chunks=50, work=1000) == 1
    with threadpool_limits(limits=2, user_api="blas"):
        expected = min(2, len(os.sched_getaffinity(0)))
        assert numpy_forward.prediction_threads(chunks=50, work=1000) == expected
        assert numpy_forward.prediction_threads(chunks=1, work=1000) == 1  # one chunk
        # Chunks large enough for the BLAS to split them itself: one thread of chunks.
        assert numpy_forward.prediction_threads(chunks=50, work=SINGLE_THREAD_WORK) == 1


def test_inputs_are_never_written() -> None:
    arch = Architecture(3, 1, (4,), (8,), "relu")
    weights = random_weights(arch)
    x_num, x_cat = raw_inputs(arch, weights)
    x_num.flags.writeable = x_cat.flags.writeable = False  # a view of the caller's data
    before = x_num.copy()
    NumpyNetwork(arch, weights).logits(x_num, x_cat)
    np.testing.assert_array_equal(x_num, before)


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(100.0, 20.0, size=n),
            "city": rng.choice(["Oslo", "Rome", "Lima"], size=n),
            "z": rng.normal(size=n) * 1e-3,
            "flag": rng.random(n) > 0.5,
        }
    )
    frame.loc[::7, "x"] = np.nan
    frame.loc[::11, "city"] = None
    y = np.where((frame["x"] > 100) | (frame["city"] == "Rome"), "sick", "healthy")
    return frame, y


@pytest.fixture(scope="module")
def fitted() -> tuple[BinaryClassifier, pd.DataFrame]:
    frame, y = _frame(300, 0)
    clf = BinaryClassifier(random_state=0, max_epochs=20, hidden=(8, 4)).fit(frame, y)
    return clf, frame


def test_a_fitted_estimator_predicts_the_module_s_numbers(
    fitted: tuple[BinaryClassifier, pd.DataFrame],
) -> None:
    clf, frame = fitted
    x_num, x_cat = clf.encoder_.transform(frame)
    with torch.no_grad():
        expected = clf.module_(torch.from_numpy(x_num), torch.from_numpy(x_cat)).numpy()
    # decision_function is the calibrated logit (small data: fitted out of fold).
    scale, bias = clf.calibration_["scale"], clf.calibration_["bias"]
    np.testing.assert_allclose(
        clf.decision_function(frame), scale * expected + bias, **tolerance(clf.module_.arch)
    )


def test_predictions_follow_changes_to_the_module(
    fitted: tuple[BinaryClassifier, pd.DataFrame],
) -> None:
    clf, frame = fitted
    before = clf.decision_function(frame)
    biases = [body[-1].bias for body in clf.module_.bodies]
    x_num, x_cat = clf.encoder_.transform(frame)
    with torch.no_grad():
        for bias in biases:
            bias += 1.0
    try:
        with torch.no_grad():
            expected = clf.module_(torch.from_numpy(x_num), torch.from_numpy(x_cat)).numpy()
        expected = clf.calibration_["scale"] * expected + clf.calibration_["bias"]
        after = clf.decision_function(frame)
        assert np.all(after > before)
        np.testing.assert_allclose(after, expected, **tolerance(clf.module_.arch))
    finally:
        with torch.no_grad():
            for bias in biases:
                bias -= 1.0


def test_a_loaded_model_builds_its_module_only_when_asked(
    fitted: tuple[BinaryClassifier, pd.DataFrame], tmp_path: Path
) -> None:
    clf, frame = fitted
    loaded = steadyclf.load(clf.save(tmp_path / "model"))
    assert "_module" not in vars(loaded)
    np.testing.assert_array_equal(loaded.predict_proba(frame), clf.predict_proba(frame))
    module = loaded.module_  # built now, from the weights
    assert loaded.module_ is module
    for name, tensor in module.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), numpy_weights(clf.module_)[name])
    np.testing.assert_array_equal(loaded.predict_proba(frame), clf.predict_proba(frame))
    with pytest.raises(AttributeError):
        _ = BinaryClassifier().module_


def test_loading_and_predicting_import_neither_torch_nor_matplotlib(
    fitted: tuple[BinaryClassifier, pd.DataFrame], tmp_path: Path
) -> None:
    clf, frame = fitted
    clf.save(tmp_path / "model")
    frame.to_parquet(tmp_path / "rows.parquet")
    np.save(tmp_path / "expected.npy", clf.predict_proba(frame))
    code = f"""
import sys
import numpy as np, pandas as pd
import steadyclf
predictor = steadyclf.Predictor.load({str(tmp_path / "model")!r})
proba = predictor.probability(pd.read_parquet({str(tmp_path / "rows.parquet")!r}))
np.testing.assert_array_equal(proba, np.load({str(tmp_path / "expected.npy")!r})[:, 1])
assert "sklearn" not in sys.modules  # the Predictor needs no estimator
clf = steadyclf.load({str(tmp_path / "model")!r})
proba = clf.predict_proba(pd.read_parquet({str(tmp_path / "rows.parquet")!r}))
np.testing.assert_array_equal(proba, np.load({str(tmp_path / "expected.npy")!r}))
loaded = [m for m in ("torch", "matplotlib") if m in sys.modules]
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_numpy_forward_pass_imports_no_torch() -> None:
    code = (
        "import sys, steadyclf.nn.numpy_forward, steadyclf.predictor\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


#: ColumnShuffles adds the change of the shuffled inputs to the first layer's output: an
#: absolute error of about (input size) ulps per unit weight, inputs up to
#: SHUFFLE_FEATURE_LIMIT (1e4) here (unclipped far values up to it): 1e4 x 2.2e-16 x the
#: weights and widths of tests/architectures.py stays below 1e-9. The periodic embeddings
#: are those of the full pass (computed row by row alike). A wrong input column (a missed
#: indicator, code or embedding) is off by far more.
SHUFFLE_TOLERANCE = {"rtol": 1e-9, "atol": 1e-9}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_column_shuffles_give_the_logits_of_the_shuffled_inputs(arch: Architecture) -> None:
    weights = random_weights(arch)
    # A training median lies among the data (random ones may sit 1e5 scales out).
    weights["encoder.impute.median"] = weights["encoder.normalize.center"].copy()
    network = NumpyNetwork(arch, weights)
    x_num, x_cat = raw_inputs(arch, weights, n=300)
    # Far values within the limit (raw_inputs also puts 1e6 scales in rows 2 and 3).
    x_num[2:4] = weights["encoder.normalize.center"] + weights["encoder.normalize.scale"] * 50.0
    shuffled = shuffles.ColumnShuffles.of(network, x_num, x_cat)
    order = np.random.default_rng(0).permutation(len(x_num))
    groups = [([j], []) for j in range(arch.n_numeric)]
    groups += [([], [c]) for c in range(x_cat.shape[1])]
    groups.append((list(range(arch.n_numeric)), list(range(x_cat.shape[1]))))  # every input
    for numeric, codes in groups:
        columns = shuffles.feature_columns(arch, weights, numeric, codes)
        shuffled_num, shuffled_cat = x_num.copy(), x_cat.copy()
        shuffled_num[:, numeric] = x_num[order][:, numeric]
        shuffled_cat[:, codes] = x_cat[order][:, codes]
        expected = network.logits(shuffled_num, shuffled_cat)
        assert shuffled.covers(columns)
        got = shuffled.logits(columns, order)
        np.testing.assert_allclose(got, expected, **SHUFFLE_TOLERANCE)


def test_column_shuffles_leave_far_values_to_the_full_pass() -> None:
    """An unclipped input 1e6 scales out is beyond what the update rounds well."""
    arch = Architecture(2, 0, (), (8,), "relu")
    weights = random_weights(arch)
    x_num, x_cat = raw_inputs(arch, weights, n=50)  # rows 2 and 3: 1e6 scales out
    shuffled = shuffles.ColumnShuffles.of(NumpyNetwork(arch, weights), x_num, x_cat)
    far = shuffles.feature_columns(arch, weights, [0], [])
    assert not shuffled.covers(far)
    x_num[2:4] = weights["encoder.normalize.center"]
    near = shuffles.ColumnShuffles.of(NumpyNetwork(arch, weights), x_num, x_cat)
    assert near.covers(far)

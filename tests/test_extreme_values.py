"""Extreme finite inputs: every ``normalize`` mode and every prediction path (the torch
module, the NumPy forward pass behind ``predict_proba`` and the CLI, the ONNX graph) gives
finite probabilities that agree, and a huge value acts on its own side of the centre
(issue 22, item 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steadyclf import BinaryClassifier, TrainingDivergedError
from steadyclf.cli import main
from steadyclf.export.onnx_graph import build_onnx
from steadyclf.nn import numpy_forward
from steadyclf.nn.spec import INPUT_LIMIT
from steadyclf.predictor import calibrate, sigmoid

#: (normalize, numeric_embedding) of the fitted models: every mode, and the periodic
#: embeddings (only with scaled inputs), which bound their own input too.
SETTINGS = [
    ("robust", "none"),
    ("standardize", "none"),
    ("batchnorm", "none"),
    ("none", "none"),
    ("robust", "periodic"),
    ("standardize", "periodic"),
]
COLUMNS = ("a", "b", "c")
#: Probabilities of the three paths agree to this. Torch and NumPy run the same float64
#: operations (1e-12 on logits, tests/test_numpy_forward.py); the ONNX graph is float64
#: throughout (about 1e-16 measured, tests/test_onnx_export.py). With periodic embeddings
#: NumPy takes cosines in float32 (3e-7 per value, up to 2.7e-6 on logits measured in
#: tests/test_numpy_forward.py), hence the looser bound there.
AGREE = 1e-9
AGREE_PERIODIC = 2e-5


def _training_table(n: int = 120) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n) * 1e-3,  # a small scale: x / scale overflows first
            "b": rng.normal(size=n),
            "c": rng.normal(size=n) * 1e6 + 1e7,
        }
    )
    y = (frame["b"] + 1e3 * frame["a"] + rng.normal(size=n) > 0).astype(int).to_numpy()
    return frame, y


@pytest.fixture(scope="module")
def models() -> dict[tuple[str, str], tuple[BinaryClassifier, ort.InferenceSession]]:
    frame, y = _training_table()
    fitted = {}
    for normalize, embedding in SETTINGS:
        clf = BinaryClassifier(
            normalize=normalize,
            numeric_embedding=embedding,
            hidden=(8,),
            max_epochs=4,
            random_state=0,
        ).fit(frame, y)
        assert bool(clf.module_.arch.periodic) == (embedding == "periodic")
        session = ort.InferenceSession(
            build_onnx(clf.to_state()).model.SerializeToString(),
            providers=["CPUExecutionProvider"],
        )
        fitted[normalize, embedding] = (clf, session)
    return fitted


def _three_paths(clf: BinaryClassifier, session: ort.InferenceSession, table: pd.DataFrame) -> Any:
    """Probabilities from NumPy (predict_proba), the torch module and the ONNX graph."""
    by_numpy = clf.predict_proba(table)[:, 1]
    x_num, x_cat = clf.encoder_.transform(table)
    with torch.no_grad():
        logits = clf.module_(torch.from_numpy(x_num), torch.from_numpy(x_cat)).numpy()
    by_torch = sigmoid(calibrate(logits.astype(np.float64), clf.calibration_))
    feed = {name: table[name].to_numpy(np.float64).reshape(-1, 1) for name in COLUMNS}
    by_onnx = session.run(["probability"], feed)[0]
    return by_numpy, by_torch, by_onnx


def _magnitude() -> st.SearchStrategy[float]:
    """1e-300 to 1e308 of either sign, spread over the exponents, or an ordinary value."""
    extreme = st.builds(
        lambda exponent, mantissa, sign: sign * mantissa * 10.0**exponent,
        st.integers(-300, 307),
        st.floats(1.0, 9.99),
        st.sampled_from([-1.0, 1.0]),
    )
    edges = st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308, 5e-324, 0.0])
    return st.one_of(extreme, edges, st.floats(-3.0, 3.0))


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.tuples(*[_magnitude()] * len(COLUMNS)), min_size=1, max_size=4))
def test_any_finite_value_gives_finite_agreeing_probabilities_on_every_path(
    models: dict[tuple[str, str], tuple[BinaryClassifier, ort.InferenceSession]],
    rows: list[tuple[float, ...]],
) -> None:
    table = pd.DataFrame(rows, columns=list(COLUMNS), dtype=np.float64)
    for (normalize, embedding), (clf, session) in models.items():
        by_numpy, by_torch, by_onnx = _three_paths(clf, session, table)
        where = f"normalize={normalize!r}, numeric_embedding={embedding!r}"
        for name, got in (("numpy", by_numpy), ("torch", by_torch), ("onnx", by_onnx)):
            assert np.isfinite(got).all(), f"{name} path, {where}: {got}"
            assert ((got >= 0) & (got <= 1)).all(), f"{name} path, {where}: {got}"
        atol = AGREE_PERIODIC if embedding == "periodic" else AGREE
        np.testing.assert_allclose(by_torch, by_numpy, rtol=0, atol=atol, err_msg=where)
        np.testing.assert_allclose(by_onnx, by_numpy, rtol=0, atol=atol, err_msg=where)
        # The side is kept: the scaled input has the sign of x - centre, and is bounded.
        features = _numeric_features(clf, table)
        centre = clf._network.weights["encoder.normalize.center"]
        side = np.sign(table.to_numpy() - centre)
        nonzero = features != 0
        assert (np.sign(features)[nonzero] == side[nonzero]).all(), where
        assert (np.abs(features) <= INPUT_LIMIT).all(), where


def _numeric_features(clf: BinaryClassifier, table: pd.DataFrame) -> np.ndarray:
    """The scaled (float32-rounded) numeric inputs the network's body sees."""
    network = clf._network
    x_num, x_cat = clf.encoder_.transform(table)
    with np.errstate(over="ignore"):
        features = numpy_forward.encode(network.arch, network.weights, x_num, x_cat)
    return features[:, : network.arch.n_numeric]


@pytest.mark.parametrize("setting", SETTINGS, ids=["-".join(s) for s in SETTINGS])
def test_a_huge_value_acts_like_a_large_value_of_its_side(
    models: dict[tuple[str, str], tuple[BinaryClassifier, ort.InferenceSession]],
    setting: tuple[str, str],
) -> None:
    # Beyond the bound (or, with the smooth clipping, beyond a few thousand scales) every
    # value of one side gives the same input: that of the bound, not of the centre.
    clf, _ = models[setting]
    weights = clf._network.weights
    centre, scale = weights["encoder.normalize.center"], weights["encoder.normalize.scale"]
    large = centre + 1e40 * scale  # finite, and far beyond the bound
    huge = [1e100, 1e154, 1e200, 1e306, 1.7976931348623157e308]
    table = pd.DataFrame(
        [large, -large, *([v] * 3 for v in huge), *([-v] * 3 for v in huge), centre],
        columns=list(COLUMNS),
    )
    features = _numeric_features(clf, table)
    bound = 3.0 if setting[0] == "robust" else INPUT_LIMIT
    np.testing.assert_allclose(features[0], bound, rtol=1e-6)
    np.testing.assert_allclose(features[1], -bound, rtol=1e-6)
    for k in range(len(huge)):
        assert (features[2 + k] == features[0]).all()
        assert (features[2 + len(huge) + k] == features[1]).all()
    proba = clf.predict_proba(table)[:, 1]
    assert np.isfinite(proba).all()
    assert (proba[2 : 2 + len(huge)] == proba[0]).all()
    assert (proba[2 + len(huge) : -1] == proba[1]).all()


def test_the_cli_writes_a_probability_for_extreme_values(tmp_path: Path) -> None:
    frame, y = _training_table()
    data = frame.assign(y=y)
    data.to_csv(tmp_path / "train.csv", index=False)
    assert main(["train", str(tmp_path / "train.csv"), "--target", "y", "--out",
                 str(tmp_path / "model"), "--max-epochs", "3", "--quiet"]) == 0  # fmt: skip
    extreme = pd.DataFrame(
        {"a": [1e300, -1e300, 1e306, -1.7976931348623157e308], "b": 0.0, "c": 1e7}
    )
    extreme.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "pred.csv"
    code = main(["predict", str(tmp_path / "model"), str(tmp_path / "new.csv"),
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    written = pd.read_csv(out)
    assert written["probability"].notna().all() and np.isfinite(written["probability"]).all()
    assert written["probability"].iloc[0] == written["probability"].iloc[2]


def test_divergence_never_advises_the_setting_in_use() -> None:
    # One 1e306 in a column of scale 1e-3: robust scaling bounds it and trains; unscaled
    # inputs overflow float32 and the error points at the column and robust scaling.
    frame, y = _training_table()
    frame.loc[0, "a"] = 1e306
    BinaryClassifier(normalize="robust", max_epochs=3, random_state=0).fit(frame, y)
    with pytest.raises(TrainingDivergedError) as caught:
        BinaryClassifier(normalize="none", max_epochs=3, random_state=0).fit(frame, y)
    message = str(caught.value)
    assert "normalize='robust'" in message and "'a'" in message and "1e+306" in message
    assert "normalize='none'" not in message


@pytest.mark.parametrize("normalize", ["robust", "standardize"])
def test_training_values_near_the_float64_limit_of_both_signs_fit(normalize: str) -> None:
    # The 5-95 % spread (and the range) of a column between -1.6e308 and 1.8e308 is
    # beyond float64: it is taken as a difference of halves (hypothesis found the overflow).
    big = np.finfo(np.float64).max
    x = np.array([0.0, 0.0, big, -0.9 * big] * 10)
    y = np.array([0, 1, 0, 0] * 10)
    clf = BinaryClassifier(normalize=normalize, max_epochs=3, random_state=0)
    with np.errstate(over="raise"):
        clf.fit(pd.DataFrame({"a": x}), y)
    scale = clf._network.weights["encoder.normalize.scale"]
    assert np.isfinite(scale).all() and (scale > 1e307).all()
    assert np.isfinite(clf.predict_proba(pd.DataFrame({"a": x}))).all()

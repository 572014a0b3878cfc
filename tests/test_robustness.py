"""Inputs that cannot crash steadyclf: property-based tests with hypothesis.

Every generated table either trains and predicts finite probabilities, or fails with one
of steadyclf's own error types and a message; no other exception (nor warning: pytest
turns them into errors) escapes. Examples are few and small so the module runs in well
under a minute, and derandomised so CI sees the same cases every time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from steadyclf import BinaryClassifier, ParameterError, SteadyclfError
from steadyclf.io.tables import read_table

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

EXTREME_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([1e300, -1e300, 1e-300, -1e-300, 1.7e308, 5e-324, 0.0, -0.0]),
    st.floats(-1e3, 1e3),
)
TEXT = st.one_of(
    st.sampled_from(["", " ", "a", "b", "é", "日本", "🙂", "NaN", "null", "1", "1.5", "x,y", '"']),
    st.text(max_size=4),
)
SCALARS = st.one_of(
    EXTREME_FLOATS,
    st.integers(-(2**70), 2**70),
    st.sampled_from([10**400, -(10**400)]),  # beyond float64
    st.booleans(),
    TEXT,
    st.none(),
    st.complex_numbers(max_magnitude=10),
    st.lists(st.integers(), max_size=2),  # not a scalar at all
)


@st.composite
def columns(draw: st.DrawFn, n: int) -> pd.Series:
    """One column of ``n`` cells, of a random type."""
    kind = draw(
        st.sampled_from(
            ["float", "int", "bool", "text", "mixed", "category", "datetime", "nullable"]
        )
    )
    if kind == "float":
        return pd.Series(draw(st.lists(EXTREME_FLOATS, min_size=n, max_size=n)), dtype="float64")
    if kind == "int":
        values = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
        return pd.Series(values, dtype="int64")
    if kind == "bool":
        return pd.Series(draw(st.lists(st.booleans() | st.none(), min_size=n, max_size=n)))
    if kind == "text":
        return pd.Series(draw(st.lists(TEXT | st.none(), min_size=n, max_size=n)))
    if kind == "category":
        return pd.Series(draw(st.lists(TEXT, min_size=n, max_size=n)), dtype="category")
    if kind == "datetime":
        days = draw(st.lists(st.integers(0, 40_000) | st.none(), min_size=n, max_size=n))
        return pd.Series(
            [None if d is None else pd.Timestamp("1950-01-01") + pd.Timedelta(days=d) for d in days]
        )
    if kind == "nullable":
        values = draw(st.lists(st.integers(-1000, 1000) | st.none(), min_size=n, max_size=n))
        return pd.Series(values, dtype="Int64")
    return pd.Series(draw(st.lists(SCALARS, min_size=n, max_size=n)), dtype=object)


NAMES = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "x", "é", "列", "🙂 col", "a,b", "y"]),
)
LABEL_POOLS = st.sampled_from(
    [
        [0, 1],
        ["yes", "no"],
        [True, False],
        [1, "a"],  # mixed types
        [0.5, 2.5],
        [1.0, float("nan")],
        [-1e300, 1e300],
        ["", "é"],
        ["only"],
        [0, 1, 2],
    ]
)


@st.composite
def tables(draw: st.DrawFn, max_columns: int = 4) -> tuple[pd.DataFrame, list[Any]]:
    """A DataFrame of random columns and a target drawn from a random pool of labels."""
    n = draw(st.integers(1, 12))
    width = draw(st.integers(1, max_columns))
    names = draw(st.lists(NAMES, min_size=width, max_size=width, unique=True))
    if width > 1 and draw(st.integers(0, 9)) == 0:
        names[1] = names[0]  # a repeated name must be a clear error too
    frame = pd.DataFrame({i: draw(columns(n)) for i in range(width)})
    frame.columns = names
    pool = draw(LABEL_POOLS)
    labels = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    if n >= 2 and len(pool) == 2 and draw(st.integers(0, 4)):
        labels[:2] = pool  # mostly both classes, so most examples get to train
    if draw(st.booleans()):  # duplicate rows
        frame = pd.concat([frame, frame], ignore_index=True)
        labels = labels + labels
    return frame, labels


def valid_by_construction(X: Any, y: Any) -> bool:
    """Inputs that must train: unique names, two label values of one type, both present,
    and only float columns without infinite values, one of them with two distinct values."""
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    labels = list(y)
    if frame.columns.duplicated().any() or len(frame) < 2:
        return False
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in labels):
        return False
    if len({type(v) for v in labels}) != 1 or len(set(labels)) != 2:
        return False
    if isinstance(y, np.ndarray) and y.dtype == object and not isinstance(labels[0], str):
        return False  # scikit-learn's rule: objects are labels only as text
    if isinstance(labels[0], float) and not all(float(v).is_integer() for v in labels):
        return False  # scikit-learn's rule: fractional numbers are a continuous target
    floats = [frame.iloc[:, j] for j in range(frame.shape[1])]
    if not all(c.dtype == np.float64 and not np.isinf(c.to_numpy()).any() for c in floats):
        return False
    return any(c.nunique(dropna=True) >= 2 for c in floats)


def fits_or_fails_clearly(X: Any, y: Any, **params: Any) -> BinaryClassifier | None:
    """Train and predict; inputs valid by construction must train, and any failure of the
    others must be a SteadyclfError with a message."""
    settings_ = dict(max_epochs=2, hidden=(4,), random_state=0)
    settings_.update(params)
    try:
        clf = BinaryClassifier(**settings_).fit(X, y)
        proba = clf.predict_proba(X)
    except SteadyclfError as exc:
        message = str(exc)
        assert not valid_by_construction(X, y), f"valid input refused: {message}"
        assert len(message) > 10, f"unclear message {message!r}"
        return None
    assert proba.shape == (len(X), 2)
    assert np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all()
    return clf


@st.composite
def valid_tables(draw: st.DrawFn) -> tuple[pd.DataFrame, list[Any]]:
    """Tables that must train: float columns (extreme but finite values, some missing),
    unique names, and two labels of one type, both present."""
    n = draw(st.integers(2, 12))
    width = draw(st.integers(1, 4))
    names = draw(st.lists(NAMES, min_size=width, max_size=width, unique=True))
    finite = st.floats(allow_nan=True, allow_infinity=False, width=64)
    frame = pd.DataFrame(
        {name: draw(st.lists(finite, min_size=n, max_size=n)) for name in names}, dtype="float64"
    )
    frame.iloc[:2, 0] = [draw(st.floats(-1e300, 1e300)), draw(st.floats(-1e300, 1e300))]
    pool = draw(st.sampled_from([[0, 1], ["yes", "no"], [True, False], [1.0, 3.0], ["", "é"]]))
    labels = [*pool, *draw(st.lists(st.sampled_from(pool), min_size=n - 2, max_size=n - 2))]
    return frame, labels


@settings(SETTINGS, max_examples=30)
@given(valid_tables())
@example(  # found by CI: a shift of -1.8e308 overflowed the tally's differences
    (
        pd.DataFrame({"0": [0.0] * 7, "1": [0.0] * 7, "00": [-1.7976931348623157e308,
                      *[0.0] * 5, 2.99376046e292]}),
        [0, 1, 0, 0, 0, 0, 0],
    )
)  # fmt: skip
def test_tables_valid_by_construction_train(table: tuple[pd.DataFrame, list[Any]]) -> None:
    frame, labels = table
    if not valid_by_construction(frame, labels):  # e.g. equal draws: one distinct value
        return
    assert fits_or_fails_clearly(frame, labels) is not None


def test_the_validity_rule_is_not_vacuous() -> None:
    ok = pd.DataFrame({"a": [0.0, 1.0, np.nan]})
    assert valid_by_construction(ok, [0, 1, 1])
    assert not valid_by_construction(ok, [0, "1", 1])  # mixed label types
    assert not valid_by_construction(ok.assign(b=[np.inf, 0, 0]), [0, 1, 1])
    assert not valid_by_construction(ok.assign(b=["x", "y", "z"]), [0, 1, 1])


@settings(SETTINGS, max_examples=60)
@given(tables())
def test_dataframes_train_or_fail_clearly(table: tuple[pd.DataFrame, list[Any]]) -> None:
    fits_or_fails_clearly(*table)


@SETTINGS
@given(tables())
def test_numpy_arrays_train_or_fail_clearly(table: tuple[pd.DataFrame, list[Any]]) -> None:
    frame, labels = table
    fits_or_fails_clearly(frame.to_numpy(), np.asarray(labels, dtype=object))


@settings(SETTINGS, max_examples=25)
@given(tables(), st.sampled_from([",", ";"]))
def test_csv_files_read_train_or_fail_clearly(
    tmp_path_factory: pytest.TempPathFactory, table: tuple[pd.DataFrame, list[Any]], sep: str
) -> None:
    frame, labels = table
    path = Path(tmp_path_factory.mktemp("csv")) / "data.csv"
    frame.assign(target=labels).to_csv(path, index=False, sep=sep)
    try:
        data = read_table(path)
    except SteadyclfError:
        return
    if "target" not in data.columns:  # e.g. ';' is not the CSV separator: one column
        return
    fits_or_fails_clearly(data.drop(columns="target"), data["target"])


@settings(SETTINGS, max_examples=25)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_garbage_csv_files_fail_clearly(
    tmp_path_factory: pytest.TempPathFactory, content: bytes | str
) -> None:
    path = Path(tmp_path_factory.mktemp("csv")) / "data.csv"
    if isinstance(content, str):
        path.write_text("a,b,target\n" + content, encoding="utf-8")
    else:
        path.write_bytes(content)
    try:
        data = read_table(path)
    except SteadyclfError:
        return
    if data.shape[1] < 2:
        return
    fits_or_fails_clearly(data.iloc[:, :-1], data.iloc[:, -1])


@settings(SETTINGS, max_examples=3)
@given(st.integers(1000, 1500), st.integers(1, 4), st.floats(0.0, 0.2))
def test_thousands_of_columns(width: int, n: int, text_share: float) -> None:
    rng = np.random.default_rng(width)
    values = rng.normal(size=(2 * n, width)) * 10.0 ** rng.integers(-300, 300, size=width)
    frame = pd.DataFrame(values, columns=[f"c{j}" for j in range(width)])
    for j in range(int(text_share * width)):
        frame[f"c{j}"] = np.where(values[:, j] > 0, "pos", "neg")
    labels = [0, 1] * n
    clf = fits_or_fails_clearly(frame, labels)
    assert clf is not None  # nothing here is invalid: it must train


def test_single_row_is_a_clear_error() -> None:
    with pytest.raises(SteadyclfError, match="one class"):
        BinaryClassifier(max_epochs=2).fit(pd.DataFrame({"a": [1.0]}), [1])


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1e150, 1e300])
def test_extreme_magnitudes_still_learn(scale: float) -> None:
    """Not just finite: the standardisation holds whatever the magnitude."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 1))
    y = (x[:, 0] > 0).astype(int)
    clf = BinaryClassifier(random_state=0, max_epochs=30).fit(x * scale, y)
    assert clf.score(x * scale, y) > 0.95


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"hidden": (10**9,)}, "parameters"),
        ({"hidden": (64, 10**6, 10**6)}, "parameters"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"lr": math.nan}, "lr"),
        ({"lr": math.inf}, "lr"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"patience": -3}, "patience"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"hidden": (0,)}, "hidden"),
        ({"hidden": 64}, "hidden"),
    ],
)
def test_absurd_parameters_are_refused_before_any_allocation(
    params: dict[str, Any], match: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def no_allocation(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a network was built before the parameters were checked")

    monkeypatch.setattr(torch.nn.Linear, "__init__", no_allocation)
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ParameterError, match=match):
        BinaryClassifier(**params).fit(X, [0, 1] * 10)


@pytest.mark.parametrize(
    ("option", "match"),
    [
        (["--hidden", "1000000000"], "parameters"),
        (["--batch-size", "0"], "--batch-size"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--max-epochs", "0"], "max_epochs"),
        (["--checkpoint-every", "0"], "--checkpoint-every"),
    ],
)
def test_absurd_cli_options_are_one_line_errors(
    tmp_path: Path, option: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from steadyclf.cli import main

    data = tmp_path / "d.csv"
    pd.DataFrame({"x": np.arange(20.0), "y": [0, 1] * 10}).to_csv(data, index=False)
    code = main(["train", str(data), "--target", "y", "--out", str(tmp_path / "m"), *option])
    err = capsys.readouterr().err
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()

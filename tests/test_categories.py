"""One spelling of a categorical level for every reader (issue 22, item 2).

A level is the same whether its value came from a DataFrame column of floats, integers,
booleans, categories or text, from a CSV file (read whole by pandas or streamed as text
by Arrow, with a memory budget or without) or from Parquet; and prediction warns when
most of a column's values are levels the model never learned.
"""

from __future__ import annotations

import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import steadyclf
from steadyclf import BinaryClassifier, DataError, ModelFileError, UnseenLevelsWarning
from steadyclf.cli import main
from steadyclf.persistence import refresh_checksum
from steadyclf.schema.encoder import UNSEEN_WARNING_SHARE
from steadyclf.schema.roles import ColumnInfo
from steadyclf.schema.values import (
    category_key,
    category_strings,
    column_values,
    encode_categories,
)

FAST = {"hidden": (8,), "max_epochs": 20, "random_state": 0, "weight_decay": 1e-2}
FAST |= {"numeric_embedding": "none", "validation_fraction": 0.2, "n_members": 1}


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (5.0, "5"),
        (np.float64(5.0), "5"),
        (np.float32(5.0), "5"),
        (5, "5"),
        (np.int64(5), "5"),
        ("5", "5"),
        ("5.0", "5"),
        ("5.00", "5"),
        ("+5", "5"),
        ("05", "5"),
        ("5e0", "5"),
        (2.5, "2.5"),
        (np.float32(0.1), "0.1"),  # its own precision's shortest text, as a file holds it
        ("2.50", "2.5"),
        ("0.1", "0.1"),
        (-0.0, "0"),
        (True, "True"),
        (np.bool_(False), "False"),
        ("true", "True"),
        ("FALSE", "False"),
        ("12345678901234567890", "12345678901234567890"),  # exact, not through a float
        ("Oslo", "Oslo"),
        ("nan", "nan"),  # text that readers keep as text stays text
        (" 5", " 5"),
        ("٣", "٣"),  # a digit of another script is text
        ("1" * 100, "1" * 100),  # too long to be a number
    ],
)
def test_a_level_has_one_spelling(value: object, level: str) -> None:
    assert category_key(value) == level


_SPELLINGS = {
    "float": lambda v: v.astype(float),
    "int": lambda v: v.astype(np.int64),
    "nullable int": lambda v: v.astype("Int64"),
    "category of floats": lambda v: v.astype(float).astype("category"),
    "object of floats": lambda v: v.astype(float).astype(object),
    "text '5.0'": lambda v: v.map(lambda x: f"{x:.1f}").astype(str),
    "text '5'": lambda v: v.map(str).astype(str),
    "arrow text '5.0'": lambda v: v.map(lambda x: f"{x:.1f}").astype("string[pyarrow]"),
}


@pytest.mark.parametrize("spelling", list(_SPELLINGS))
def test_every_dtype_and_text_codes_the_same(spelling: str) -> None:
    values = pd.Series([1, 5, 3, 5, 2])
    levels = ["1", "2", "3", "4", "5"]
    expected = np.array([2, 6, 4, 6, 3])
    spelled = _SPELLINGS[spelling](values)
    np.testing.assert_array_equal(encode_categories(spelled, levels), expected)
    assert category_strings(spelled).tolist() == ["1", "5", "3", "5", "2"]


def _table(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    grade = rng.integers(1, 6, n).astype(float)  # floats 1.0-5.0, as in the issue
    grade[::17] = np.nan
    flag = rng.random(n) < 0.5
    x = rng.normal(size=n)
    y = (x + np.nan_to_num(grade - 3.0) + 0.8 * flag + rng.normal(size=n) > 0).astype(int)
    return pd.DataFrame({"x": x, "grade": grade, "flag": flag}), y


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[BinaryClassifier, Path, Path]:
    X, y = _table()
    clf = BinaryClassifier(categorical=["grade", "flag"], **FAST).fit(X, y)
    root = tmp_path_factory.mktemp("categories")
    return clf, clf.save(root / "model"), root


def _cli_probabilities(capsys: pytest.CaptureFixture[str], *args: object) -> np.ndarray:
    assert main(["predict", *map(str, args)]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out))["probability"].to_numpy()


def test_the_cli_reads_a_csv_as_python_reads_the_frame(
    fitted: tuple[BinaryClassifier, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    clf, model, root = fitted
    X, _ = _table(300, seed=1)
    grade, flag = clf.encoder_.categorical_columns
    assert sorted(grade.levels) == ["1", "2", "3", "4", "5"]  # floats 1.0-5.0
    assert sorted(flag.levels) == ["False", "True"]
    expected = clf.predict_proba(X)[:, 1]
    X.to_csv(root / "rows.csv", index=False)  # writes 5.0 and True
    X.to_parquet(root / "rows.parquet", index=False)
    text = X.assign(grade=X["grade"].map(lambda v: "" if np.isnan(v) else f"{v:g}"))
    text.to_csv(root / "ints.csv", index=False)  # writes 5
    # Same weights, same NumPy forward pass on the same codes: the same float64 numbers
    # up to the CSV's 17-digit round trip of x (1e-12 is far below any level's effect).
    for name in ("rows.csv", "ints.csv", "rows.parquet"):
        for budget in ([], ["--memory-budget", "64KB"]):
            got = _cli_probabilities(capsys, model, root / name, *budget)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, err_msg=name)
    for frame in (pd.read_csv(root / "rows.csv"), pd.read_csv(root / "ints.csv", dtype=str)):
        frame["x"] = frame["x"].astype(float)
        np.testing.assert_allclose(clf.predict_proba(frame)[:, 1], expected, atol=1e-12)
    loaded = steadyclf.load(model)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_mostly_unseen_levels_warn_once_in_python_and_on_the_command_line(
    fitted: tuple[BinaryClassifier, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    clf, model, root = fitted
    X, _ = _table(100, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict_proba(X)  # every level known: no warning
        some = X.assign(grade=np.where(np.arange(100) < 40, 7.0, X["grade"]))
        clf.predict_proba(some)  # 40 % unseen: under UNSEEN_WARNING_SHARE, no warning
    assert UNSEEN_WARNING_SHARE == 0.5
    spelled = X.assign(flag=np.where(X["flag"], "yes", "no"))  # another spelling
    with pytest.warns(UnseenLevelsWarning, match=r"100 of 100 values of 'flag' \(100%\)"):
        clf.predict(spelled)
    spelled.to_csv(root / "spelled.csv", index=False)
    assert main(["predict", str(model), str(root / "spelled.csv")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "not learn" in line]
    assert lines == [
        "steadyclf: warning: 100 of 100 values of 'flag' (100%) are levels the model did "
        "not learn in training (predicted as an unseen level); check how the column is "
        "spelled"
    ]


def test_saved_levels_are_read_in_todays_spelling_and_refused_twice() -> None:
    info = {"name": "g", "role": "categorical", "dtype": "object"}
    old = ColumnInfo.from_dict(info | {"levels": ["5.0", "true", "1", "1.0", "Oslo"]})
    # '1.0' comes after '1', which took its spelling: a text no reader gives holds its place.
    assert old.levels == ["5", "True", "1", "1.0 (a second spelling of '1')", "Oslo"]
    codes = encode_categories(pd.Series(["5.0", "5", "TRUE", "1.0", "Oslo", None]), old.levels)
    assert codes.tolist() == [2, 2, 3, 4, 6, 0]
    # A blank was a level of models saved before blanks were missing: no value reaches it.
    blank = ColumnInfo.from_dict(info | {"levels": ["", "a"]})
    assert blank.levels == ["'' (a blank: now read as missing)", "a"]
    assert encode_categories(pd.Series(["", "a", None]), blank.levels).tolist() == [0, 3, 0]
    with pytest.raises(ValueError, match=r"column 'g': levels lists the level 'a' twice"):
        ColumnInfo.from_dict(info | {"levels": ["a", "b", "a"]})


def test_a_model_file_listing_a_level_twice_is_refused(
    fitted: tuple[BinaryClassifier, Path, Path], tmp_path: Path
) -> None:
    _, model, _ = fitted
    copy = Path(shutil.copytree(model, tmp_path / "model"))
    index = json.loads((copy / "model.json").read_text())
    column = next(c for c in index["schema"]["columns"] if c["name"] == "grade")
    column["levels"][1] = column["levels"][0]
    (copy / "model.json").write_text(json.dumps(index))
    refresh_checksum(copy, files=False)  # re-signed: the levels' own check must refuse it
    with pytest.raises(ModelFileError, match="column 'grade': levels lists the level"):
        steadyclf.load(copy)


def test_an_empty_text_cell_is_missing_for_every_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A CSV file's empty field is missing (as pandas' read_csv reads it) and the ONNX graph
    # takes "" for a missing category: from a DataFrame, Parquet or Arrow strings, "" is
    # missing too, in training and in prediction. It was a level of its own there, and a
    # column of numbers with blanks, read as text, a categorical of every distinct number.
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n)
    city = rng.choice(["Oslo", "Bergen", ""], n)
    amount = np.where(rng.random(n) < 0.1, "", np.round(x * 3, 2).astype(str)).astype(object)
    X = pd.DataFrame({"x": x, "city": city, "amount": amount})
    y = (x + 1.5 * (city == "") > 0.5).astype(int)
    clf = BinaryClassifier(**FAST).fit(X, y)
    roles = {c.name: c for c in clf.encoder_.columns_}
    assert roles["amount"].role == "numeric" and roles["amount"].n_missing == (amount == "").sum()
    assert roles["city"].levels == ["Bergen", "Oslo"]
    assert roles["city"].n_missing == (city == "").sum()
    blank = X.assign(city=X["city"].replace("", None), amount=X["amount"].replace("", None))
    expected = clf.predict_proba(blank)[:, 1]
    for frame in (X, X.astype({"city": "string[pyarrow]", "amount": "string"})):
        np.testing.assert_allclose(clf.predict_proba(frame)[:, 1], expected, atol=1e-12)
    model = clf.save(tmp_path / "model")
    X.to_csv(tmp_path / "rows.csv", index=False)
    X.to_parquet(tmp_path / "rows.parquet", index=False)
    for name in ("rows.csv", "rows.parquet"):
        got = _cli_probabilities(capsys, model, tmp_path / name)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12, err_msg=name)
    # Trained from the files, the model reads the columns as it did from the frame.
    X.assign(y=y).to_csv(tmp_path / "train.csv", index=False)
    X.assign(y=y).to_parquet(tmp_path / "train.parquet", index=False)
    fast = ["--max-epochs", "2", "--hidden", "8", "--n-members", "1"]
    for name in ("train.csv", "train.parquet"):
        out = tmp_path / f"from-{name}"
        assert main(["train", str(tmp_path / name), "--target", "y", "--out", str(out), *fast]) == 0
        read = {c.name: c for c in steadyclf.load(out).encoder_.columns_}
        assert read["amount"].role == "numeric" and read["city"].levels == ["Bergen", "Oslo"]
        assert read["city"].n_missing == roles["city"].n_missing


def test_a_boolean_column_reads_numbers_by_value() -> None:
    # -0.0 is false as 0 is (it was refused: "holds -0.0, which is not true or false").
    values = pd.Series([1.0, -0.0, 0, np.float32(1.0), None, "yes", False], dtype=object)
    got = column_values("flag", values, "boolean")
    np.testing.assert_array_equal(got, [1.0, 0.0, 0.0, 1.0, np.nan, 1.0, 0.0])
    with pytest.raises(DataError, match=r"row 0 holds 2.0, which is not true or false"):
        column_values("flag", pd.Series([2.0, 0.0], dtype=object), "boolean")


def test_blanks_leave_the_target_and_odd_cells_to_their_own_rules(tmp_path: Path) -> None:
    # The summary read a blank target as missing while training kept its rows (so
    # --drop-missing-target then failed); a blank label is a value as before, in the file
    # and in memory alike. A cell holding an array is refused with its row, not by the
    # blank check's comparison ("truth value of an array is ambiguous").
    n = 60
    frame = pd.DataFrame({"x": np.arange(n, dtype=float), "y": ["yes", "no", ""] * (n // 3)})
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    for fit in (
        lambda: BinaryClassifier(**FAST).fit(frame[["x"]], frame["y"]),
        lambda: BinaryClassifier(**FAST).fit_files(tmp_path / "t.parquet", "y", context=None),
    ):
        with pytest.raises(DataError, match=r"3 classes|multiclass"):
            fit()
    cells = pd.DataFrame({"x": np.arange(6.0), "v": [np.arange(2), np.arange(3)] * 3})
    with pytest.raises(DataError, match=r"column 'v' holds a ndarray at row 0"):
        BinaryClassifier(**FAST).fit(cells, np.arange(6) % 2)

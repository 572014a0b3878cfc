import numpy as np
import pandas as pd
import pytest

from steadyclf import DataError, SchemaError
from steadyclf.schema.encoder import TabularEncoder
from steadyclf.schema.labels import encode_labels, split_target
from steadyclf.schema.roles import ColumnInfo
from steadyclf.schema.values import MISSING_CODE, UNSEEN_CODE


def _frame(n: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(20, 30, size=n),  # integers with repeats: numeric
            "income": rng.normal(5e4, 1e4, size=n),
            "city": rng.choice(["Oslo", "Rome", "Lima"], size=n),
            "member": rng.integers(0, 2, size=n).astype(bool),
            "customer_id": [f"C{i:04d}" for i in range(n)],
            "row_number": np.arange(n),
            "country": ["NO"] * n,
            "empty": [np.nan] * n,
            "signup": [f"2024-01-{i % 28 + 1:02d}" for i in range(n)],
        }
    )


def _roles(enc: TabularEncoder) -> dict[str, str]:
    return {c.name: c.role for c in enc.columns_}


def test_roles_are_inferred_with_reasons() -> None:
    enc = TabularEncoder.fit(_frame())
    assert _roles(enc) == {
        "age": "numeric",
        "income": "numeric",
        "city": "categorical",
        "member": "boolean",
        "customer_id": "dropped",
        "row_number": "dropped",
        "country": "dropped",
        "empty": "dropped",
        "signup": "dropped",
    }
    reasons = {c.name: c.reason for c in enc.columns_ if c.role == "dropped"}
    assert "ID-like" in reasons["customer_id"] and "ID-like" in reasons["row_number"]
    assert reasons["country"] == "constant (every value is 'NO')"
    assert reasons["empty"] == "all values missing"
    assert "dates" in reasons["signup"] and "2024-01-01" in reasons["signup"]
    assert enc.numeric_columns == ["age", "income", "member"]
    assert [c.name for c in enc.categorical_columns] == ["city"]


def test_overrides_win_over_inference() -> None:
    enc = TabularEncoder.fit(
        _frame(), categorical=["age"], numeric=["row_number", "signup"], drop=["income"]
    )
    roles = _roles(enc)
    assert roles["age"] == "categorical"
    assert roles["row_number"] == "numeric"
    assert roles["signup"] == "datetime"
    assert roles["income"] == "dropped"
    x_num, _ = enc.transform(_frame())
    signup = x_num[:, enc.numeric_columns.index("signup")]
    assert signup[0] == pd.Timestamp("2024-01-01", tz="UTC").timestamp()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"drop": ["nope"]}, r"'nope' given as an override is not in the data; columns: 'age'"),
        ({"drop": ["age"], "numeric": ["age"]}, "listed both as numeric and as drop"),
    ],
)
def test_bad_overrides(kwargs: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        TabularEncoder.fit(_frame(), **kwargs)


def test_datetime_dtype_is_used_as_seconds() -> None:
    frame = pd.DataFrame({"when": pd.date_range("2020-01-01", periods=4, freq="D")})
    enc = TabularEncoder.fit(frame)
    assert _roles(enc) == {"when": "datetime"}
    x_num, _ = enc.transform(frame)
    np.testing.assert_allclose(np.diff(x_num[:, 0]), 86400.0)


def test_missing_values_and_unseen_levels() -> None:
    train = pd.DataFrame({"x": [1.0, np.nan, 3.0, 4.0], "c": ["a", "b", None, "a"]})
    enc = TabularEncoder.fit(train)
    assert [c.describe() for c in enc.columns_] == [
        "x: numeric (1 missing -> median + indicator)",
        "c: categorical (2 levels, 1 missing -> own level)",
    ]
    test = pd.DataFrame({"x": [np.nan, 2.0], "c": ["zebra", None]})
    x_num, x_cat = enc.transform(test)
    assert np.isnan(x_num[0, 0]) and x_num[1, 0] == 2.0
    assert x_cat[:, 0].tolist() == [UNSEEN_CODE, MISSING_CODE]
    assert enc.transform(train)[1][:, 0].tolist() == [2, 3, MISSING_CODE, 2]


def test_vocabulary_is_capped_most_frequent_first() -> None:
    values = ["a"] * 5 + ["b"] * 3 + ["c", "d", "e"]
    enc = TabularEncoder.fit(pd.DataFrame({"c": values}), max_categories=2)
    info = enc.categorical_columns[0]
    assert info.levels == ["a", "b"] and info.n_levels == 5
    assert enc.vocab_sizes == [4]
    assert "2 of 5 levels" in info.describe()


def test_integer_categories_match_across_float_and_int_columns() -> None:
    # A column with missing values is read as float (3.0): it must still match level '3'.
    enc = TabularEncoder.fit(pd.DataFrame({"k": [3, 4, 3, 4]}), categorical=["k"])
    _, x_cat = enc.transform(pd.DataFrame({"k": [3.0, np.nan, 4.0]}))
    assert x_cat[:, 0].tolist() == [2, MISSING_CODE, 3]


def test_text_of_numbers_is_numeric_and_typos_are_named() -> None:
    enc = TabularEncoder.fit(pd.DataFrame({"n": ["1.5", "2", None, "7"]}))
    assert _roles(enc) == {"n": "numeric"}
    typo = pd.DataFrame({"n": [str(i) for i in range(30)] + ["12,5"]})
    with pytest.raises(DataError, match=r"column 'n' holds numbers except at row 30: '12,5'"):
        TabularEncoder.fit(typo)


def test_infinite_values_are_refused_at_fit_and_transform() -> None:
    with pytest.raises(DataError, match=r"column 'x' has an infinite value at row 2 \(1 in all\)"):
        TabularEncoder.fit(pd.DataFrame({"x": [1.0, 2.0, np.inf]}))
    enc = TabularEncoder.fit(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    with pytest.raises(DataError, match=r"column 'x' has an infinite value at row 1"):
        enc.transform(pd.DataFrame({"x": [1.0, -np.inf]}))


def test_transform_errors_name_column_row_and_value() -> None:
    enc = TabularEncoder.fit(pd.DataFrame({"x": [1.0, 2.0, 3.0], "b": [True, False, True]}))
    with pytest.raises(SchemaError, match=r"missing column 'x'; the model was trained on 'x', 'b'"):
        enc.transform(pd.DataFrame({"b": [True]}))
    with pytest.raises(DataError, match=r"column 'x' is numeric but row 1 holds 'abc'"):
        enc.transform(pd.DataFrame({"x": ["1", "abc"], "b": [True, False]}))
    with pytest.raises(DataError, match=r"column 'b' is boolean but row 0 holds 'maybe'"):
        enc.transform(pd.DataFrame({"x": [1.0], "b": ["maybe"]}))
    # Booleans read back as text (e.g. a CSV column with a gap) still work.
    x_num, _ = enc.transform(pd.DataFrame({"x": [1.0, 2.0], "b": ["True", None]}))
    assert x_num[0, 1] == 1.0 and np.isnan(x_num[1, 1])


def test_everything_missing_or_dropped_is_an_error() -> None:
    frame = pd.DataFrame({"a": [np.nan, np.nan], "b": [None, None]})
    with pytest.raises(DataError, match=r"no usable feature column \(a: all values missing; b"):
        TabularEncoder.fit(frame)


def test_duplicate_columns_are_refused() -> None:
    frame = pd.DataFrame([[1, 2, 3]], columns=["a", "a", "b"])
    with pytest.raises(DataError, match="duplicate column name 'a'"):
        TabularEncoder.fit(frame)


def test_out_of_range_counts_far_values_only() -> None:
    enc = TabularEncoder.fit(pd.DataFrame({"x": [0.0, 10.0], "flag": [True, False]}))
    x_num, _ = enc.transform(pd.DataFrame({"x": [-5.0, 15.0, 25.0, -11.0], "flag": [1, 0, 1, 0]}))
    assert enc.out_of_range(x_num) == {"x": 2}


def test_round_trip_through_dict() -> None:
    enc = TabularEncoder.fit(_frame())
    again = TabularEncoder.from_dict(enc.to_dict())
    assert again.to_dict() == enc.to_dict()
    for a, b in zip(enc.transform(_frame()), again.transform(_frame()), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unknown column role"):
        ColumnInfo.from_dict({"name": "x", "role": "magic", "dtype": "int64"})


def test_split_target_reports_and_drops_missing_rows() -> None:
    frame = pd.DataFrame({"x": range(6), "y": ["a", None, "b", None, "a", "b"]})
    with pytest.raises(DataError, match=r"target 'y' is missing on 2 rows \(first: 1, 3\)"):
        split_target(frame, "y")
    X, y, dropped = split_target(frame, "y", drop_missing=True)
    assert dropped.tolist() == [1, 3] and list(X.columns) == ["x"]
    assert X["x"].tolist() == [0, 2, 4, 5] and y.tolist() == ["a", "b", "a", "b"]
    with pytest.raises(DataError, match=r"target column 'z' is not in the data; columns: 'x', 'y'"):
        split_target(frame, "z")


def test_encode_labels_positive_class() -> None:
    enc = encode_labels(np.array(["yes", "no", "yes"]), positive="no")
    assert enc.classes.tolist() == ["yes", "no"] and enc.encoded.tolist() == [0, 1, 0]
    with pytest.raises(DataError, match=r"positive class 'maybe' is not in the target values"):
        encode_labels(np.array(["yes", "no"]), positive="maybe")
    with pytest.raises(
        DataError, match=r"3 classes \(values seen \['a', 'b', 'c'\], rows 1, 1, 1\)"
    ):
        encode_labels(np.array(["a", "b", "c"]))


# -- vectorised paths (issue: Speed) ---------------------------------------------------------
def _floats(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(rng.normal(size=(n, 3)) * [1.0, 1e3, 1e-3], columns=["a", "b", "c"])


def test_float64_frame_is_transformed_in_one_step_with_the_same_result() -> None:
    frame = _floats()
    enc = TabularEncoder.fit(frame)
    copied, codes = enc.transform(frame)
    view, _ = enc.transform(frame, copy=False)
    assert codes.shape == (30, 0) and copied.flags.writeable
    assert np.shares_memory(view, frame.to_numpy())  # no copy
    np.testing.assert_array_equal(view, copied)
    # An object column takes the per-column path: the same numbers.
    objects = frame.astype({"a": object})
    slow = TabularEncoder.fit(objects)
    assert slow.columns_[0].role == "numeric"
    np.testing.assert_array_equal(slow.transform(objects)[0], copied)


def test_transform_array_matches_transform_and_selects_columns() -> None:
    frame = _floats()
    frame["const"] = 1.0
    enc = TabularEncoder.fit(frame)  # 'const' is dropped
    x = frame.to_numpy()
    direct = enc.transform_array(x, list(frame.columns))
    assert direct is not None
    np.testing.assert_array_equal(direct[0], enc.transform(frame)[0])
    assert direct[0].shape == (30, 3)
    reordered = frame[["c", "const", "b", "a"]]
    again = enc.transform_array(reordered.to_numpy(), list(reordered.columns))
    assert again is not None
    np.testing.assert_array_equal(again[0], direct[0])


def test_transform_array_declines_what_needs_pandas() -> None:
    frame = _floats()
    frame["city"] = ["x", "y", "z"] * 10
    enc = TabularEncoder.fit(frame)
    assert enc.transform_array(np.zeros((2, 4)), ["a", "b", "c", "city"]) is None
    plain = TabularEncoder.fit(_floats())
    assert plain.transform_array(np.zeros((2, 2)), ["a", "b"]) is None  # 'c' is missing
    assert plain.transform_array(np.zeros((2, 3)), ["a", "a", "c"]) is None


@pytest.mark.parametrize("path", ["frame", "array"])
def test_infinite_values_are_refused_with_column_and_row(path: str) -> None:
    frame = _floats()
    enc = TabularEncoder.fit(frame)
    frame.loc[7, "b"] = np.inf
    frame.loc[9, "c"] = -np.inf
    with pytest.raises(DataError, match=r"column 'b' has an infinite value at row 7 \(1 in all\)"):
        if path == "frame":
            enc.transform(frame)
        else:
            enc.transform_array(frame.to_numpy(), list(frame.columns))


def test_constant_and_id_detection_without_hashing_numbers() -> None:
    n = 40
    frame = pd.DataFrame(
        {
            "flat": np.full(n, 2.5),
            "flat_with_gap": np.r_[np.full(n - 1, 2.5), np.nan],  # two values: 2.5 and missing
            "unique_floats": np.linspace(0, 1, n),  # floats are never IDs
            "ids": np.arange(n) * 3,
            "narrow_ints": np.arange(n) % 7,
            "signal": np.random.default_rng(0).normal(size=n),
        }
    )
    roles = _roles(TabularEncoder.fit(frame))
    assert roles == {
        "flat": "dropped",
        "flat_with_gap": "numeric",
        "unique_floats": "numeric",
        "ids": "dropped",
        "narrow_ints": "numeric",
        "signal": "numeric",
    }
    info = {c.name: c for c in TabularEncoder.fit(frame).columns_}
    assert info["flat_with_gap"].n_missing == 1 and info["flat_with_gap"].high == 2.5
    assert info["signal"].low == frame["signal"].min()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float_columns_get_the_roles_of_the_per_column_rules(dtype) -> None:
    rng = np.random.default_rng(4)
    n = 40_000  # more than one chunk of the vectorised pass
    columns = {
        "signal": rng.normal(size=n),
        "flat": np.full(n, 7.25),
        "gappy": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),
        "flat_with_gap": np.r_[np.full(n - 1, 1.5), np.nan],
        "late_values": np.r_[np.full(n - 5, np.nan), np.arange(5.0)],
        "empty": np.full(n, np.nan),
    }
    frame = pd.DataFrame(columns).astype(dtype)
    enc = TabularEncoder.fit(frame)
    for info in enc.columns_:  # the columns of one block get the roles each has alone
        alone = TabularEncoder.fit(frame[list(dict.fromkeys([info.name, "signal"]))])
        assert info == alone.columns_[0], info.name
    assert _roles(enc)["flat"] == "dropped" and _roles(enc)["late_values"] == "numeric"
    frame.loc[n - 2, "gappy"] = -np.inf
    with pytest.raises(DataError, match=rf"column 'gappy' has an infinite value at row {n - 2}"):
        TabularEncoder.fit(frame)


@pytest.mark.parametrize(
    "labels",
    [
        np.array([3, 7, 7, 3, 7]),
        np.array([True, False, True]),
        np.array([0, 1, 1], dtype=np.uint8),
        np.array([-5, 10**12, -5]),
    ],
)
def test_two_integer_labels_are_encoded_without_sorting_as_unique_would(labels) -> None:
    enc = encode_labels(labels)
    classes, inverse = np.unique(labels, return_inverse=True)
    np.testing.assert_array_equal(enc.classes, classes)
    assert enc.classes.dtype == classes.dtype
    np.testing.assert_array_equal(enc.encoded, inverse.astype(np.float32))
    flipped = encode_labels(labels, positive=classes[0])
    np.testing.assert_array_equal(flipped.encoded, 1 - inverse)


def test_three_integer_labels_still_refused() -> None:
    with pytest.raises(DataError, match=r"3 classes \(values seen \[1, 2, 3\], rows 2, 1, 1\)"):
        encode_labels(np.array([1, 2, 3, 1]))
    with pytest.raises(DataError, match="one class"):
        encode_labels(np.array([4, 4]))

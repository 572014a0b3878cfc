"""polars DataFrames are accepted as pandas ones are: through Arrow, numbers not copied."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from steadyclf import BinaryClassifier, DataError
from steadyclf.io.tables import from_polars


def _frames(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(100.0, 20.0, size=n)
    x[::7] = np.nan
    city = rng.choice(["Oslo", "Rome", "Lima"], size=n).astype(object)
    city[::11] = None
    flag = rng.random(n) > 0.5
    y = np.where((np.nan_to_num(x, nan=100.0) > 100) | (city == "Rome"), "sick", "healthy")
    pandas = pd.DataFrame({"x": x, "city": city, "z": rng.normal(size=n), "flag": flag})
    polars = pl.DataFrame(
        {"x": x, "city": list(city), "z": pandas["z"].to_numpy(), "flag": flag},
        schema_overrides={"city": pl.Utf8},
    ).with_columns(pl.col("x").fill_nan(None))  # polars marks missing numbers as null
    return pandas, polars, y


def test_fit_and_predict_on_polars_equal_pandas() -> None:
    pandas, polars, y = _frames()
    params = {"random_state": 0, "max_epochs": 20, "hidden": (8,)}
    from_pandas = BinaryClassifier(**params).fit(pandas, y)
    from_polars_ = BinaryClassifier(**params).fit(polars, pl.Series("y", y))
    assert list(from_polars_.feature_names_in_) == ["x", "city", "z", "flag"]
    assert [c.role for c in from_polars_.encoder_.columns_] == [
        c.role for c in from_pandas.encoder_.columns_
    ]
    np.testing.assert_allclose(
        from_polars_.predict_proba(polars), from_pandas.predict_proba(pandas), rtol=1e-12
    )
    # Either kind of frame predicts with either model.
    np.testing.assert_array_equal(
        from_pandas.predict_proba(polars), from_pandas.predict_proba(pandas)
    )
    assert from_polars_.predict(polars).tolist() == from_pandas.predict(pandas).tolist()


def test_categorical_and_enum_columns() -> None:
    _, polars, y = _frames()
    typed = polars.with_columns(
        pl.col("city").cast(pl.Categorical),
        pl.col("flag").cast(pl.Utf8).cast(pl.Enum(["false", "true"])),
    )
    clf = BinaryClassifier(random_state=0, max_epochs=5).fit(typed, y)
    roles = {c.name: c.role for c in clf.encoder_.columns_}
    assert roles["city"] == roles["flag"] == "categorical"
    assert clf.predict_proba(typed).shape == (len(y), 2)


def test_numbers_without_missing_values_are_not_copied() -> None:
    frame = pl.DataFrame({"a": np.arange(1000.0), "b": np.ones(1000)})
    converted = from_polars(frame)
    assert isinstance(converted, pd.DataFrame)
    assert np.shares_memory(converted["a"].to_numpy(), frame["a"].to_numpy())


def test_a_lazy_frame_is_refused_with_what_to_do() -> None:
    _, polars, y = _frames()
    with pytest.raises(DataError, match=r"LazyFrame holds no rows yet: pass frame.collect\(\)"):
        BinaryClassifier().fit(polars.lazy(), y)


def test_diagnose_takes_polars() -> None:
    import steadyclf

    pandas, polars, y = _frames()
    from_pandas = steadyclf.diagnose(pandas, y)
    from_polars_ = steadyclf.diagnose(polars, pl.Series(y))
    assert [f.kind for f in from_polars_.findings] == [f.kind for f in from_pandas.findings]

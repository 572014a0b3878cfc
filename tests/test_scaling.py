import numpy as np
import pytest

from steadyclf.schema.stats import RunningStats


def test_chunked_merge_equals_whole_array() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(1e3, 5.0, size=(1000, 4))
    whole = RunningStats.from_array(x)
    merged = RunningStats.empty(4)
    for chunk in np.array_split(x, 7):
        merged.update(chunk)
    np.testing.assert_allclose(merged.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.std, x.std(axis=0), rtol=1e-10)
    np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-10)


def test_merge_order_does_not_matter() -> None:
    rng = np.random.default_rng(1)
    parts = [rng.normal(size=(n, 2)) for n in (3, 50, 1)]
    a = RunningStats.empty(2)
    for p in parts:
        a.update(p)
    b = RunningStats.empty(2)
    for p in reversed(parts):
        b.update(p)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12)
    np.testing.assert_allclose(a.var, b.var, rtol=1e-12)


def test_tiny_signal_on_huge_offset_is_kept() -> None:
    hr = np.random.default_rng(0).normal(92, 10, size=(500, 1))
    x = 1e6 + 1e-6 * hr
    stats = RunningStats.from_array(x)
    z = (x - stats.mean) / stats.scale
    # float64 stores x to about 1e-10, i.e. 1e-5 of one standard deviation of the signal.
    np.testing.assert_allclose(z, (hr - hr.mean()) / hr.std(), atol=1e-4)
    assert np.corrcoef(z.ravel(), hr.ravel())[0, 1] > 0.999999


def test_std_of_a_tiny_spread_on_a_huge_offset_is_accurate() -> None:
    # Summing a column of values near 1e6 row by row rounds the mean by more than the
    # spread allows (1e-8 relative error on the std here); the corrected two-pass
    # formula gives the std to 1e-9 relative.
    hr = np.random.default_rng(0).normal(92, 5, size=(20000, 1))
    x = 1e6 + 1e-6 * hr
    exact = np.sqrt(np.mean((x.ravel() - np.mean(x.ravel())) ** 2))
    whole = RunningStats.from_array(np.column_stack([x, hr]))
    assert abs(whole.std[0] - exact) / exact < 1e-9


def test_constant_and_empty_columns_get_scale_one() -> None:
    x = np.column_stack([np.full(10, 7.0), np.full(10, np.nan), np.arange(10.0)])
    stats = RunningStats.from_array(x)
    assert stats.scale[0] == 1.0 and stats.scale[1] == 1.0
    assert stats.scale[2] == pytest.approx(np.arange(10.0).std())
    assert np.isfinite(stats.mean).all()


def test_nan_is_ignored() -> None:
    x = np.array([[1.0], [np.nan], [3.0]])
    stats = RunningStats.from_array(x)
    assert stats.count[0] == 2 and stats.mean[0] == 2.0


def test_pack_roundtrip() -> None:
    stats = RunningStats.from_array(np.arange(12.0).reshape(6, 2))
    back = RunningStats.from_arrays(stats.as_arrays())
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.m2, stats.m2)


@pytest.mark.parametrize("magnitude", [1e-300, 1e-160, 1e160, 1e300, 4e307])
def test_any_finite_magnitude_keeps_an_exact_std(magnitude: float) -> None:
    rng = np.random.default_rng(3)
    unit = rng.normal(size=(300, 2)) * [1.0, 0.25] + [0.0, 2.0]
    x = unit * magnitude
    whole = RunningStats.from_array(x)
    chunked = RunningStats.empty(2)
    for chunk in np.array_split(x, 5):
        chunked.update(chunk)
    for stats in (whole, chunked):
        assert np.isfinite(stats.std).all() and np.isfinite(stats.scale).all()
        np.testing.assert_allclose(stats.std / magnitude, unit.std(axis=0), rtol=1e-12)
        np.testing.assert_allclose(stats.mean / magnitude, unit.mean(axis=0), rtol=1e-12)
    back = RunningStats.from_arrays(whole.as_arrays())
    np.testing.assert_array_equal(back.std, whole.std)


def test_ordinary_magnitudes_are_unchanged_by_the_exponent() -> None:
    x = np.random.default_rng(4).normal(size=(100, 3)) * [1e-100, 1.0, 1e100]
    stats = RunningStats.from_array(x)
    assert stats.exponent is not None and not stats.exponent.any()
    np.testing.assert_array_equal(stats.var, stats.m2 / stats.count)


def test_float32_input_gives_the_statistics_of_its_float64_copy() -> None:
    x = np.random.default_rng(5).normal(1e3, 2.0, size=(50_000, 3)).astype(np.float32)
    a = RunningStats.from_array(x, chunk_rows=4096)
    b = RunningStats.from_array(x.astype(np.float64), chunk_rows=4096)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.m2, b.m2)


def test_selected_rows_give_the_statistics_of_their_copy() -> None:
    x = np.random.default_rng(6).normal(5.0, 3.0, size=(30_000, 4))
    x[::7, 1] = np.nan
    rows = np.flatnonzero(np.arange(30_000) % 10 != 3)
    a = RunningStats.from_array(x, chunk_rows=4096, rows=rows)
    b = RunningStats.from_array(x[rows], chunk_rows=4096)
    np.testing.assert_array_equal(a.count, b.count)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.m2, b.m2)


def test_statistics_without_a_subset_equal_the_rest() -> None:
    rng = np.random.default_rng(3)
    x = np.column_stack([1e6 + 1e-3 * rng.normal(size=1000), rng.exponential(5, 1000)])
    held = rng.random(1000) < 0.1
    rest = RunningStats.from_array(x).without(RunningStats.from_array(x[held]))
    direct = RunningStats.from_array(x[~held])
    np.testing.assert_array_equal(rest.count, direct.count)
    np.testing.assert_allclose(rest.mean, direct.mean, rtol=1e-14)
    np.testing.assert_allclose(rest.std, direct.std, rtol=1e-9)
    huge = RunningStats.from_array(1e200 * x[:, 1:])  # m2 kept in units of 4**exponent
    part = RunningStats.from_array(1e200 * x[held, 1:])
    np.testing.assert_allclose(
        huge.without(part).std, RunningStats.from_array(1e200 * x[~held, 1:]).std, rtol=1e-9
    )

import numpy as np

from steadyclf.schema.split import row_uniform, validation_mask


def test_split_depends_only_on_position_and_seed() -> None:
    whole = validation_mask(np.arange(10_000), 0.2, seed=3)
    pieces = np.concatenate(
        [validation_mask(np.arange(a, a + 2500), 0.2, seed=3) for a in range(0, 10_000, 2500)]
    )
    np.testing.assert_array_equal(whole, pieces)
    assert abs(whole.mean() - 0.2) < 0.02
    assert not np.array_equal(whole, validation_mask(np.arange(10_000), 0.2, seed=4))


def test_uniform_in_unit_interval() -> None:
    u = row_uniform(np.arange(100_000), seed=0)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01

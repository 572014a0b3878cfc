import numpy as np

from steadyclf.datasets import centred_nonlinear, heart_rate


def test_heart_rate_matches_the_original_problem() -> None:
    X, y = heart_rate(n=5000, random_state=1)
    assert list(X.columns) == ["HR"]
    assert abs(X["HR"].mean() - 92) < 0.5 and abs(X["HR"].std() - 10) < 0.5
    np.testing.assert_array_equal(y.to_numpy(), (X["HR"] >= 91).to_numpy().astype(int))


def test_heart_rate_is_reproducible() -> None:
    a, _ = heart_rate(n=10, random_state=3)
    b, _ = heart_rate(n=10, random_state=3)
    assert a.equals(b)


def test_centred_nonlinear_is_small_and_centred() -> None:
    X, y = centred_nonlinear(n=2000, random_state=0)
    assert X.shape == (2000, 2)
    assert np.all(np.abs(X.mean()) < 0.05) and np.all(X.std() < 1)
    assert set(np.unique(y)) == {0, 1}

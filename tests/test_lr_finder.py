import json
import math

import numpy as np
import pytest
import torch

from steadyclf import BinaryClassifier, ParameterError
from steadyclf.datasets import centred_nonlinear, heart_rate
from steadyclf.nn.modules import make_body
from steadyclf.train.lr_finder import find_lr


def _data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] - x[:, 1] > 0).float()


def _body(seed: int = 0, activation: str = "relu") -> torch.nn.Module:
    torch.manual_seed(seed)
    return make_body(3, (16,), activation, batchnorm=False)


def test_range_test_leaves_the_model_alone_and_records_the_curve() -> None:
    body = _body()
    before = {k: v.clone() for k, v in body.state_dict().items()}
    result = find_lr(body, *_data(), steps=50, min_lr=1e-5, max_lr=1.0)
    for key, value in body.state_dict().items():
        assert torch.equal(value, before[key])
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) <= 50
    assert result.lrs[0] == pytest.approx(1e-5)
    ratios = np.diff(np.log(result.lrs))
    np.testing.assert_allclose(ratios, ratios[0])  # geometric growth
    assert 1e-5 < result.lr < 1.0
    assert result.lr <= result.min_loss_lr / 3 * (1 + 1e-9)
    assert json.loads(json.dumps(result.to_dict()))["lr"] == result.lr


def test_range_test_stops_when_the_loss_blows_up() -> None:
    result = find_lr(_body(), *_data(), optimizer="sgd", min_lr=1e-3, max_lr=1e6, steps=80)
    assert result.diverged_at is not None
    assert len(result.lrs) < 80
    assert result.lr < result.diverged_at / 10


def test_no_descent_picks_a_tenth_of_where_the_test_ended() -> None:
    x, _ = _data()
    y = (torch.rand(len(x), generator=torch.Generator().manual_seed(1)) < 0.5).float()
    result = find_lr(_body(), x, y, min_lr=1e-7, max_lr=1e-5, steps=20)
    assert "never fell" in result.reason
    assert result.lr == pytest.approx(1e-6)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["steepest_lr"] is None  # no descent, no steepest point


def test_mini_batch_range_test_is_seeded() -> None:
    a = find_lr(_body(), *_data(), batch_size=32, steps=40, seed=3)
    b = find_lr(_body(), *_data(), batch_size=32, steps=40, seed=3)
    assert a.losses == b.losses and a.lr == b.lr


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_lr": 0.0}, "min_lr"),
        ({"min_lr": 1.0, "max_lr": 0.1}, "min_lr"),
        ({"steps": 3}, "steps"),
        ({"beta": 1.0}, "beta"),
    ],
)
def test_bad_range_is_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        find_lr(_body(), *_data(), **kwargs)


@pytest.mark.parametrize(
    ("dataset", "params"),
    [
        (heart_rate, {}),
        (centred_nonlinear, {}),
        (heart_rate, {"batch_size": 64}),
        (centred_nonlinear, {"optimizer": "sgd"}),
    ],
)
def test_auto_lr_is_stable_over_seeds(dataset, params: dict) -> None:  # type: ignore[no-untyped-def]
    X, y = dataset(n=400, random_state=0)
    picks = [
        BinaryClassifier(lr="auto", max_epochs=1, random_state=seed, **params).fit(X, y).lr_
        for seed in range(5)
    ]
    assert all(math.isfinite(p) and p > 0 for p in picks)
    assert max(picks) / min(picks) <= 3.0, picks


def test_auto_lr_is_actually_used() -> None:
    X, y = heart_rate(n=300, random_state=0)
    auto = BinaryClassifier(lr="auto", max_epochs=30, random_state=0).fit(X, y)
    picked = auto.lr_finder_.lr
    assert auto.lr_ == picked == auto.history_[0]["lr"] == auto.history_[0]["lr_finder"]
    assert picked != BinaryClassifier().fit(X, y).lr_  # not silently the default
    # Training with lr='auto' is training with the picked value, step for step.
    fixed = BinaryClassifier(lr=picked, max_epochs=30, random_state=0).fit(X, y)
    assert [r["train_loss"] for r in auto.history_] == [r["train_loss"] for r in fixed.history_]
    assert auto.score(X, y) > 0.95


def test_auto_lr_is_recorded_in_model_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    X, y = heart_rate(n=200, random_state=0)
    clf = BinaryClassifier(lr="auto", max_epochs=5, random_state=0).fit(X, y)
    clf.save(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "model.json").read_text())
    assert saved["training"]["lr"] == clf.lr_
    assert saved["history"][0]["lr_finder"] == clf.lr_ == saved["history"][0]["lr"]


def test_a_range_test_without_any_finite_loss_is_a_steadyclf_error() -> None:
    from steadyclf import TrainingDivergedError

    x, y = _data()
    body = _body()
    with torch.no_grad():
        body[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="no usable rate"):
        find_lr(body, x, y, steps=20)

"""Members trained together (larger data's ensemble): each learns as it would alone, the
fused and autograd paths agree, and the fit uses them where rows are held out."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from steadyclf import BinaryClassifier, policy
from steadyclf.datasets import heart_rate
from steadyclf.nn.modules import Members, mean_probability_logit
from steadyclf.nn.step import FusedMembers, fused_step
from steadyclf.train.trainer import TrainConfig, Trainer


def _data(n: int = 120, d: int = 5, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = (x[:, 0] + 0.5 * torch.randn(n, generator=g, dtype=dtype) > 0).to(dtype)
    w = torch.rand(n, generator=g, dtype=dtype) + 0.5
    return x, y, w


def _bodies(
    k: int, activation: type[nn.Module] = nn.ReLU, dtype: torch.dtype = torch.float64
) -> list[nn.Sequential]:
    torch.manual_seed(0)
    return [
        nn.Sequential(nn.Linear(5, 8), activation(), nn.Linear(8, 1)).to(dtype) for _ in range(k)
    ]


def _settings(**config) -> dict:
    # No schedule or stopping that reads the validation loss: that is the ensemble's.
    settings = dict(lr=0.02, max_epochs=3, batch_size=16, early_stopping=False, seed=3)
    return settings | config


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_each_member_learns_as_it_would_alone(fused: bool, optimizer: str) -> None:
    x, y, w = _data()
    bodies = _bodies(3)
    alone = [copy.deepcopy(b) for b in bodies]
    config = TrainConfig(**_settings(optimizer=optimizer, pos_weight=2.0), fused=fused)
    together = Trainer(Members(nn.ModuleList(bodies)), config).fit((x, y, w))
    assert (together._fused is not None) == fused
    for body, single in zip(bodies, alone, strict=True):
        Trainer(single, config).fit((x, y, w))
        for p, q in zip(body.parameters(), single.parameters(), strict=True):
            assert not torch.equal(p, q.new_zeros(q.shape))
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)
    # The members did not collapse into one: their own initial weights, their own paths.
    assert not torch.allclose(bodies[0][0].weight, bodies[1][0].weight)


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Tanh])
def test_fused_members_match_the_autograd_path(activation: type[nn.Module]) -> None:
    x, y, w = _data()
    runs = []
    for fused in (True, False):
        members = Members(nn.ModuleList(_bodies(3, activation)))
        config = TrainConfig(**_settings(schedule="onecycle"), fused=fused)
        runs.append(Trainer(members, config).fit((x, y, w)))
    a, b = runs
    assert isinstance(a._fused, FusedMembers) and b._fused is None
    for row_a, row_b in zip(a.history, b.history, strict=True):
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-9)
    for p, q in zip(a.module.parameters(), b.module.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("fused", [True, False])
def test_validation_loss_is_the_loss_of_the_mean_probability(fused: bool) -> None:
    # Validation rows are float32 (as the pipeline encodes them): float32 tolerances.
    x, y, _ = _data(dtype=torch.float32)
    members = Members(nn.ModuleList(_bodies(4, dtype=torch.float32)))
    trainer = Trainer(members, TrainConfig(**_settings(max_epochs=1), fused=fused))
    trainer.fit((x, y), (x, y))
    with torch.no_grad():
        logits = members(x).double()
    p = torch.sigmoid(logits).mean(1)
    expected = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    assert trainer.history[-1]["valid_loss"] == pytest.approx(float(expected), rel=1e-5)
    assert logits.shape == (len(x), 4)
    torch.testing.assert_close(
        mean_probability_logit(logits.t()), torch.logit(p), rtol=1e-9, atol=1e-9
    )


def test_members_of_other_bodies_train_through_autograd() -> None:
    bodies = [nn.Sequential(nn.BatchNorm1d(5), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))]
    assert fused_step(Members(nn.ModuleList(bodies * 2))) is None


def test_held_out_rows_train_an_ensemble_up_to_the_limit(monkeypatch) -> None:
    X, y = heart_rate(n=1200, random_state=1)
    params = dict(random_state=0, max_epochs=4, validation_fraction=0.2)
    clf = BinaryClassifier(**params).fit(X, y)
    assert len(clf.module_.bodies) == policy.LARGE_DATA_MEMBERS > 1
    assert clf.plan_["members"] == policy.LARGE_DATA_MEMBERS
    bodies = [b[0].weight.detach() for b in clf.module_.bodies]
    assert not torch.allclose(bodies[0], bodies[1])  # each its own initial weights
    # The model predicts the members' mean probability (torch and NumPy alike).
    proba = clf.predict_proba(X)[:, 1]
    assert np.all((proba > 0) & (proba < 1)) and clf.score(X, y) > 0.9
    monkeypatch.setattr(policy, "MEMBERS_MAX_ROWS", 900)  # 960 training rows: above it
    one = BinaryClassifier(**params).fit(X, y)
    assert len(one.module_.bodies) == 1 and one.plan_["members"] == 1


@pytest.mark.parametrize(
    ("params", "members"),
    [
        ({"validation_fraction": 0.2, "n_members": 1}, 1),  # the ensemble turned off
        ({"early_stopping": False, "n_members": 3}, 3),  # asked for: also without a hold-out
        ({"n_members": 2}, policy.SMALL_DATA_FOLDS),  # small data cross-fits its members
    ],
)
def test_n_members_sets_the_count_where_no_folds_are_cross_fitted(params, members) -> None:
    X, y = heart_rate(n=600, random_state=2)
    clf = BinaryClassifier(random_state=0, max_epochs=3, **params).fit(X, y)
    assert len(clf.module_.bodies) == clf.plan_["members"] == members


def test_the_cli_takes_n_members_and_refuses_a_bad_count(tmp_path, capsys) -> None:
    import steadyclf
    from steadyclf.cli import main

    X, y = heart_rate(n=600, random_state=2)
    data = tmp_path / "hr.csv"
    X.assign(y=y).to_csv(data, index=False)
    args = ["train", str(data), "--target", "y", "--max-epochs", "2", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "m"), "--validation-fraction", "0.2",
                 "--n-members", "2"]) == 0  # fmt: skip
    assert len(steadyclf.load(tmp_path / "m").module_.bodies) == 2
    assert main([*args, "--out", str(tmp_path / "bad"), "--n-members", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--n-members must be a positive integer or 'auto'" in err
    assert not (tmp_path / "bad").exists()

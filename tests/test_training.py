import math

import pytest
import torch
from torch import nn

from steadyclf.exceptions import TrainingDivergedError
from steadyclf.train.batches import EncodedRows, InMemoryBatches
from steadyclf.train.trainer import StopTraining, TrainConfig, Trainer


def _data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return x, (x[:, 0] > 0).float()


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))


def test_minibatch_training_learns() -> None:
    trainer = Trainer(
        _net(), TrainConfig(lr=0.01, max_epochs=30, batch_size=32, early_stopping=False)
    ).fit(_data())
    assert trainer.history[-1]["train_accuracy"] > 0.95
    assert len(trainer.history) == 30


def test_callback_can_stop_training() -> None:
    class StopAtThree:
        def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
            record["seen"] = True
            if record["epoch"] == 3:
                raise StopTraining

    trainer = Trainer(
        _net(), TrainConfig(lr=0.01, max_epochs=30, batch_size=None, callbacks=(StopAtThree(),))
    )
    trainer.fit(_data())
    assert len(trainer.history) == 3 and trainer.history[0]["seen"]


def test_divergence_rolls_back_and_lowers_the_rate() -> None:
    x, y = _data()
    x = x * 1e30  # loss overflows at lr 1e8 steps
    trainer = Trainer(
        _net(),
        TrainConfig(lr=1e30, max_epochs=5, batch_size=None, optimizer="sgd", early_stopping=False),
    )
    with pytest.raises(TrainingDivergedError, match="diverged"):
        trainer.fit((x, y))
    assert all(torch.isfinite(p).all() for p in trainer.module.parameters())


def test_recovery_continues_after_one_blow_up() -> None:
    class BlowUpOnce:
        done = False

        def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
            if not self.done:
                self.done = True
                with torch.no_grad():
                    next(trainer.module.parameters()).fill_(math.nan)

    trainer = Trainer(
        _net(),
        TrainConfig(
            lr=0.01, max_epochs=6, batch_size=None, early_stopping=False, callbacks=(BlowUpOnce(),)
        ),
    )
    trainer.fit(_data())
    assert trainer.recoveries == 1
    assert trainer.history[-1]["lr"] == pytest.approx(0.001)
    assert all(torch.isfinite(p).all() for p in trainer.module.parameters())


def test_giving_up_on_divergence_keeps_the_best_weights() -> None:
    class PoisonEveryEpoch:
        """Each finished epoch is followed by non-finite weights: every step must be undone."""

        def __init__(self) -> None:
            self.weights: dict[int, list[torch.Tensor]] = {}

        def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
            self.weights[trainer.epoch] = [p.detach().clone() for p in trainer.module.parameters()]
            with torch.no_grad():
                next(trainer.module.parameters()).fill_(math.inf)

    poison = PoisonEveryEpoch()
    trainer = Trainer(
        _net(),
        TrainConfig(
            lr=0.05, max_epochs=20, batch_size=None, early_stopping=False, callbacks=(poison,)
        ),
    )
    with pytest.raises(TrainingDivergedError, match=r"weights of epoch \d+ \(the best so far\)"):
        trainer.fit(_data())
    assert trainer.recoveries == 4 and trainer.best_epoch is not None
    losses = [r["train_loss"] for r in trainer.history]
    assert trainer.best_epoch == 1 + losses.index(min(losses))
    for kept, best in zip(
        trainer.module.parameters(), poison.weights[trainer.best_epoch], strict=True
    ):
        assert torch.equal(kept, best)


@pytest.mark.parametrize("check_every", [None, 3])
def test_state_dict_round_trip_continues_identically(check_every: int | None) -> None:
    x, y = _data(320)
    # With checks inside the epochs (8 steps each), on validation rows.
    valid = None if check_every is None else (x[256:], y[256:])

    def run(stop_at: int | None, state: dict | None = None) -> Trainer:
        class Hooks:
            def on_train_setup(self, trainer: Trainer) -> None:
                if state is not None:
                    trainer.load_state_dict(state)

            def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
                if trainer.epoch == stop_at:
                    raise StopTraining

        config = TrainConfig(
            lr=0.01,
            max_epochs=8,
            batch_size=32,
            schedule="plateau",
            check_every=check_every,
            callbacks=(Hooks(),),
        )
        return Trainer(_net(), config).fit((x[:256], y[:256]), valid)

    whole = run(None)
    half = run(3).state_dict()
    resumed = run(None, half)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]
    for a, b in zip(whole.module.parameters(), resumed.module.parameters(), strict=True):
        assert torch.equal(a, b)


def test_row_sized_buffers_are_reused_from_epoch_to_epoch() -> None:
    seen: list[tuple[int, ...]] = []

    x, y = _data(300)
    batches = InMemoryBatches(x[:250], y[:250], 32)

    class Pointers:
        def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
            own = [b.data_ptr() for b in trainer._buffers.values()]
            seen.append((*own, batches._order.data_ptr(), batches._labels.data_ptr()))

    config = TrainConfig(lr=0.01, max_epochs=3, batch_size=32, callbacks=(Pointers(),))
    trainer = Trainer(_net(), config).fit(batches, (x[250:], y[250:]))
    assert {"logits", "valid_logits"} <= set(trainer._buffers)
    assert len(seen) == 3 and seen[0] == seen[1] == seen[2]


def test_loss_and_accuracy_in_chunks_equal_the_whole() -> None:
    from steadyclf.train.trainer import _loss_and_accuracy

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1000, generator=g, dtype=torch.float64)
    y = (torch.rand(1000, generator=g) > 0.4).double()
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(2.0, dtype=torch.float64))
    loss, correct, n = _loss_and_accuracy(logits, y, loss_fn, chunk_rows=64)
    loss, accuracy = loss / n, correct / n
    assert n == len(y)
    assert loss == pytest.approx(float(loss_fn(logits, y)), rel=1e-12)
    assert accuracy == float(((logits > 0) == (y > 0.5)).double().mean())
    # Row weights: sums weighted in every chunk, and the total weight in place of n.
    w = torch.rand(1000, generator=g, dtype=torch.float64) * 3
    loss, correct, total = _loss_and_accuracy(logits, y, loss_fn, chunk_rows=64, w=w)
    weighted = nn.BCEWithLogitsLoss(weight=w, pos_weight=loss_fn.pos_weight)
    assert total == pytest.approx(float(w.sum()), rel=1e-12)
    assert loss / total == pytest.approx(float(weighted(logits, y)) / float(w.mean()), rel=1e-12)
    right = ((logits > 0) == (y > 0.5)).double()
    assert correct / total == pytest.approx(float((right * w).sum() / w.sum()), rel=1e-12)


class _RecordPenalty:
    """Records the penalty at the weights each full-batch loss is taken at."""

    def __init__(self) -> None:
        self.penalties: list[float] = []

    def on_train_begin(self, trainer: Trainer) -> None:
        self.penalties.append(trainer._penalty())

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        self.penalties.append(trainer._penalty())


def _best_epoch(values: list[float], tol: float) -> int:
    """Early stopping's rule: the last epoch that improved on the best by more than tol."""
    best, epoch = math.inf, 0
    for i, value in enumerate(values, start=1):
        if best == math.inf or value < best - tol * abs(best):
            best, epoch = value, i
    return epoch


@pytest.mark.parametrize(("optimizer", "decay"), [("adam", 1e-2), ("sgd", 1e-2), ("adam", 0.0)])
def test_without_validation_the_penalised_objective_is_watched(
    optimizer: str, decay: float
) -> None:
    record = _RecordPenalty()
    cfg = TrainConfig(
        lr=0.05,
        max_epochs=300,
        batch_size=None,
        optimizer=optimizer,
        weight_decay=decay,
        patience=5,
        schedule="plateau",
        callbacks=(record,),
    )
    x, y = _data()
    flip = torch.rand(len(y), generator=torch.Generator().manual_seed(1)) < 0.2
    trainer = Trainer(_net(), cfg).fit((x, torch.where(flip, 1 - y, y)))  # noisy: converges
    squares = sum(float(p.detach().double().pow(2).sum()) for p in trainer.module.parameters())
    assert trainer._penalty() == pytest.approx(0.5 * decay * squares)
    objective = [
        r["train_loss"] + p for r, p in zip(trainer.history, record.penalties, strict=False)
    ]
    assert trainer.best_epoch == _best_epoch(objective, cfg.tol)
    assert trainer.stopped_early and len(trainer.history) < 300
    if decay:  # the same rule on the bare loss picks another epoch: the penalty counts
        losses = [r["train_loss"] for r in trainer.history]
        assert _best_epoch(losses, cfg.tol) != trainer.best_epoch


def test_adamw_decay_is_not_an_objective_term() -> None:
    cfg = TrainConfig(lr=0.01, max_epochs=2, batch_size=None, optimizer="adamw", weight_decay=0.1)
    assert Trainer(_net(), cfg).fit(_data())._penalty() == 0.0


def _logistic_rows(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from a logistic model of the features: a floor the network soon reaches."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    p = torch.sigmoid(2 * x[:, 0] - x[:, 1])
    return x, (torch.rand(n, generator=g) < p).float()


def test_checks_inside_long_epochs_stop_sooner_on_the_best_weights() -> None:
    train, valid = _logistic_rows(20_000, 0), _logistic_rows(5_000, 1)

    def run(check_every: int | None) -> Trainer:
        config = TrainConfig(
            lr=0.02, max_epochs=60, batch_size=256, schedule="plateau", check_every=check_every
        )
        return Trainer(_net(), config).fit(train, valid)

    # 79 steps an epoch: checks after steps 20, 40 and 60, and at the end of the epoch.
    checked, per_epoch = run(20), run(None)
    assert checked.stopped_early and per_epoch.stopped_early
    assert len(checked.history) <= 12 and len(checked.history) < len(per_epoch.history)
    assert all(r["checks"] == 4 for r in checked.history[:-1])
    assert "checks" not in per_epoch.history[0]
    # Converged all the same: the best validation loss of the run that checked each epoch.
    assert checked.best_loss == pytest.approx(per_epoch.best_loss, rel=5e-3)
    # The weights kept are those of the best check, which may fall inside an epoch.
    rows = EncodedRows(3, len(valid[1]), torch.device("cpu"))
    rows.add(*valid)
    kept, _ = checked.evaluate(rows, nn.BCEWithLogitsLoss())
    assert kept == pytest.approx(checked.best_loss, rel=1e-6)
    assert checked.best_loss <= min(r["valid_loss"] for r in checked.history)
    assert checked.best_loss < checked.history[-1]["valid_loss"]


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_checks_inside_epochs_leave_epoch_schedules_by_the_epoch(schedule: str) -> None:
    x, y = _logistic_rows(1_200, 0)

    def rates(check_every: int | None) -> list[float]:
        config = TrainConfig(
            lr=0.01,
            max_epochs=8,
            batch_size=100,
            schedule=schedule,
            early_stopping=False,
            check_every=check_every,
        )
        trainer = Trainer(_net(), config).fit((x[:1_000], y[:1_000]), (x[1_000:], y[1_000:]))
        return [r["lr"] for r in trainer.history]

    checked = rates(3)  # 10 steps an epoch: checks after 3, 6 and 9 steps
    assert checked == rates(None) and len(set(checked)) > 1

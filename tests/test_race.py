"""Large data: candidate networks race their first epochs on the hold-out."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from steadyclf.nn.modules import make_body
from steadyclf.train.batches import InMemoryBatches
from steadyclf.train.race import ContinueFrom, race, race_epochs
from steadyclf.train.trainer import TrainConfig, Trainer


def _rows(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    # A label that flips with the sign of sin(4 x0): periodic embeddings of x0 fit it.
    y = (np.sin(4 * x[:, 0]) + 0.3 * rng.normal(size=n) > 0).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def _body(periodic: tuple[int, ...]) -> torch.nn.Sequential:
    generator = torch.Generator().manual_seed(0)
    return make_body(3, (16,), "relu", batchnorm=False, generator=generator, periodic=periodic)


def test_race_length_covers_enough_rows() -> None:
    assert race_epochs(800_000, 300) == 1
    assert race_epochs(100_000, 300) == 3
    assert race_epochs(10_000, 5) == 5  # never past max_epochs


def test_the_better_network_wins_and_continues_as_if_alone() -> None:
    x, y = _rows(3000, 0)
    vx, vy = _rows(600, 1)
    config = TrainConfig(lr=1e-2, max_epochs=12, batch_size=256, schedule="plateau", seed=3)
    batches = InMemoryBatches(x, y, 256)
    plain, embedded = _body(()), _body((0,))
    result = race(
        [(plain, batches, (vx, vy), ()), (embedded, batches, (vx, vy), ())], config, None, epochs=4
    )
    assert result.chosen == 1  # the periodic label: the embedded network is ahead
    assert result.losses[1] is not None and result.losses[0] is not None
    assert result.losses[1] < result.losses[0]
    winner = _body((0,))
    continued = Trainer(embedded, replace(config, callbacks=(ContinueFrom(result.state),)))
    continued.fit(InMemoryBatches(x, y, 256), (vx, vy))
    alone = Trainer(winner, config).fit(InMemoryBatches(x, y, 256), (vx, vy))
    # The same kernels on the same shapes in one process: the continued run is the
    # uninterrupted one, epoch for epoch.
    assert [r["valid_loss"] for r in continued.history] == [r["valid_loss"] for r in alone.history]
    for a, b in zip(embedded.parameters(), winner.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_winner_that_stopped_during_the_race_is_not_called_a_stall() -> None:
    """The race lasts the whole run here (its epochs cover 900 rows' early stop): the
    winner's trainer goes on with no epoch to run, and its stall detector, which watched
    the race, must judge the run it saw, not an empty one ("after 0 epochs the training
    loss (best inf) is no better than ..." was reported on every such fit)."""
    from sklearn.datasets import make_classification

    from steadyclf import BinaryClassifier

    X, y = make_classification(900, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    clf = BinaryClassifier(random_state=0, validation_fraction=0.2, hidden=(8,)).fit(X, y)
    assert clf.data_["race"]["epochs"] > clf.n_iter_  # the winner stopped within the race
    assert clf.history_[-1]["train_loss"] < 0.5  # it learned: the base rate's loss is 0.69
    assert clf.warnings_ == []
    assert not [r for r in clf.history_ if r.get("warnings")]

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

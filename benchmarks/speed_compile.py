"""Would ``torch.compile`` speed up training? (issue 5: add it only if it measurably helps)

Trains the 20 -> 64 -> 1 ReLU network with Adam on 100,000 random rows, one thread, one
epoch at a time: steadyclf's hand-written step (``FusedMLP`` + ``LeanAdamStep``, what
``BinaryClassifier`` runs) against the usual autograd step compiled with
``torch.compile`` (inductor, default mode; the fused Adam step left eager, as torch
recommends). Prints the first epoch's time, compilation included, and the rows/s of the
best of the next two epochs.

Run: ``python benchmarks/speed_compile.py`` (about a minute, most of it compiling).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from steadyclf.nn.optim import LeanAdamStep, make_optimizer
from steadyclf.nn.step import FusedMLP

N_ROWS = 100_000


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_ROWS, 20, generator=g)
    return x, (x[:, 0] > 0).float()


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1))


def steadyclf_epoch(batch: int) -> Callable[[], None]:
    x, y = _data()
    net = _net()
    fused = FusedMLP.from_module(net)
    step = LeanAdamStep.for_optimizer(make_optimizer("adam", net.parameters(), 1e-3, 0.0))
    assert fused is not None and step is not None

    def run() -> None:
        for start in range(0, N_ROWS, batch):
            fused.forward_backward(x[start : start + batch], y[start : start + batch])
            step()

    return run


def compiled_epoch(batch: int) -> Callable[[], None]:
    x, y = _data()
    net = _net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    loss_fn = nn.BCEWithLogitsLoss()

    def forward_backward(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(xb).reshape(-1), yb)
        loss.backward()
        return loss

    compiled = torch.compile(forward_backward)

    def run() -> None:
        for start in range(0, N_ROWS - batch + 1, batch):  # whole batches: one shape
            compiled(x[start : start + batch], y[start : start + batch])
            optimizer.step()

    return run


def main() -> None:
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, one thread, {N_ROWS:,} rows, 20 -> 64 -> 1, Adam")
    print("| batch | step | first epoch s (compile included) | rows/s after |")
    print("|---|---|---|---|")
    for batch in (256, 1024):
        for name, make in (("steadyclf", steadyclf_epoch), ("torch.compile", compiled_epoch)):
            started = time.perf_counter()
            run = make(batch)
            run()
            first = time.perf_counter() - started
            best = float("inf")
            for _ in range(2):
                started = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - started)
            print(f"| {batch} | {name} | {first:.2f} | {N_ROWS / best:,.0f} |", flush=True)


if __name__ == "__main__":
    main()

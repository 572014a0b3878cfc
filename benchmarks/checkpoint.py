"""What checkpoints cost, and that resuming reproduces the uninterrupted run (issue 7).

For a few model sizes, trains ``BinaryClassifier`` on synthetic tabular data three ways:
without checkpoints, with ``Checkpoint(every=1)`` (a checkpoint after every epoch), and
interrupted halfway then resumed from the checkpoint. Reports the training time of each,
the time of one checkpoint write, the checkpoint's size on disk, and whether the resumed
model's weights are bit-for-bit those of the uninterrupted run.

Run: ``python benchmarks/checkpoint.py [--quick]``.
Writes ``benchmarks/results/checkpoint.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from steadyclf import BinaryClassifier
from steadyclf.callbacks import Checkpoint
from steadyclf.train.trainer import StopTraining, Trainer

RESULTS = Path(__file__).parent / "results"
#: (rows, columns, hidden layers): small, medium and a wider network.
CASES = [(5_000, 10, (64,)), (20_000, 30, (256, 128)), (20_000, 100, (1024, 512))]
EPOCHS = 10


def make_data(rows: int, columns: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, columns)) * rng.uniform(0.1, 100, size=columns)
    w = rng.normal(size=columns) / x.std(axis=0)
    y = (x @ w + rng.normal(size=rows) > 0).astype(int)
    return pd.DataFrame(x, columns=[f"c{j}" for j in range(columns)]), y


class TimedCheckpoint(Checkpoint):
    """A Checkpoint that records how long each write takes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds: list[float] = []

    def save(self, trainer: Trainer) -> Path:
        started = time.perf_counter()
        path = super().save(trainer)
        self.seconds.append(time.perf_counter() - started)
        return path


class StopAt:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if trainer.epoch == self.epoch:
            raise StopTraining


def run_case(rows: int, columns: int, hidden: tuple[int, ...]) -> dict[str, Any]:
    X, y = make_data(rows, columns)
    params: dict[str, Any] = dict(
        hidden=hidden, max_epochs=EPOCHS, batch_size=512, random_state=0, early_stopping=False
    )
    root = Path(tempfile.mkdtemp())
    try:
        started = time.perf_counter()
        plain = BinaryClassifier(**params).fit(X, y)
        plain_s = time.perf_counter() - started

        every = TimedCheckpoint(root / "every", every=1)
        started = time.perf_counter()
        BinaryClassifier(**params).fit(X, y, callbacks=[every])
        every_s = time.perf_counter() - started
        size = sum(p.stat().st_size for p in (root / "every").iterdir())

        BinaryClassifier(**params).fit(
            X, y, callbacks=[Checkpoint(root / "half", every=1), StopAt(EPOCHS // 2)]
        )
        resumed = BinaryClassifier(**params).fit(
            X, y, callbacks=[Checkpoint(root / "half", every=1, resume=True)]
        )
        identical = all(
            torch.equal(a, b)
            for a, b in zip(
                plain.module_.state_dict().values(),
                resumed.module_.state_dict().values(),
                strict=True,
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n_params = sum(p.numel() for p in plain.module_.body.parameters())
    return {
        "rows": rows,
        "columns": columns,
        "hidden": list(hidden),
        "parameters": n_params,
        "train_s": round(plain_s, 3),
        "train_with_checkpoints_s": round(every_s, 3),
        "overhead_pct": round(100 * (every_s - plain_s) / plain_s, 1),
        "write_ms_median": round(1000 * statistics.median(every.seconds), 2),
        "checkpoint_mb": round(size / 1e6, 3),
        "resumed_bit_identical": identical,
    }


def to_markdown(results: list[dict[str, Any]], command: str) -> str:
    lines = [
        f"# Checkpoint cost and resume fidelity ({EPOCHS} epochs, batch 512, CPU)",
        "",
        f"Command: `{command}`; {platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads.",
        "",
        "| rows | columns | hidden | parameters | train s | with a checkpoint every epoch s "
        "| overhead | one write ms (median) | checkpoint MB | resumed = uninterrupted |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['rows']:,} | {r['columns']} | {tuple(r['hidden'])} | {r['parameters']:,} "
            f"| {r['train_s']:.2f} | {r['train_with_checkpoints_s']:.2f} "
            f"| {r['overhead_pct']:+.1f} % | {r['write_ms_median']:.1f} "
            f"| {r['checkpoint_mb']:.2f} | {'bit-identical' if r['resumed_bit_identical'] else 'DIFFERENT'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Only the smallest case.")
    args = parser.parse_args()
    cases = CASES[:1] if args.quick else CASES
    results = [run_case(*case) for case in cases]
    command = "python benchmarks/checkpoint.py" + (" --quick" if args.quick else "")
    text = to_markdown(results, command)
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "checkpoint.md").write_text(text)
        (RESULTS / "checkpoint.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

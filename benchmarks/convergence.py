"""Convergence on raw, badly scaled inputs with default settings (issue: Core, items 3-4).

For the heart-rate data (HR ~ N(92, 10), y = HR >= 91) and for every affine rescaling
``a * HR + b`` with a in {1e-6, 1e-3, 1, 1e3, 1e6} and b in {-1e6, 0, 1e6}, trains
``BinaryClassifier()`` with default settings (full batch on 1000 rows) for 5 seeds and
reports the first epoch from which the training log-loss stays below 0.1 and the training
accuracy stays at or above 0.99 (median over seeds).

Run: ``make convergence`` (or ``python benchmarks/convergence.py [--seeds 5]``).
Writes ``benchmarks/results/convergence.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import torch

from steadyclf import BinaryClassifier
from steadyclf.datasets import heart_rate

SCALES = (1e-6, 1e-3, 1.0, 1e3, 1e6)
OFFSETS = (-1e6, 0.0, 1e6)
RESULTS = Path(__file__).parent / "results"


def epochs_to_converge(
    history: list[dict], loss: float = 0.1, accuracy: float = 0.99
) -> int | None:
    """First epoch from which both criteria hold until the end of training."""
    first = None
    for row in history:
        ok = row["train_loss"] < loss and row["train_accuracy"] >= accuracy
        if ok and first is None:
            first = row["epoch"]
        elif not ok:
            first = None
    return first


def run_case(a: float, b: float, seeds: int) -> dict:
    epochs = []
    for seed in range(seeds):
        X, y = heart_rate(n=1000, random_state=seed)
        clf = BinaryClassifier(random_state=seed).fit(a * X + b, y)
        epochs.append(epochs_to_converge(clf.history_))
    converged = [e for e in epochs if e is not None]
    median = statistics.median(converged) if len(converged) == len(epochs) else None
    return {"a": a, "b": b, "epochs": epochs, "median": median}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = run_case(1.0, 0.0, args.seeds)
    rows = [run_case(a, b, args.seeds) for a in SCALES for b in OFFSETS]
    lines = [
        f"Heart-rate data, 1000 rows, `BinaryClassifier()` defaults, {args.seeds} seeds "
        f"({platform.machine()}, torch {torch.__version__}, 1 thread).",
        "",
        "| a | b | epochs to loss<0.1 & acc>=0.99 (per seed) | median | vs a=1,b=0 |",
        "|---|---|---|---|---|",
    ]
    ok = base["median"] is not None and base["median"] <= 20
    for r in rows:
        ratio = r["median"] / base["median"] if r["median"] and base["median"] else None
        ok &= ratio is not None and abs(ratio - 1) <= 0.2
        lines.append(
            f"| {r['a']:g} | {r['b']:g} | {r['epochs']} | {r['median']} | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'} |"
        )
    lines += [
        "",
        f"Untransformed median: {base['median']} epochs (target: at most 20). All within +-20 %: {ok}",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "convergence.md").write_text(text + "\n")
    (RESULTS / "convergence.json").write_text(
        json.dumps({"base": base, "cases": rows, "ok": ok}, indent=2)
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()

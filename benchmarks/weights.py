"""Row weights: what they equal, and what they cost (the README, "Weights").

Equivalences, on ``make_classification(300, 6)`` with columns on scales from 0.1 to 1000,
full batch, every row training, 60 epochs (nothing placed by row position, no stopping
decision), as ``tests/test_weights.py`` asserts them:

- integer weights 0-3 against the rows repeated that many times (``normalize`` robust
  and standardize): largest difference of the predicted probabilities and of the scaling
  statistics; the same weights times 0.01;
- rows of weight 0 against the data without them;
- weight k = 4 on the positives against ``pos_weight=4`` (unscaled inputs, no calibration,
  no weight decay: the loss alone).

Speed, on ``make_classification(50_000, 20)`` as float32, one thread: the fastest epoch of
unweighted and weighted fits, full batch (300 epochs) and batch 256 (15 epochs). With
``--baseline SRC`` (the ``src`` directory of another checkout, e.g. the commit before the
weights), its unweighted fits run too, alternating with this code's in fresh processes,
``--rounds`` times: the unweighted path must not get slower.

Run: ``python benchmarks/weights.py [--baseline ../old/src] [--rounds 6]``.
Writes ``benchmarks/results/weights.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
PLAIN = dict(
    random_state=0, validation_fraction=0.0, early_stopping=False, max_epochs=60, batch_size=None
)
SPEED = {
    "full batch": dict(batch_size=None, max_epochs=300, early_stopping=False),
    "batch 256": dict(batch_size=256, max_epochs=15, early_stopping=False),
}


def _data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(n, 6, n_informative=4, random_state=0)
    return X * [1, 10, 100, 1e3, 0.1, 5] + [0, 5, -50, 1e4, 0, 1], y


def equivalences() -> dict[str, float]:
    """Largest differences between fits that should be the same."""
    from steadyclf import BinaryClassifier

    X, y = _data()
    w = np.random.default_rng(2).integers(0, 4, size=len(y))

    def proba(clf: Any) -> np.ndarray:
        return clf.predict_proba(X)[:, 1]

    def scaling(clf: Any) -> np.ndarray:
        inputs = clf.module_.encoder
        parts = (inputs.impute.median, inputs.normalize.center, inputs.normalize.scale)
        return np.concatenate([p.numpy() for p in parts])

    out: dict[str, float] = {}
    for normalize in ("robust", "standardize"):
        params = {**PLAIN, "normalize": normalize}
        weighted = BinaryClassifier(**params).fit(X, y, sample_weight=w)
        repeated = BinaryClassifier(**params).fit(X.repeat(w, axis=0), y.repeat(w))
        scaled = BinaryClassifier(**params).fit(X, y, sample_weight=0.01 * w)
        relative = np.abs(scaling(weighted) - scaling(repeated)) / np.abs(scaling(repeated))
        out[f"integer weights vs repeated rows, {normalize}: probabilities"] = float(
            np.abs(proba(weighted) - proba(repeated)).max()
        )
        out[f"integer weights vs repeated rows, {normalize}: scaling (relative)"] = float(
            relative.max()
        )
        out[f"weights x 0.01 vs weights, {normalize}: probabilities"] = float(
            np.abs(proba(scaled) - proba(weighted)).max()
        )
    kept = w > 0
    zero = BinaryClassifier(**PLAIN).fit(X, y, sample_weight=w)
    dropped = BinaryClassifier(**PLAIN).fit(X[kept], y[kept], sample_weight=w[kept])
    out["zero weights vs dropped rows: probabilities"] = float(
        np.abs(proba(zero) - proba(dropped)).max()
    )
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    params = {**PLAIN, "normalize": "none", "calibration": "none", "weight_decay": 0.0}
    by_weight = BinaryClassifier(**params).fit(Xs, y, sample_weight=np.where(y == 1, 4.0, 1.0))
    by_pos_weight = BinaryClassifier(**params, pos_weight=4.0).fit(Xs, y)
    out["weight 4 on positives vs pos_weight=4: probabilities"] = float(
        np.abs(by_weight.predict_proba(Xs)[:, 1] - by_pos_weight.predict_proba(Xs)[:, 1]).max()
    )
    return out


def speed_worker(weighted: bool) -> dict[str, float]:
    """Fastest epoch (seconds) of each set-up, in this process (one thread)."""
    import torch
    from sklearn.datasets import make_classification

    from steadyclf import BinaryClassifier

    torch.set_num_threads(1)
    X, y = make_classification(50_000, 20, n_informative=10, random_state=0)
    X = X.astype(np.float32)
    # No sample_weight argument without weights: the baseline's fit may not take one.
    weights = {"sample_weight": np.random.default_rng(0).integers(1, 4, len(y)).astype(float)}
    out = {}
    for name, params in SPEED.items():
        clf = BinaryClassifier(random_state=0, validation_fraction=0.1, **params)
        clf.fit(X, y, **(weights if weighted else {}))
        out[name] = min(r["seconds"] for r in clf.history_[1:])
    return out


def _speed(src: str | None, weighted: bool) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if src is not None:
        env["PYTHONPATH"] = src
    command = [sys.executable, __file__, "--worker", "weighted" if weighted else "plain"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def speeds(baseline: str | None, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Fastest epoch per run: this code unweighted and weighted, the baseline unweighted."""
    runs: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        kinds = [("unweighted", None, False), ("weighted", None, True)]
        if baseline is not None:
            kinds.insert(0, ("baseline, unweighted", baseline, False))
        for label, src, weighted in kinds:
            for name, seconds in _speed(src, weighted).items():
                runs.setdefault(label, {}).setdefault(name, []).append(seconds)
    return runs


def markdown(found: dict[str, Any]) -> str:
    lines = [
        f"Command: `{found['command']}` ({found['seconds']:.0f} s). Machine: "
        f"{found['machine']}; one thread.",
        "",
        "**Equivalences** (largest absolute difference; 60 full-batch epochs, "
        "`make_classification(300, 6)`, badly scaled)",
        "",
        "| fits | difference |",
        "|---|---:|",
        *(f"| {k} | {v:.2g} |" for k, v in found["equivalences"].items()),
        "",
        "**Speed** (fastest epoch in ms, median over runs; 45,000 training rows x 20, "
        f"{found['rounds']} runs each, alternating)",
        "",
        "| code | " + " | ".join(SPEED) + " |",
        "|---|" + "---:|" * len(SPEED),
    ]
    for label, by_setup in found["speed"].items():
        cells = [f"{1e3 * statistics.median(by_setup[name]):.2f}" for name in SPEED]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="src directory of the code to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=["plain", "weighted"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(speed_worker(args.worker == "weighted")))
        return
    started = time.perf_counter()
    found: dict[str, Any] = {
        "command": "python benchmarks/weights.py"
        + (" --baseline SRC" if args.baseline else "")
        + f" --rounds {args.rounds}",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "rounds": args.rounds,
        "equivalences": equivalences(),
        "speed": speeds(args.baseline, args.rounds),
    }
    found["seconds"] = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "weights.json").write_text(json.dumps(found, indent=2) + "\n")
    (RESULTS / "weights.md").write_text(markdown(found))
    print(markdown(found))


if __name__ == "__main__":
    main()

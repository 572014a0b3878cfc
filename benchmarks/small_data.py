"""Small-data defaults against holding rows out for early stopping (issue 3).

On data trained full batch (up to 8,192 rows), ``BinaryClassifier()`` trains on every row
with weight decay 1e-2 and stops when the penalised training objective has converged
(``validation_fraction='auto'``, ``weight_decay='auto'``). This script compares that with
the earlier defaults, which held 10 % out and restored the weights of the best validation
loss (``validation_fraction=0.1, weight_decay=0``), and with ``StandardScaler +
LogisticRegression``, on ten small tables: scikit-learn's bundled breast-cancer, digits
(< 5), wine (class 0) and iris (versicolor) data, and six synthetic sets (noisy, wide,
badly scaled, non-linear). Each is split 75/25 (stratified) for every split seed; the
network's ``random_state`` is the split seed.

Run: ``python benchmarks/small_data.py [--splits 10]``.
Writes ``benchmarks/results/small_data.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from sklearn.datasets import (
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
    make_classification,
    make_moons,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from steadyclf import BinaryClassifier

RESULTS = Path(__file__).parent / "results"
Dataset = tuple[str, np.ndarray, np.ndarray]


def datasets() -> Iterator[Dataset]:
    """The ten tables: name, X, y (0/1)."""
    rng = np.random.default_rng(0)
    data = load_breast_cancer()
    yield "breast cancer (569 x 30)", data.data, data.target
    data = load_digits()
    yield "digits < 5 (1797 x 64)", data.data, (data.target < 5).astype(int)
    data = load_wine()
    yield "wine class 0 (178 x 13)", data.data, (data.target == 0).astype(int)
    data = load_iris()
    yield "iris versicolor (150 x 4)", data.data, (data.target == 1).astype(int)
    X, y = make_classification(1000, 20, n_informative=5, flip_y=0.1, random_state=0)
    yield "noisy, scales 1e-3..1e3 (1000 x 20)", X * np.logspace(-3, 3, 20), y
    X, y = make_classification(300, 100, n_informative=5, random_state=1)
    yield "wide, 5 informative (300 x 100)", X, y
    X, y = make_moons(600, noise=0.3, random_state=0)
    yield "moons, offset and scaled (600 x 2)", X * [1000, 0.01] + [5e4, 3], y
    X, y = make_classification(3000, 20, n_informative=10, flip_y=0.05, random_state=0)
    yield "make_classification (3000 x 20)", X * np.logspace(-3, 3, 20), y
    X, y = make_moons(3000, noise=0.35, random_state=0)
    yield "moons + 8 noise columns (3000 x 10)", np.c_[X, rng.normal(size=(3000, 8))], y
    X, y = make_classification(
        3000,
        50,
        n_informative=4,
        n_redundant=10,
        flip_y=0.1,
        n_clusters_per_class=3,
        random_state=2,
    )
    yield "clusters, 4 informative (3000 x 50)", X, y


def methods() -> dict[str, Callable[[int], Any]]:
    return {
        "LogReg": lambda seed: make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "holdout (old defaults)": lambda seed: BinaryClassifier(
            random_state=seed, validation_fraction=0.1, weight_decay=0.0
        ),
        "steadyclf defaults": lambda seed: BinaryClassifier(random_state=seed),
    }


def run_dataset(name: str, X: np.ndarray, y: np.ndarray, splits: int) -> dict[str, Any]:
    scores: dict[str, list[tuple[float, float, int, float]]] = {m: [] for m in methods()}
    for seed in range(splits):
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, stratify=y, random_state=seed
        )
        for method, make in methods().items():
            model = make(seed)
            started = time.perf_counter()
            model.fit(X_train, y_train)
            seconds = time.perf_counter() - started
            proba = np.clip(model.predict_proba(X_test)[:, 1], 1e-7, 1 - 1e-7)
            epochs = getattr(model, "n_iter_", 0)
            scores[method].append(
                (roc_auc_score(y_test, proba), log_loss(y_test, proba), int(epochs), seconds)
            )
    logreg = [s[0] for s in scores["LogReg"]]
    return {
        "dataset": name,
        "rows": len(y),
        "methods": {
            method: {
                "roc_auc": statistics.mean(s[0] for s in rows),
                "log_loss": statistics.mean(s[1] for s in rows),
                "epochs": statistics.mean(s[2] for s in rows),
                "seconds": statistics.mean(s[3] for s in rows),
                "auc_at_least_logreg": sum(s[0] >= b for s, b in zip(rows, logreg, strict=True)),
                "per_split_roc_auc": [s[0] for s in rows],
            }
            for method, rows in scores.items()
        },
    }


def markdown(results: list[dict[str, Any]], splits: int, command: str) -> str:
    names = list(methods())
    head = (
        f"Mean test ROC AUC (log loss) over {splits} stratified 75/25 splits "
        f"({platform.machine()}, torch {torch.__version__}, scikit-learn {sklearn.__version__}).\n"
        f"Reproduce: `{command}`\n\n"
        "| data | " + " | ".join(names) + " | epochs (old -> new) |\n"
        "|---|" + "---|" * len(names) + "---|\n"
    )
    lines = []
    for r in results:
        m = r["methods"]
        cells = [f"{m[n]['roc_auc']:.4f} ({m[n]['log_loss']:.3f})" for n in names]
        best = max(range(len(names)), key=lambda i: m[names[i]]["roc_auc"])
        cells[best] = f"**{cells[best]}**"
        epochs = f"{m[names[1]]['epochs']:.0f} -> {m[names[2]]['epochs']:.0f}"
        lines.append(f"| {r['dataset']} | " + " | ".join(cells) + f" | {epochs} |")
    better = sum(
        r["methods"][names[2]]["roc_auc"] > r["methods"][names[1]]["roc_auc"] for r in results
    )
    return (
        head
        + "\n".join(lines)
        + f"\n\nThe defaults have a higher mean ROC AUC than holding 10 % out on {better} of "
        f"{len(results)} tables.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=10, help="number of split seeds (0..n-1)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = []
    for name, X, y in datasets():
        results.append(run_dataset(name, X, y, args.splits))
        brief = {k: round(v["roc_auc"], 4) for k, v in results[-1]["methods"].items()}
        print(name, json.dumps(brief), file=sys.stderr)
    text = markdown(results, args.splits, f"python benchmarks/small_data.py --splits {args.splits}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "small_data.md").write_text(text)
    (RESULTS / "small_data.json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()

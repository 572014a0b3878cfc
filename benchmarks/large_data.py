"""Large data: when the default fit stops, and how good the model is then.

On data of more than ``steadyclf.policy.CHECK_ROWS`` training rows the defaults judge the
validation loss about every ``CHECK_ROWS`` rows inside each epoch as well as at its end,
and ``patience`` (10) and the ``'plateau'`` rate cuts count these checks. This script fits
``BinaryClassifier(random_state=0)`` with that rule and with two others, switched through
``policy.CHECK_ROWS``: a check at the end of each epoch only (the rule before; it is what
every table of ``CHECK_ROWS`` training rows or fewer still gets) and a check every 2**17
rows (half the default interval). Tables, each split 80/20 by
``train_test_split(random_state=0)``, features as float32:

- ``speed``: the badly scaled ``make_classification(1_000_000, 20, n_informative=10)``
  rows of ``benchmarks/speed.py`` (the same construction);
- ``noisy``: ``make_classification(1_000_000, 20, n_informative=8, flip_y=0.15,
  class_sep=0.7, random_state=1)``: labels that no model gets much above AUC 0.92;
- ``nonlinear``: 600,000 x 10 standard normal features (``default_rng(3)``), label 1 with
  probability ``sigmoid(2 sin(2 x0) + x1 x2 + |x3| - 0.8 + 0.5 x4)``;
- ``fertility``: the real table of ``/work/shared/benchmarks`` (254,654 x 7; stratified
  split; skipped when the folder is absent). Its 183,000 training rows are below
  ``CHECK_ROWS``: the default is the rule before there.

Per table and rule: the default fit's seconds (one fit, end to end), epochs, checks
between two steps of an epoch, and the test ROC AUC and log loss. One process, one thread
(``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``).

Run: ``python benchmarks/large_data.py [--tables speed,noisy]`` (about 3 minutes). Writes
``benchmarks/results/large_data.md`` and ``.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.datasets import make_classification
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

from steadyclf import BinaryClassifier, policy
from steadyclf.io.atomic import atomic_write

RESULTS = Path(__file__).parent / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "data"
#: The stopping rules compared: name -> policy.CHECK_ROWS.
RULES = {
    "once an epoch (before)": sys.maxsize,
    "every 2**17 rows": 1 << 17,
    f"every 2**{policy.CHECK_ROWS.bit_length() - 1} rows (default)": policy.CHECK_ROWS,
}
Split = tuple[Any, Any, np.ndarray, np.ndarray]


def speed() -> Split:
    X, y = make_classification(1_000_000, 20, n_informative=10, random_state=0)
    rng = np.random.default_rng(0)
    X = X * 10.0 ** rng.uniform(-3, 3, size=20) + rng.uniform(-1e3, 1e3, size=20)
    return train_test_split(X.astype(np.float32), y, test_size=0.2, random_state=0)


def noisy() -> Split:
    X, y = make_classification(
        1_000_000, 20, n_informative=8, flip_y=0.15, class_sep=0.7, random_state=1
    )
    return train_test_split(X.astype(np.float32), y, test_size=0.2, random_state=0)


def nonlinear() -> Split:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600_000, 10)).astype(np.float32)
    logit = 2 * np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + np.abs(X[:, 3]) - 0.8 + 0.5 * X[:, 4]
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    return train_test_split(X, y, test_size=0.2, random_state=0)


def fertility() -> Split | None:
    path = SHARED / "fertility.csv"
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    y = frame.pop("target").to_numpy()
    return train_test_split(frame, y, test_size=0.2, random_state=0, stratify=y)


TABLES: dict[str, Callable[[], Split | None]] = {
    "speed": speed,
    "noisy": noisy,
    "nonlinear": nonlinear,
    "fertility": fertility,
}


def fit_once(split: Split, check_rows: int) -> dict[str, Any]:
    X_train, X_test, y_train, y_test = split
    default = policy.CHECK_ROWS
    policy.CHECK_ROWS = check_rows
    try:
        started = time.perf_counter()
        clf = BinaryClassifier(random_state=0).fit(X_train, y_train)
        seconds = time.perf_counter() - started
    finally:
        policy.CHECK_ROWS = default
    proba = clf.predict_proba(X_test)[:, 1]
    return {
        "fit_seconds": seconds,
        "epochs": clf.n_iter_,
        "best_epoch": clf.best_epoch_,
        "n_train": clf.plan_["n_train"],
        "check_every": clf.plan_["check_every"],
        "batch_size": clf.batch_size_,
        "test_auc": float(roc_auc_score(y_test, proba)),
        "test_log_loss": float(log_loss(y_test, proba)),
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"Command: `{result['command']}` ({result['wall_seconds']:.0f} s); "
        f"{result['machine']}, torch {torch.__version__}, one thread.",
        "",
        "| table | training rows | rule | checks every | fit s | epochs | test AUC | "
        "test log loss |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        every = (
            "epoch end"
            if r["check_every"] is None
            else f"{r['check_every']} steps ({r['check_every'] * r['batch_size']:,} rows)"
        )
        lines.append(
            f"| {r['table']} | {r['n_train']:,} | {r['rule']} | {every} | "
            f"{r['fit_seconds']:.2f} | {r['epochs']} | {r['test_auc']:.4f} | "
            f"{r['test_log_loss']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES), help="comma list of tables")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    warm = np.random.default_rng(0).normal(size=(3000, 3))
    BinaryClassifier(random_state=0, max_epochs=2).fit(warm, (warm[:, 0] > 0).astype(int))
    rows = []
    for table in args.tables.split(","):
        split = TABLES[table]()
        if split is None:
            print(f"{table}: skipped (no data)", file=sys.stderr)
            continue
        for rule, check_rows in RULES.items():
            row = {"table": table, "rule": rule, **fit_once(split, check_rows)}
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    result = {
        "command": "python benchmarks/large_data.py" + "".join(f" {a}" for a in sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs (shared)",
        "wall_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    text = report(result)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    atomic_write(RESULTS / "large_data.md", text + "\n")
    atomic_write(RESULTS / "large_data.json", json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

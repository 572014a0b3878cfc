"""The CLI with default options against StandardScaler + LogisticRegression (issue 3).

scikit-learn's bundled breast-cancer data (569 rows, 30 features on scales from about
0.001 to 1000; labels 'malignant' / 'benign') is written to CSV and split into a train
and a held-out test file (stratified, 25 % test) for each split seed. For each split:

- ``steadyclf train train.csv --target diagnosis --out model`` (default options) and
  ``steadyclf evaluate model test.csv --json``, run as real processes;
- ``make_pipeline(StandardScaler(), LogisticRegression())`` fitted on the same train file
  and scored on the same test file.

Both ROC AUCs take 'malignant' as the positive class (steadyclf's ``classes_[1]``).

Run: ``python benchmarks/breast_cancer.py [--splits 20]``.
Writes ``benchmarks/results/breast_cancer.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import sklearn
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

RESULTS = Path(__file__).parent / "results"
TARGET = "diagnosis"
POSITIVE = "malignant"


def breast_cancer_frame() -> pd.DataFrame:
    """The bundled data with string labels in a ``diagnosis`` column."""
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame[TARGET] = data.target.map(dict(enumerate(data.target_names)))
    return frame


def steadyclf(*args: object) -> dict:
    """Run the CLI in a fresh process and return its JSON output."""
    command = [sys.executable, "-m", "steadyclf", *map(str, args), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def run_split(frame: pd.DataFrame, seed: int, work: Path) -> dict:
    train, test = train_test_split(frame, test_size=0.25, stratify=frame[TARGET], random_state=seed)
    train_csv, test_csv, model = work / "train.csv", work / "test.csv", work / "model"
    train.to_csv(train_csv, index=False)
    test.to_csv(test_csv, index=False)

    started = time.perf_counter()
    trained = steadyclf("train", train_csv, "--target", TARGET, "--out", model)
    report = steadyclf("evaluate", model, test_csv)["metrics"]
    seconds = time.perf_counter() - started

    baseline = make_pipeline(StandardScaler(), LogisticRegression())
    baseline.fit(train.drop(columns=TARGET), train[TARGET])
    column = list(baseline.classes_).index(POSITIVE)
    proba = baseline.predict_proba(test.drop(columns=TARGET))[:, column]
    return {
        "split_seed": seed,
        "train_rows": len(train),
        "test_rows": len(test),
        "steadyclf_roc_auc": report["roc_auc"],
        "steadyclf_accuracy": report["accuracy"],
        "steadyclf_log_loss": report["log_loss"],
        "steadyclf_epochs": trained["epochs"],
        "steadyclf_seconds": round(seconds, 1),
        "logreg_roc_auc": float(roc_auc_score(test[TARGET] == POSITIVE, proba)),
        "logreg_accuracy": float(
            (baseline.predict(test.drop(columns=TARGET)) == test[TARGET]).mean()
        ),
    }


def markdown(rows: list[dict], command: str) -> str:
    head = (
        f"Breast-cancer data (569 rows, 30 features), stratified 75/25 splits; "
        f"`steadyclf` CLI with default options vs StandardScaler + LogisticRegression "
        f"({platform.machine()}, torch {torch.__version__}, scikit-learn {sklearn.__version__}).\n"
        f"Reproduce: `{command}`\n\n"
        "| split | steadyclf ROC AUC | LogReg ROC AUC | steadyclf acc. | LogReg acc. "
        "| steadyclf log loss | epochs | seconds (train + evaluate) |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['split_seed']} | {r['steadyclf_roc_auc']:.4f} | {r['logreg_roc_auc']:.4f} "
        f"| {r['steadyclf_accuracy']:.4f} | {r['logreg_accuracy']:.4f} "
        f"| {r['steadyclf_log_loss']:.4f} | {r['steadyclf_epochs']} | {r['steadyclf_seconds']} |"
        for r in rows
    ]
    mean = {
        k: statistics.mean(r[k] for r in rows) for k in rows[0] if k.endswith(("auc", "accuracy"))
    }
    lines.append(
        f"| mean | {mean['steadyclf_roc_auc']:.4f} | {mean['logreg_roc_auc']:.4f} "
        f"| {mean['steadyclf_accuracy']:.4f} | {mean['logreg_accuracy']:.4f} | | | |"
    )
    wins = sum(r["steadyclf_roc_auc"] >= r["logreg_roc_auc"] for r in rows)
    return (
        head
        + "\n".join(lines)
        + f"\n\nsteadyclf ROC AUC >= LogReg on {wins} of {len(rows)} splits.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=20, help="number of split seeds (0..n-1)")
    args = parser.parse_args()
    frame = breast_cancer_frame()
    rows = []
    for seed in range(args.splits):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(run_split(frame, seed, Path(tmp)))
        print(json.dumps(rows[-1]), file=sys.stderr)
    command = f"python benchmarks/breast_cancer.py --splits {args.splits}"
    text = markdown(rows, command)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "breast_cancer.md").write_text(text)
    (RESULTS / "breast_cancer.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()

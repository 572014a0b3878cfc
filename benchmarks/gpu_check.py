"""A short check to run where a CUDA GPU is lent: fit on the GPU with missing values and
categoricals, predictions equal to the CPU's, and a throughput figure.

    python benchmarks/gpu_check.py [--rows 400000] [--out results.json]

Without CUDA it says so and exits 0 (nothing to check). What it checks, each a line of
``ok``/``FAILED``:

1. a fit on ``device='cuda'`` (and ``'auto'``) of a table with NaN in numeric columns (so
   the model has missing-value indicators), text categoricals (one of 300 levels: target
   statistics, out of fold on the GPU) and offsets/scales far from N(0, 1), reaching a
   sensible test ROC AUC; a small-data fit (5 cross-fitted members) and a weighted fit on
   the GPU, their predictions equal to the NumPy ones;
2. the fitted module's forward pass on the GPU, on chunks with and without NaN (the
   indicator path that once built a CPU tensor), equal to ``predict_proba`` (which runs
   the NumPy forward pass on the CPU; float64, 1e-9), and equal again after a save and
   load;
3. a streamed fit (Parquet read in passes, training rows through the shuffle buffer) on
   the GPU;
4. throughput: training rows per second per epoch on the GPU and on the CPU, and
   ``predict_proba`` rows per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from steadyclf import BinaryClassifier, load


def table(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=(3, n))
    group = rng.choice(["n", "s", "e", "w", None], n)
    shift = pd.Series(group).map({"n": 0.7, "s": -0.7, "e": 0.2}).fillna(0).to_numpy()
    users = rng.integers(0, 300, n)
    effect = np.random.default_rng(7).normal(size=300)[users]
    y = (1.5 * a - b + np.sin(2 * c) + shift + effect + rng.logistic(size=n) > 0).astype(int)
    frame = pd.DataFrame(
        {
            "a": 1e6 + 1e-3 * a,
            "b": np.where(rng.random(n) < 0.1, np.nan, 1e-4 * b),
            "c": 250 * c - 40,
            "group": group,
            "level": rng.choice([f"l{i}" for i in range(40)], n),
            "user": [f"u{i}" for i in users],
        }
    )
    return frame, y


def module_proba(clf: BinaryClassifier, data: pd.DataFrame) -> np.ndarray:
    """``predict_proba`` computed by the fitted torch module on its device, in chunks."""
    x_num, x_cat = clf.encoder_.transform(data)
    device = next(clf.module_.parameters()).device
    logits = []
    with torch.no_grad():
        for start in range(0, len(x_num), 8192):
            num = torch.from_numpy(x_num[start : start + 8192]).to(device)
            cat = torch.from_numpy(x_cat[start : start + 8192]).to(device)
            logits.append(clf.module_(num, cat).cpu().numpy())
    z = clf.calibration_["scale"] * np.concatenate(logits) + clf.calibration_["bias"]
    p = 1.0 / (1.0 + np.exp(-z))
    return np.column_stack([1.0 - p, p])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", help="Write the results as JSON here too.")
    parser.add_argument(
        "--dry-run-on-cpu",
        action="store_true",
        help="Run every step with the CPU in place of the GPU (to check this script).",
    )
    args = parser.parse_args()
    gpu_name = "cpu" if args.dry_run_on_cpu else "cuda"
    if not args.dry_run_on_cpu and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here; nothing to check")
        return 0
    device_name = "cpu (dry run)" if args.dry_run_on_cpu else torch.cuda.get_device_name(0)
    results: dict[str, Any] = {"device": device_name, "torch": torch.__version__}
    checks: list[tuple[str, bool]] = []
    X, y = table(args.rows, 0)
    X_test, y_test = table(50_000, 1)
    params = {"random_state": 0, "max_epochs": args.epochs}

    timings = {}
    models = {}
    for device in ("cuda", "cpu"):
        started = time.perf_counter()
        clf = BinaryClassifier(device=gpu_name if device == "cuda" else "cpu", **params).fit(X, y)
        timings[device] = time.perf_counter() - started
        models[device] = clf
        epochs = [r["seconds"] for r in clf.history_]
        results[f"{device}_fit_seconds"] = timings[device]
        results[f"{device}_train_rows_per_second"] = clf.data_["n_train"] / float(np.median(epochs))
        results[f"{device}_test_auc"] = roc_auc_score(y_test, clf.predict_proba(X_test)[:, 1])
    gpu = models["cuda"]
    checks.append(("the model has missing-value indicators", gpu.module_.arch.n_missing > 0))
    checks.append(("the model has target statistics", bool(gpu.module_.arch.target_sizes)))
    on_device = next(gpu.module_.parameters()).device.type == gpu_name
    checks.append(("the fit ran on the GPU", on_device))
    checks.append(("GPU test ROC AUC > 0.8", results["cuda_test_auc"] > 0.8))
    checks.append(
        ("GPU and CPU fits reach the same AUC (0.01)",
         abs(results["cuda_test_auc"] - results["cpu_test_auc"]) < 0.01)
    )  # fmt: skip

    no_gap = X_test.assign(b=X_test["b"].fillna(0.0)).iloc[:5000]
    data_sets = (("nan", X_test), ("none", no_gap))
    on_gpu = {name: module_proba(gpu, data) for name, data in data_sets}
    started = time.perf_counter()
    gpu.predict_proba(X_test)
    results["predict_rows_per_second"] = len(X_test) / (time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load(gpu.save(Path(tmp) / "model"))
        for name, data in data_sets:
            cpu = gpu.predict_proba(data)
            checks.append(
                (f"GPU module = NumPy predictions, chunks with {name} NaN (1e-9)",
                 bool(np.allclose(on_gpu[name], cpu, rtol=0, atol=1e-9)))
            )  # fmt: skip
            checks.append(
                (f"saved and loaded = GPU predictions ({name} NaN, 1e-9)",
                 bool(np.allclose(loaded.predict_proba(data), on_gpu[name], rtol=0, atol=1e-9)))
            )  # fmt: skip
        path = Path(tmp) / "train.parquet"
        X.assign(y=y).to_parquet(path, row_group_size=50_000)
        streamed = BinaryClassifier(device=gpu_name, **params).fit_files(
            path, "y", stream=True, memory_budget="20MB", context=None
        )
        auc = roc_auc_score(y_test, streamed.predict_proba(X_test)[:, 1])
        results["cuda_streamed_test_auc"] = auc
        checks.append(
            ("streamed fit on the GPU: rows streamed", not streamed.data_["rows_in_memory"])
        )
        checks.append(
            ("streamed fit on the GPU: AUC within 0.01", abs(auc - results["cuda_test_auc"]) < 0.01)
        )
        small = BinaryClassifier(device=gpu_name, random_state=0).fit(X.iloc[:3000], y[:3000])
        # With periodic embeddings NumPy takes their cosines in float32 (README, "Deploy").
        atol = 1e-6 if small.module_.arch.periodic else 1e-9
        checks.append(
            (f"small data on the GPU ({small.numeric_embedding_} embeddings chosen): "
             f"5 members = NumPy predictions ({atol:g})",
             len(small.module_.bodies) == 5
             and bool(np.allclose(module_proba(small, no_gap), small.predict_proba(no_gap),
                                  rtol=0, atol=atol)))
        )  # fmt: skip
        weight = np.where(y[:20_000] == 1, 3.0, 1.0)
        weighted = BinaryClassifier(device=gpu_name, **params).fit(
            X.iloc[:20_000], y[:20_000], sample_weight=weight
        )
        checks.append(
            ("weighted fit on the GPU = NumPy predictions (1e-9)",
             bool(np.allclose(module_proba(weighted, no_gap), weighted.predict_proba(no_gap),
                              rtol=0, atol=1e-9)))
        )  # fmt: skip
        auto = BinaryClassifier(device="auto", **params).fit(X.iloc[:20_000], y[:20_000])
        picked = next(auto.module_.parameters()).device.type
        checks.append(("device='auto' picks CUDA and predicts", picked == gpu_name
                       and np.isfinite(auto.predict_proba(no_gap)).all()))  # fmt: skip
    results["checks"] = {name: ok for name, ok in checks}
    for name, ok in checks:
        print(f"{'ok' if ok else 'FAILED'}: {name}")
    for key, value in results.items():
        if key != "checks":
            print(f"{key}: {value:,.4g}" if isinstance(value, float) else f"{key}: {value}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

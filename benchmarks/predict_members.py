"""Prediction speed of models with members: ``predict_proba`` on 200,000 x 20 rows.

The default model on large data is one network (``benchmarks/speed.py`` times it); a
small-data fit keeps its five cross-fitted members, with periodic embeddings where they
were chosen. This fits the defaults on ``--train-rows`` rows of a badly scaled
``make_classification`` table (20 columns; small data: five members), forces the other
embedding choice too (``numeric_embedding='periodic'`` and ``'none'``), and times on
200,000 rows of the same distribution:

- the NumPy path (``predict_proba``: what the estimator, ``steadyclf predict`` and
  ``steadyclf.Predictor`` run), best of ``--repeats``;
- the torch path (the fitted ``module_`` on the encoded rows, ``torch.no_grad``), best of
  ``--repeats``, at torch's default threads.

The target of issue 20: at least 2,000,000 rows/s on both paths. Writes
``benchmarks/results/NAME.md`` and ``NAME.json`` (``--out``, default ``predict_members``)::

    python benchmarks/predict_members.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from peers import machine, save_json
from sklearn.datasets import make_classification

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 2_000_000


def _best(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(params: dict[str, Any], X: Any, y: Any, big: Any, repeats: int) -> dict[str, Any]:
    import torch

    from steadyclf import BinaryClassifier

    start = time.perf_counter()
    clf = BinaryClassifier(random_state=0, **params).fit(X, y)
    fit_s = time.perf_counter() - start
    clf.predict_proba(big[:1000])
    numpy_s = _best(lambda: clf.predict_proba(big), repeats)
    x_num, x_cat = clf._raw_inputs(big, reset=False)
    tensors = torch.from_numpy(x_num), torch.from_numpy(x_cat)

    def torch_path() -> None:
        with torch.no_grad():
            clf.module_(*tensors)

    torch_path()
    torch_s = _best(torch_path, repeats)
    return {
        "params": params,
        "fit_s": fit_s,
        "members": len(clf.module_.bodies),
        "numeric_embedding": clf.numeric_embedding_,
        "numpy_rows_per_s": len(big) / numpy_s,
        "torch_rows_per_s": len(big) / torch_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=5_000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="predict_members")
    args = parser.parse_args()
    X, y = make_classification(
        args.train_rows + args.rows, n_features=20, n_informative=10, random_state=0
    )
    scale = np.random.default_rng(0).uniform(-3, 5, size=20)
    X = X * 10.0**scale + 50.0  # badly scaled, as benchmarks/speed.py's table
    X_train, y_train, big = X[: args.train_rows], y[: args.train_rows], X[args.train_rows :]
    import torch

    rows = [
        measure(params, X_train, y_train, big, args.repeats)
        for params in ({}, {"numeric_embedding": "periodic"}, {"numeric_embedding": "none"})
    ]
    report = {
        "command": "python benchmarks/predict_members.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "train_rows": args.train_rows,
        "predict_rows": args.rows,
        "torch_threads": torch.get_num_threads(),
        "machine": {**machine(), "load_average": os.getloadavg()},
        "results": rows,
    }
    save_json(RESULTS / f"{args.out}.json", report)
    lines = [
        f"# predict_proba on {args.rows:,} x 20 rows: models with members",
        "",
        f"Fitted on {args.train_rows:,} rows (small data: cross-fitted members). Rows/s: best "
        f"of {args.repeats}; target {TARGET:,} rows/s on both paths.",
        "",
        "| parameters | members | embeddings | fit s | NumPy rows/s | torch rows/s | target |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        met = min(r["numpy_rows_per_s"], r["torch_rows_per_s"]) >= TARGET
        lines.append(
            f"| {json.dumps(r['params']) if r['params'] else 'defaults'} | {r['members']} | "
            f"{r['numeric_embedding']} | {r['fit_s']:.2f} | {r['numpy_rows_per_s']:,.0f} | "
            f"{r['torch_rows_per_s']:,.0f} | {'met' if met else 'missed'} |"
        )
    m = report["machine"]
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch threads "
        f"{report['torch_threads']}, load average {' / '.join(f'{x:.1f}' for x in m['load_average'])}. "
        f"Command: `{report['command']}` ({report['date']}).",
        "",
    ]
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

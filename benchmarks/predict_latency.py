"""Latency of a small prediction and the cost of encoding many rows with text columns.

A server predicting one request at a time pays the per-call costs of ``predict_proba``
(input checks, the encoder's pandas work per column), not the network's arithmetic. This
fits a one-network model (``n_members=1``, 2 epochs: the network is not what is timed) on
2,000 rows of 10 numeric and 10 text columns (a quarter of the text cells blank), then:

- ``predict_proba`` of one row, mean of ``--calls`` calls after 20 warm-up calls;
- ``encoder_.transform`` of 1,000,000 rows of the same columns (the raw inputs of a large
  prediction or a streamed epoch), best of ``--repeats``.

Writes ``benchmarks/results/NAME.md`` and ``NAME.json`` (``--out``, default
``predict_latency``)::

    python benchmarks/predict_latency.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from peers import machine, save_json

RESULTS = Path(__file__).resolve().parent / "results"


def table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(10)})
    for i in range(10):
        frame[f"c{i}"] = pd.Series(rng.choice(["a", "b", "c", ""], n), dtype=object)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="predict_latency")
    args = parser.parse_args()
    from steadyclf import BinaryClassifier

    X = table(2000, 0)
    y = (X["x0"] + (X["c0"] == "a") > 0.5).astype(int)
    clf = BinaryClassifier(max_epochs=2, hidden=(8,), n_members=1, random_state=0).fit(X, y)
    one = X.iloc[[5]]
    for _ in range(20):
        clf.predict_proba(one)
    start = time.perf_counter()
    for _ in range(args.calls):
        clf.predict_proba(one)
    one_ms = (time.perf_counter() - start) / args.calls * 1e3
    big = table(1_000_000, 1)
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        clf.encoder_.transform(big)
        seconds.append(time.perf_counter() - start)
    report = {
        "command": "python benchmarks/predict_latency.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "one_row_predict_proba_ms": one_ms,
        "transform_1m_rows_s": min(seconds),
        "machine": {**machine(), "load_average": os.getloadavg()},
    }
    save_json(RESULTS / f"{args.out}.json", report)
    m = report["machine"]
    lines = [
        "# Prediction latency: one row, and encoding 1,000,000 rows with text columns",
        "",
        "20 columns (10 numeric, 10 text with a quarter of the cells blank), one network.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| `predict_proba` of one row (mean of {args.calls}) | {one_ms:.2f} ms |",
        f"| `encoder_.transform` of 1,000,000 rows (best of {args.repeats}) | "
        f"{min(seconds):.2f} s |",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, load average "
        f"{' / '.join(f'{x:.1f}' for x in m['load_average'])}. Command: `{report['command']}` "
        f"({report['date']}).",
        "",
    ]
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Wide tables: default fit and predict seconds on synthetic tables of many columns.

Most benchmarks here have few columns. This one times ``BinaryClassifier(random_state=0)``
(``fit``, then ``predict_proba`` on the training rows) on tables whose width is the point:

- ``numbers-500``: 2,000 rows x 500 continuous columns (N(0, 1)), label from two of them
  plus noise; also with ``numeric_embedding='periodic'`` (every column embedded: what
  ``'auto'`` tried before ``policy.EMBEDDED_AUTO_MAX_COLUMNS``);
- ``numbers-2000``: 2,000 rows x 2,000 continuous columns, the same label;
- ``tiny-1500``: 8 rows x 1,500 columns of magnitudes 1e-300 to 1e300, a fifth of them
  text (the shape of ``tests/test_robustness.py::test_thousands_of_columns``);
- ``texts-300``: 20,000 rows x 300 text columns of 50 levels (15,000 one-hot inputs),
  label from one of them;
- ``csv-2000``: ``numbers-2000``'s rows as a CSV file (29.6 MB), predicted from the file
  by ``steadyclf.predict_file`` (what ``steadyclf predict`` runs), the model fitted in
  memory with ``numeric_embedding='none'`` (the default's choice) and saved; fit seconds
  are the in-memory fit's. ``--model DIR`` predicts with a model saved earlier instead (to
  time another version's reading with the same model).

One process, one fit per case (``--cases`` picks them), after an untimed warm-up fit. Writes
``benchmarks/results/NAME.md`` and ``NAME.json`` (``--out``, default ``wide``)::

    python benchmarks/wide.py
    python benchmarks/wide.py --cases numbers-500,tiny-1500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from peers import git_commit, machine, parse_list, save_json

RESULTS = Path(__file__).resolve().parent / "results"


def numbers(rows: int, columns: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(rows, columns)), columns=[f"c{j}" for j in range(columns)])
    y = (X["c0"] + X["c1"] + rng.normal(size=rows) > 0).astype(int).to_numpy()
    return X, y


def tiny(rows: int = 8, columns: int = 1500) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(columns)
    values = rng.normal(size=(rows, columns)) * 10.0 ** rng.integers(-300, 300, size=columns)
    X = pd.DataFrame(values, columns=[f"c{j}" for j in range(columns)])
    for j in range(columns // 5):
        X[f"c{j}"] = np.where(values[:, j] > 0, "pos", "neg")
    return X, np.array([0, 1] * (rows // 2))


def texts(rows: int = 20_000, columns: int = 300, levels: int = 50) -> tuple[pd.DataFrame, Any]:
    rng = np.random.default_rng(0)
    names = np.array([f"v{i}" for i in range(levels)])
    X = pd.DataFrame({f"t{j}": names[rng.integers(0, levels, rows)] for j in range(columns)})
    y = ((X["t0"].str[1:].astype(int) > levels // 2) ^ (rng.random(rows) < 0.1)).astype(int)
    return X, y.to_numpy()


CASES: dict[str, tuple[Any, dict[str, Any]]] = {
    "numbers-500": (lambda: numbers(2000, 500), {}),
    "numbers-500-periodic": (lambda: numbers(2000, 500), {"numeric_embedding": "periodic"}),
    "numbers-2000": (lambda: numbers(2000, 2000), {}),
    "tiny-1500": (tiny, {}),
    "texts-300": (texts, {}),
    "csv-2000": (lambda: numbers(2000, 2000), {"numeric_embedding": "none"}),
}


def csv_case(model: str | None) -> dict[str, Any]:
    """``csv-2000``: prediction from a wide CSV file (see the module)."""
    import tempfile

    from steadyclf import BinaryClassifier, load, predict_file

    X, y = numbers(2000, 2000)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "wide.csv"
        X.to_csv(data, index=False)
        fit_s: float | None = None
        if model is None:
            start = time.perf_counter()
            clf = BinaryClassifier(random_state=0, numeric_embedding="none").fit(X, y)
            fit_s = time.perf_counter() - start
            model = str(Path(tmp) / "model")
            clf.save(model)
        clf = load(model)
        start = time.perf_counter()
        done = predict_file(model, data, Path(tmp) / "predictions.csv")
        predict_s = time.perf_counter() - start
        assert done.n_rows == len(X)
    return result("csv-2000", X, {"numeric_embedding": "none"}, clf, fit_s, predict_s)


def run(name: str, model: str | None = None) -> dict[str, Any]:
    from steadyclf import BinaryClassifier

    if name == "csv-2000":
        return csv_case(model)
    make, params = CASES[name]
    X, y = make()
    start = time.perf_counter()
    clf = BinaryClassifier(random_state=0, **params).fit(X, y)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    clf.predict_proba(X)
    predict_s = time.perf_counter() - start
    return result(name, X, params, clf, fit_s, predict_s)


def result(
    name: str,
    X: pd.DataFrame,
    params: dict[str, Any],
    clf: Any,
    fit_s: float | None,
    predict_s: float,
) -> dict[str, Any]:
    """One case's row of the report: the table, the seconds and what the fit chose."""
    return {
        "case": name,
        "rows": len(X),
        "columns": X.shape[1],
        "params": params,
        "fit_s": fit_s,
        "predict_s": predict_s,
        "small_data": bool(clf.plan_["small_data"]),
        "members": len(clf.module_.bodies),
        "numeric_embedding": clf.numeric_embedding_,
        "embedded_columns": len(clf.module_.arch.periodic),
        "inputs": int(clf.module_.arch.n_body_inputs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=parse_list, default=list(CASES))
    parser.add_argument("--out", default="wide")
    parser.add_argument("--model", help="csv-2000: predict with this saved model")
    args = parser.parse_args()
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {list(CASES)}")
    warnings.simplefilter("ignore")  # the tiny table's extreme values warn on purpose
    from steadyclf import BinaryClassifier

    X, y = numbers(200, 5)  # imports and one-off set-up, untimed
    BinaryClassifier(random_state=0, max_epochs=2).fit(X, y).predict_proba(X)
    load = os.getloadavg()
    rows = []
    for name in args.cases:
        print(f"{name} ...", file=sys.stderr, flush=True)
        rows.append(run(name, args.model))
    import torch

    report: dict[str, Any] = {
        "command": "python benchmarks/wide.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_commit(),
        "torch_threads": torch.get_num_threads(),
        "machine": {**machine(), "load_average": [load, os.getloadavg()]},
        "results": rows,
    }
    save_json(RESULTS / f"{args.out}.json", report)
    lines = [
        "# Wide tables: default fit and predict seconds",
        "",
        "One process (after an untimed warm-up fit), one fit per case; predict: `predict_proba` "
        "on the training rows (csv-2000: `predict_file` on them as a CSV file).",
        "",
        "| case | rows | columns | parameters | fit s | predict s | small data | members "
        "| embeddings (columns) | network inputs |",
        "|---|---:|---:|---|---:|---:|---|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['rows']:,} | {r['columns']:,} | "
            f"{json.dumps(r['params']) if r['params'] else 'defaults'} | {'-' if r['fit_s'] is None else format(r['fit_s'], '.1f')} | "
            f"{r['predict_s']:.2f} | {'yes' if r['small_data'] else 'no'} | {r['members']} | "
            f"{r['numeric_embedding']} ({r['embedded_columns']}) | {r['inputs']:,} |"
        )
    m = report["machine"]
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch threads "
        f"{report['torch_threads']}; load average (1, 5, 15 min) "
        f"{' / '.join(f'{x:.1f}' for x in load)} at the start, "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} at the end. "
        f"git {report['git']}. Command: `{report['command']}` ({report['date']}).",
        "",
    ]
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

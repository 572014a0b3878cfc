"""Seconds of ``steadyclf.explain`` (permutation importance) on real tables.

Per table (``--tables``; default caravan, resume, oj from ``/work/shared/benchmarks/data``)
the default model is fitted on 80 % of the rows (``train_test_split(..., test_size=0.2,
stratify=y, random_state=0)``, as ``small_speed.py``), then ``explain`` runs on the 20 %
held out at its defaults (ROC AUC, 5 shuffles per column), ``--repeats`` times (median
reported), with the seconds of one ``predict_proba`` of those rows beside it. Writes
``benchmarks/results/NAME.md`` and ``NAME.json`` (``--out``, default ``explain_speed``).
``--synthetic ROWSxCOLUMNS`` adds a wide table: ``make_classification(2 x ROWS, COLUMNS,
n_informative=20, random_state=0)``, fitted on the first ROWS rows, explained on the rest::

    python benchmarks/explain_speed.py
    python benchmarks/explain_speed.py --tables caravan --repeats 3 --out explain_caravan
    python benchmarks/explain_speed.py --tables '' --synthetic 2000x200 --out explain_wide
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from peers import add_data_dir, git_commit, log, machine, parse_list, save_json, table_paths
from small_speed import load_table

RESULTS = Path(__file__).resolve().parent / "results"
TABLES = ("caravan", "resume", "oj")


def real(path: Path) -> tuple[str, Any, Any, Any, Any]:
    """A development table: its name, the 80 % to fit on, the 20 % to explain."""
    table = load_table(path)
    y, train, test = table["split"]
    frame = table["frames"]["steadyclf"]
    return path.stem, frame.iloc[train], y[train], frame.iloc[test], y[test]


def synthetic(shape: str) -> tuple[str, Any, Any, Any, Any]:
    """``ROWSxCOLUMNS``: a wide make_classification table, half to fit, half to explain."""
    import pandas as pd
    from sklearn.datasets import make_classification

    rows, columns = (int(v) for v in shape.lower().split("x"))
    X, y = make_classification(2 * rows, n_features=columns, n_informative=20, random_state=0)
    frame = pd.DataFrame(X, columns=[f"c{j}" for j in range(columns)])
    return f"synthetic {shape}", frame[:rows], y[:rows], frame[rows:], y[rows:]


def measure(case: tuple[str, Any, Any, Any, Any], repeats: int) -> dict[str, Any]:
    from steadyclf import BinaryClassifier, explain

    name, X, y, rows, labels = case
    clf = BinaryClassifier(random_state=0).fit(X, y)
    seconds, predict = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        found = explain(clf, rows, labels)
        seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        clf.predict_proba(rows)
        predict.append(time.perf_counter() - started)
    return {
        "table": name,
        "rows": len(rows),
        "columns": rows.shape[1],
        "explain_s": statistics.median(seconds),
        "every_explain_s": seconds,
        "predict_s": statistics.median(predict),
        "top": [c.column for c in found.columns[:3]],
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Seconds of `explain` (permutation importance, 5 shuffles per column)",
        "",
        "| table | rows | columns | explain s | one predict_proba s | top columns |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in report["tables"]:
        lines.append(
            f"| {r['table']} | {r['rows']:,} | {r['columns']} | {r['explain_s']:.2f} | "
            f"{r['predict_s']:.4f} | {', '.join(r['top'])} |"
        )
    info = report["machine"]
    lines += [
        "",
        f"Median of {report['repeats']} run(s). Machine: {info['cpu']}, {info['logical_cpus']} "
        f"logical CPUs. git {report['git']}. Command: `{report['command']}` ({report['date']}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir(parser)
    parser.add_argument("--tables", type=parse_list, default=list(TABLES))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--synthetic", type=parse_list, default=[], help="e.g. 2000x200")
    parser.add_argument("--out", default="explain_speed")
    args = parser.parse_args()
    paths = table_paths(args.data_dir)
    missing = [t for t in args.tables if t not in paths]
    if missing:
        raise SystemExit(f"no such table(s): {', '.join(missing)}")
    tables = []
    for name in args.tables:
        log(f"{name} ...")
        tables.append(measure(real(paths[name]), args.repeats))
    for shape in args.synthetic:
        log(f"synthetic {shape} ...")
        tables.append(measure(synthetic(shape), args.repeats))
    report = {
        "command": "python benchmarks/explain_speed.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "repeats": args.repeats,
        "git": git_commit(),
        "machine": machine(),
        "tables": tables,
    }
    RESULTS.mkdir(exist_ok=True)
    save_json(RESULTS / f"{args.out}.json", report)
    text = markdown(report)
    (RESULTS / f"{args.out}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""The README's report: a model on a real table, its HTML report, and a browser screenshot.

Trains ``BinaryClassifier(random_state=0)`` on the training folds of the first
``StratifiedKFold(5, shuffle=True, random_state=0)`` split of a development table
(``../shared/benchmarks/data``, default ``gss_abortion``: 36,794 survey rows, missing values
in seven of ten columns, categoricals), writes ``steadyclf report`` of the held-out fold
through the command line (as a user would), renders it in headless Chromium (the helper of
tests/test_report_browser.py) and saves a full-page screenshot to ``docs/report.png``
(256-colour PNG). Prints the column ranking and the page's checks.

Run: ``python benchmarks/report_example.py [--table gss_abortion] [--keep DIR]``
(about a minute). Writes ``docs/report.png`` and ``benchmarks/results/report_example.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.model_selection import StratifiedKFold

HERE = Path(__file__).parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "benchmarks" / "data"
sys.path.insert(0, str(ROOT / "tests"))

from browser import render  # noqa: E402  (the tests' helper)


def steadyclf(work: Path, *args: str) -> str:
    """Run the command line in ``work`` as a user would; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "steadyclf", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=work,
    )
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", default="gss_abortion")
    parser.add_argument("--keep", help="Directory to keep the model and the report in.")
    args = parser.parse_args()
    frame = pd.read_csv(DATA / f"{args.table}.csv")
    train, test = next(
        StratifiedKFold(5, shuffle=True, random_state=0).split(frame, frame["target"])
    )
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.keep or scratch)
        work.mkdir(parents=True, exist_ok=True)
        frame.iloc[train].to_csv(work / "train.csv", index=False)
        frame.iloc[test].to_csv(work / "test.csv", index=False)
        started = time.perf_counter()
        steadyclf(work, "train", "train.csv", "--target", "target", "--out", "model", "--quiet")
        trained = time.perf_counter() - started
        started = time.perf_counter()
        summary = json.loads(
            steadyclf(work, "report", "model", "test.csv", "--out", "report.html", "--json")
        )
        reported = time.perf_counter() - started
        ranking = json.loads(steadyclf(work, "explain", "model", "test.csv", "--json"))
        shot = work / "report.png"
        page = render(work / "report.html", screenshot=shot)
        from PIL import Image

        docs = ROOT / "docs"
        docs.mkdir(exist_ok=True)
        with Image.open(shot) as image:
            image.convert("RGB").quantize(256).save(docs / "report.png", optimize=True)
    lines = [
        f"# `steadyclf report` on {args.table}",
        "",
        "Command: `python benchmarks/report_example.py"
        + (f" --table {args.table}`" if args.table != "gss_abortion" else "`"),
        "",
        f"Trained on {len(train):,} rows (first of the 5 folds of `reference.py`) in "
        f"{trained:.1f} s; report on the other {len(test):,} rows in {reported:.1f} s "
        f"({summary['bytes'] / 1e3:,.0f} kB of HTML).",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in summary["highlights"].items()),
        "",
        f"Column importance (drop in ROC AUC when shuffled, {ranking['n_repeats']} repeats, "
        f"{ranking['n_rows']:,} rows):",
        "",
        "| rank | column | importance | interval (mean +- 2 sd) |",
        "|---:|---|---:|---|",
        *(
            f"| {c['rank']} | {c['column']} | {c['importance']:.4f} | "
            f"{c['low']:.4f} to {c['high']:.4f} |"
            for c in ranking["columns"]
        ),
        "",
        f"Chromium: {len(page.errors)} console errors, {sum(p['decoded'] for p in page.pictures)}"
        f" of {len(page.pictures)} pictures decoded, page {page.height:,} px tall; "
        f"screenshot `docs/report.png`.",
        "",
    ]
    text = "\n".join(lines)
    (HERE / "results" / "report_example.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

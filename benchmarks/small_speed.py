"""Small-data speed: steadyclf's default fit against CatBoost's and LightGBM's, in one process.

On each table (``--tables``; default the ten small tables of issue 20: affairs, biopsy,
credit_card, swiss_labor, oj, titanic, hmda, spam7, caravan, resume, from
``/work/shared/benchmarks/data``), the same 80 % of the rows
(``train_test_split(..., test_size=0.2, stratify=y, random_state=0)``) go to

- ``steadyclf``: ``BinaryClassifier(random_state=0)`` on the raw DataFrame
  (``--steadyclf-params JSON`` adds parameters, for variants);
- ``catboost``: ``CatBoostClassifier(random_seed=0, verbose=0)`` at its defaults, text
  columns as ``cat_features`` (a missing category its own level ``__NA__``), native NaN,
  and ``allow_writing_files=False`` (no ``catboost_info`` folder);
- ``lgbm``: ``LGBMClassifier(random_state=0, verbose=-1)`` at its defaults, text columns
  as pandas ``category``, native NaN

(the peers' input as in ``real_data.py`` and reference.py). Every model runs at its
default threads: CatBoost and LightGBM on every core, steadyclf on one thread for small
steps and up to ``torch.get_num_threads()`` for large ones. Nothing here sets a thread
count; the report records the counts and the ``*_NUM_THREADS`` variables it found.

The fits are interleaved: per table, each of ``--repeats`` rounds (default 3) fits every
model once, the order rotated by one model per round, so a change in the machine's load
falls on all of them alike. Fit seconds move by up to 40 % between runs on a shared
machine: the report gives the median over the rounds (and every round in the JSON), and
the load average at the start and at the end. Before the first table every model is
fitted once, untimed, on that table (imports and one-off set-up; ``--no-warmup`` to
count them). The test ROC AUC is that of the 20 % held out.

Reports per table: seconds of each model, steadyclf / CatBoost and steadyclf / LightGBM,
the three AUCs; the totals; on how many tables steadyclf's fit takes no longer than
CatBoost's. Writes ``benchmarks/results/NAME.md`` and ``NAME.json`` (``--out``, default
``small_speed``); progress goes to stderr. ::

    python benchmarks/small_speed.py                       # ten tables, 3 rounds
    python benchmarks/small_speed.py --tables titanic,biopsy --repeats 1
    python benchmarks/small_speed.py --steadyclf-params '{"numeric_embedding": "none"}' \\
        --out small_speed_no-embedding
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from peers import (
    add_data_dir,
    as_catboost,
    as_category,
    git_commit,
    log,
    machine,
    make_catboost,
    parse_list,
    require,
    save_json,
    split_columns,
    table_paths,
)
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

RESULTS = Path(__file__).resolve().parent / "results"
TABLES = (
    "affairs",
    "biopsy",
    "credit_card",
    "swiss_labor",
    "oj",
    "titanic",
    "hmda",
    "spam7",
    "caravan",
    "resume",
)
MODELS = ("steadyclf", "catboost", "lgbm")
NAMES = {"steadyclf": "steadyclf", "catboost": "CatBoost", "lgbm": "LightGBM"}
TEST_SIZE = 0.2
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def steadyclf_params(text: str) -> dict[str, Any]:
    """``--steadyclf-params``: a JSON object of valid BinaryClassifier parameters.

    Raises ``ValueError`` with a one-line message naming the problem.
    """
    from steadyclf import BinaryClassifier
    from steadyclf.exceptions import ParameterError
    from steadyclf.params import validate_params

    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--steadyclf-params is not JSON: {exc}") from None
    if not isinstance(params, dict):
        raise ValueError("--steadyclf-params must be a JSON object")
    try:
        validate_params(BinaryClassifier(**{"random_state": 0, **params}).get_params(deep=False))
    except (TypeError, ParameterError) as exc:
        raise ValueError(f"--steadyclf-params: {exc}") from None
    return params


def make_model(name: str, cat: list[str], params: dict[str, Any]) -> Any:
    if name == "steadyclf":
        from steadyclf import BinaryClassifier

        return BinaryClassifier(**{"random_state": 0, **params})
    if name == "catboost":
        return make_catboost(cat)  # thread_count left at its default: every core
    from lightgbm import LGBMClassifier

    return LGBMClassifier(random_state=0, verbose=-1)


def fit_once(
    name: str, frame: pd.DataFrame, cat: list[str], params: dict[str, Any], split: Any
) -> dict[str, Any]:
    """Fit ``name`` on the training rows; fit seconds, test ROC AUC, warnings seen."""
    y, train, test = split
    model = make_model(name, cat, params)
    X_train, X_test = frame.iloc[train], frame.iloc[test]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        model.fit(X_train, y[train])
        fit_s = time.perf_counter() - started
        proba = np.asarray(model.predict_proba(X_test))[:, 1]
    record: dict[str, Any] = {"fit_s": fit_s, "roc_auc": float(roc_auc_score(y[test], proba))}
    counts = Counter(w.category.__name__ for w in caught)
    if counts:
        record["python_warnings"] = dict(counts)
    return record


def load_table(path: Path) -> dict[str, Any]:
    """The table, each model's frame, and the 80 / 20 split."""
    df = pd.read_csv(path)
    if "target" not in df.columns:
        raise SystemExit(f"{path}: no 'target' column")
    y = df.pop("target").to_numpy()
    _, cat = split_columns(df)
    rows = np.arange(len(df))
    train, test = train_test_split(rows, test_size=TEST_SIZE, stratify=y, random_state=0)
    return {
        "rows": len(df),
        "features": df.shape[1],
        "cat": cat,
        "frames": {"steadyclf": df, "catboost": as_catboost(df, cat), "lgbm": as_category(df, cat)},
        "split": (y, train, test),
    }


def rotated(models: list[str], k: int) -> list[str]:
    k %= len(models)
    return models[k:] + models[:k]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in (
        "steadyclf",
        "torch",
        "numpy",
        "pandas",
        "scikit-learn",
        "catboost",
        "lightgbm",
    ):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def summarise(tables: list[dict[str, Any]], models: list[str]) -> dict[str, Any]:
    totals = {m: float(sum(t["median_fit_s"][m] for t in tables)) for m in models}
    out: dict[str, Any] = {"total_fit_s": totals}
    spread = {
        m: max(
            ((max(t["fit_s"][m]) - min(t["fit_s"][m])) / t["median_fit_s"][m] for t in tables),
            default=0.0,
        )
        for m in models
    }
    out["largest_relative_spread"] = spread
    if "steadyclf" in models and "catboost" in models:
        out["steadyclf_le_catboost"] = sum(
            t["median_fit_s"]["steadyclf"] <= t["median_fit_s"]["catboost"] for t in tables
        )
        out["total_ratio_catboost"] = ratio(totals["steadyclf"], totals["catboost"])
    if "steadyclf" in models and "lgbm" in models:
        out["total_ratio_lgbm"] = ratio(totals["steadyclf"], totals["lgbm"])
    return out


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(report: dict[str, Any]) -> str:
    models: list[str] = report["models"]
    tables = report["tables"]
    s = report["summary"]
    names = [NAMES[m] for m in models]
    lines = [
        "# Small data: default fit seconds, steadyclf against CatBoost and LightGBM",
        "",
        f"{len(tables)} tables, 80 % of the rows of each "
        "(`train_test_split(test_size=0.2, stratify=y, random_state=0)`), one process; per "
        f"table the models take turns, {report['repeats']} round(s), order rotated each "
        "round. Seconds: median wall clock of `fit` over the rounds; AUC: test ROC AUC on "
        "the 20 % held out. Every model at its default threads (below).",
        "",
    ]
    head = ["table", "train rows", "features"] + [f"{n} s" for n in names]
    ratios = [m for m in ("catboost", "lgbm") if m in models and "steadyclf" in models]
    head += [f"steadyclf / {NAMES[m]}" for m in ratios] + [f"AUC {n}" for n in names]
    lines += ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for t in tables:
        med = t["median_fit_s"]
        cells = [t["name"], f"{t['train_rows']:,}", str(t["features"])]
        cells += [f"{med[m]:.2f}" for m in models]
        cells += [fmt(ratio(med["steadyclf"], med[m]), ".2f") for m in ratios]
        cells += [f"{t['roc_auc'][m]:.4f}" for m in models]
        lines.append("| " + " | ".join(cells) + " |")
    total = s["total_fit_s"]
    cells = ["**total**", "", ""] + [f"{total[m]:.2f}" for m in models]
    cells += [fmt(ratio(total["steadyclf"], total[m]), ".2f") for m in ratios]
    cells += [f"{np.mean([t['roc_auc'][m] for t in tables]):.4f} (mean)" for m in models]
    lines += ["| " + " | ".join(cells) + " |", ""]
    if "steadyclf_le_catboost" in s:
        lines.append(
            f"- steadyclf's fit takes no longer than CatBoost's on {s['steadyclf_le_catboost']} "
            f"of {len(tables)} tables; in total {fmt(s['total_ratio_catboost'], '.2f')} x "
            "CatBoost's."
        )
    if "total_ratio_lgbm" in s:
        lines.append(
            f"- In total {fmt(s['total_ratio_lgbm'], '.2f')} x LightGBM's (the stretch target "
            "of issue 20: within 2 x)."
        )
    spread = ", ".join(f"{NAMES[m]} {v:.0%}" for m, v in s["largest_relative_spread"].items())
    if report["repeats"] > 1:
        lines.append(
            f"- Largest spread between rounds, (max - min) / median, over the tables: {spread}."
        )
    auc_moved = [
        f"{t['name']} ({NAMES[m]})" for t in tables for m in models if t["roc_auc_spread"][m] > 0
    ]
    if auc_moved:
        lines.append("- Test ROC AUC differed between rounds on: " + ", ".join(auc_moved) + ".")
    m_ = report["machine"]
    load = {k: " / ".join(f"{v:.1f}" for v in m_[f"load_average_{k}"]) for k in ("start", "end")}
    th = report["threads"]
    threads = {
        "steadyclf": "one thread for small steps, up to `torch.get_num_threads()` = "
        f"{th['torch']} for large ones (its default)",
        "catboost": f"thread_count at its default (-1: every core, {th['logical_cpus']} here)",
        "lgbm": "n_jobs at its default (OpenMP's: every core unless OMP_NUM_THREADS says "
        "otherwise)",
    }
    lines += ["", "## Models and threads", ""]
    lines += [f"- {NAMES[m]}: {report['definitions'][m]}; {threads[m]}." for m in models]
    lines += [
        "- Thread variables in the environment: "
        + (", ".join(f"{k}={v}" for k, v in th["environment"].items()) or "none set")
        + ".",
        "",
        f"Machine: {m_['cpu']}, {m_['logical_cpus']} logical CPUs "
        f"({m_.get('usable_cpus', '?')} usable by this process), "
        f"{m_.get('memory_gb', '?')} GB; load average (1, 5, 15 min) {load['start']} at the "
        f"start, {load['end']} at the end (other jobs on the machine slow every model).",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + f"; git "
        f"{report['git_commit']}.",
        f"Command: `{report['command']}` ({report['wall_s']:.0f} s, {report['date']}"
        + (", warm-up fits untimed" if report["warmup"] else ", no warm-up")
        + ").",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_dir(parser)
    parser.add_argument(
        "--tables", default=",".join(TABLES), help="comma list of tables (default: the ten)"
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma list of steadyclf, catboost, lgbm"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds of fits per table (median reported)"
    )
    parser.add_argument(
        "--steadyclf-params", default="{}", help="JSON object of BinaryClassifier parameters"
    )
    parser.add_argument(
        "--no-warmup", action="store_true", help="time the first fits too (imports, set-up)"
    )
    parser.add_argument("--out", default="small_speed", help="results name (NAME.md, NAME.json)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    command = "python benchmarks/small_speed.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    models = parse_list(args.models)
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    for m, package in (("catboost", "catboost"), ("lgbm", "lightgbm")):
        if m in models:
            require(package)
    try:
        params = steadyclf_params(args.steadyclf_params)
    except ValueError as exc:
        parser.error(str(exc))
    paths = table_paths(args.data_dir)
    names = parse_list(args.tables)
    missing = [n for n in names if n not in paths]
    if missing or not names:
        parser.error(f"no table(s) {missing} in {args.data_dir}; have {', '.join(paths)}")

    import torch

    load_start = os.getloadavg()
    started_run = time.perf_counter()
    today = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    warmup: dict[str, float] = {}
    tables: list[dict[str, Any]] = []
    for i, name in enumerate(names, 1):
        data = load_table(paths[name])
        _, train, _ = data["split"]
        log(f"[{i}/{len(names)}] {name}: {len(train):,} training rows x {data['features']}")
        if i == 1 and not args.no_warmup:
            for m in models:
                record = fit_once(m, data["frames"][m], data["cat"], params, data["split"])
                warmup[m] = record["fit_s"]
                log(f"  warm-up {m}: {record['fit_s']:.2f} s (not counted)")
        runs: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
        for r in range(args.repeats):
            for m in rotated(models, r):
                record = fit_once(m, data["frames"][m], data["cat"], params, data["split"])
                runs[m].append(record)
                log(
                    f"  round {r + 1} {m}: fit {record['fit_s']:.2f} s, AUC {record['roc_auc']:.4f}"
                )
        aucs = {m: [rec["roc_auc"] for rec in runs[m]] for m in models}
        warned = {
            m: dict(sum((Counter(rec.get("python_warnings", {})) for rec in runs[m]), Counter()))
            for m in models
        }
        tables.append(
            {
                "name": name,
                "rows": data["rows"],
                "train_rows": len(train),
                "features": data["features"],
                "fit_s": {m: [rec["fit_s"] for rec in runs[m]] for m in models},
                "median_fit_s": {
                    m: statistics.median(rec["fit_s"] for rec in runs[m]) for m in models
                },
                "roc_auc": {m: aucs[m][0] for m in models},
                "roc_auc_spread": {m: max(aucs[m]) - min(aucs[m]) for m in models},
                "python_warnings": {m: w for m, w in warned.items() if w},
            }
        )
    definitions = {
        "steadyclf": "BinaryClassifier("
        + ", ".join(f"{k}={v!r}" for k, v in {"random_state": 0, **params}.items())
        + ") on the raw DataFrame",
        "catboost": "CatBoostClassifier(random_seed=0, verbose=0, allow_writing_files=False), "
        "text columns as cat_features (missing: its own level '__NA__'), native NaN",
        "lgbm": "LGBMClassifier(random_state=0, verbose=-1), text columns as pandas category, "
        "native NaN",
    }
    report: dict[str, Any] = {
        "command": command,
        "date": today,
        "wall_s": time.perf_counter() - started_run,
        "data_dir": str(args.data_dir),
        "models": models,
        "repeats": args.repeats,
        "warmup": warmup,
        "steadyclf_params": params,
        "definitions": {m: definitions[m] for m in models},
        "threads": {
            "torch": torch.get_num_threads(),
            "logical_cpus": os.cpu_count(),
            "environment": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        },
        "machine": {
            **machine(),
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
        "versions": versions(),
        "git_commit": git_commit(),
        "summary": summarise(tables, models),
        "tables": tables,
    }
    text = markdown(report)
    RESULTS.mkdir(exist_ok=True)
    save_json(RESULTS / f"{args.out}.json", report)
    (RESULTS / f"{args.out}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

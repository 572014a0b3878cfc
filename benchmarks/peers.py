"""What the real-table benchmarks share: the peers' data preparation, the machine, the commit.

Imported by ``real_data.py`` (every method on one thread) and ``small_speed.py`` (every
method at its default threads), so it sets no thread count and imports no peer at import
time. The preparation is that of ``/work/shared/benchmarks/reference.py``: numeric dtypes
are numeric columns and every other column is categorical; LightGBM gets the categoricals
as pandas ``category``, CatBoost as text ``cat_features`` with a missing value as its own
level, both converted on the whole table before the split, as reference.py does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
#: The folder of the development tables (data/NAME.csv, reference_scores.csv).
DEFAULT_DATA = ROOT.parent / "shared" / "benchmarks"
#: CatBoost's level for a missing category (reference.py's).
CATBOOST_MISSING = "__NA__"


def table_paths(data_dir: Path) -> dict[str, Path]:
    folder = data_dir / "data" if (data_dir / "data").is_dir() else data_dir
    paths = {p.stem: p for p in sorted(folder.glob("*.csv"))}
    if not paths:
        raise SystemExit(f"no tables (*.csv) in {folder}; give the folder with --data-dir")
    return paths


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA,
        help="folder with data/NAME.csv (default: ../shared/benchmarks)",
    )


def parse_list(text: str | None) -> list[str]:
    """``"a, b,"`` -> ``["a", "b"]``; nothing for None or an empty text."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def log(message: str) -> None:
    """Progress, to stderr (stdout gets the report)."""
    print(message, file=sys.stderr, flush=True)


def save_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def split_columns(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    """reference.py's roles: numeric dtypes are numeric, every other column categorical."""
    num = list(X.select_dtypes(include="number").columns)
    return num, [c for c in X.columns if c not in num]


def as_category(X: pd.DataFrame, cat: list[str]) -> pd.DataFrame:
    """Text columns as pandas ``category`` on the whole table (LightGBM's input)."""
    X = X.copy()
    for c in cat:
        X[c] = X[c].astype("category")
    return X


def as_catboost(X: pd.DataFrame, cat: list[str]) -> pd.DataFrame:
    """Text columns as strings, a missing value its own level ``__NA__`` (CatBoost's input).

    Numeric columns keep their NaN: CatBoost handles them natively.
    """
    X = X.copy()
    for c in cat:
        X[c] = X[c].astype(str).where(X[c].notna(), CATBOOST_MISSING)
    return X


def make_catboost(cat: list[str], thread_count: int | None = None) -> Any:
    """``CatBoostClassifier(random_seed=0, verbose=0)`` at its defaults, ``cat`` as cat_features.

    ``thread_count=None`` leaves CatBoost's default (-1: every core). It writes no
    ``catboost_info`` folder (``allow_writing_files=False``, as reference.py).
    """
    from catboost import CatBoostClassifier

    threads = {} if thread_count is None else {"thread_count": thread_count}
    return CatBoostClassifier(
        random_seed=0, verbose=0, cat_features=cat, allow_writing_files=False, **threads
    )


def require(package: str) -> None:
    """Stop with one line naming the extra when a peer's package is missing."""
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise SystemExit(
            f"{package} is not installed; install the bench extra: "
            "pip install -c constraints.txt -e '.[bench]'"
        )


def machine() -> dict[str, Any]:
    """CPU model (/proc/cpuinfo), logical CPUs, the CPUs this process may use, memory."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    info: dict[str, Any] = {
        "cpu": cpu,
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        info["memory_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
    return info


def git_commit() -> str:
    """Short commit of the checkout, ``+dirty src`` when src/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty src" if dirty else "")

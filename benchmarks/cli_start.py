"""Command-line start-up and prediction, and a streamed predict in bounded memory (issue:
Ship the model).

Measures, in one run and as real processes (the median of ``--repeats`` runs each):

- ``python -c "import torch"``: the yardstick;
- ``steadyclf --help`` and ``steadyclf --version`` (targets: at most half of it);
- ``steadyclf predict MODEL new.csv --out pred.csv`` on 5,000 rows, CSV in and out
  (target: less than ``import torch``), and ``steadyclf train`` on the same rows;
- ``steadyclf predict`` on one Parquet file ten times ``--budget`` (decoded size), with
  its peak RSS (the process's own ``VmHWM``, read when its command returns) against the
  same command on 4,096 rows of the same columns (the fixed overhead: interpreter,
  libraries, model). Target: the peak above that overhead within the budget.

  Not ``wait4``'s ``ru_maxrss``: Linux carries the high-water mark of the memory the
  child had before ``exec`` into it, and a child started with ``vfork`` (as Python's
  ``subprocess`` does) had the parent's, so ``ru_maxrss`` reads at least the parent's
  peak (here: the process that wrote the 1 GB file).

Run: ``python benchmarks/cli_start.py [--repeats 5] [--budget 100MB]``. Writes
``benchmarks/results/cli_start.md`` and ``.json``; the large file is written once under
``--data-dir`` (never in the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streaming  # benchmarks/streaming.py: the data writer and the peak-RSS runner

RESULTS = Path(__file__).parent / "results"


def steadyclf_command() -> list[str]:
    """The console script a user runs (``python -m steadyclf`` when it is not installed)."""
    script = Path(sys.executable).with_name("steadyclf")
    return [str(script)] if script.exists() else [sys.executable, "-m", "steadyclf"]


def wall_times(command: list[str], repeats: int, env: dict[str, str]) -> list[float]:
    """Wall seconds of ``repeats`` runs of ``command`` (one warm-up run first)."""
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, env=env, check=False)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr.decode()[-2000:]}")
        if i:  # the first run warms the file cache
            times.append(seconds)
    return times


def peak_rss_run(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of ``steadyclf ARGS`` in a fresh process."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", streaming.PEAK_WRAPPER, *args],
        capture_output=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - started
    stderr = done.stderr.decode()
    if done.returncode != 0:
        sys.exit(f"steadyclf {' '.join(args)} failed:\n{stderr[-2000:]}")
    peak_kb = int(stderr.strip().splitlines()[-1].split("=")[1])
    return seconds, peak_kb * 1024


def small_data(folder: Path, n: int = 5000) -> tuple[Path, Path]:
    """``train.csv`` and ``new.csv`` (no target): numbers with gaps, text, booleans."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.normal(50, 15, n),
            "income": np.exp(rng.normal(10, 1, n)),
            "city": rng.choice(["Oslo", "Rome", "Lima", "Pune"], n),
            "member": rng.random(n) > 0.5,
            **{f"x{j}": rng.normal(size=n) * 10.0**j for j in range(6)},
        }
    )
    frame.loc[::9, "age"] = np.nan
    risk = (frame["age"].fillna(50) - 50) / 15 + (frame["city"] == "Rome") - frame["member"]
    frame["outcome"] = np.where(risk + rng.normal(size=n) > 0, "churned", "stayed")
    frame.to_csv(folder / "train.csv", index=False)
    frame.drop(columns="outcome").to_csv(folder / "new.csv", index=False)
    return folder / "train.csv", folder / "new.csv"


def large_file(folder: Path, target_bytes: int) -> dict[str, Any]:
    """One Parquet file of ``target_bytes`` decoded (the streaming benchmark's columns)."""
    facts_file = folder / "_dataset.json"
    if facts_file.exists():
        return dict(json.loads(facts_file.read_text()))
    streaming.ROWS_PER_FILE = 1 << 40  # one file, however large
    return streaming.write_dataset(folder, target_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", default="100MB", help="--memory-budget of the large run")
    parser.add_argument(
        "--data-dir", default=str(Path(tempfile.gettempdir()) / "steadyclf-cli-start")
    )
    args = parser.parse_args()
    from steadyclf.io.sources import parse_memory_size

    budget = parse_memory_size(args.budget)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = Path(args.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="steadyclf-cli-start-"))
    cli = steadyclf_command()
    train_csv, new_csv = small_data(work)
    model = work / "model"

    times: dict[str, list[float]] = {}
    times["python -c 'import torch'"] = wall_times(
        [sys.executable, "-c", "import torch"], args.repeats, env
    )
    times["steadyclf --help"] = wall_times([*cli, "--help"], args.repeats, env)
    times["steadyclf --version"] = wall_times([*cli, "--version"], args.repeats, env)
    train = [*cli, "train", str(train_csv), "--target", "outcome", "--out", str(model), "--quiet"]
    times["steadyclf train (5,000 rows)"] = wall_times(train, args.repeats, env)
    predict = [*cli, "predict", str(model), str(new_csv), "--out", str(work / "pred.csv")]
    times["steadyclf predict (5,000 rows, CSV in and out)"] = wall_times(predict, args.repeats, env)
    medians = {k: statistics.median(v) for k, v in times.items()}

    # The streamed predict: one Parquet file, ten times the budget.
    large = root / f"{10 * budget / 1e9:g}GB"
    if not (large / "_dataset.json").exists():
        print(f"writing {10 * budget / 1e9:g} GB of Parquet to {large} ...", file=sys.stderr)
    facts = large_file(large, 10 * budget)
    tiny = root / "tiny"
    if not (tiny / "_dataset.json").exists():
        streaming.write_dataset(tiny, 1, row_group=4096)
    big_model = work / "big-model"
    code, _, _, _, err = streaming.run_child(
        [*cli, "train", str(tiny), "--target", "label", "--out", str(big_model), "--quiet",
         "--max-epochs", "5"],
        env,
    )  # fmt: skip
    if code:
        sys.exit(f"training the model for the large run failed:\n{err[-2000:]}")

    def streamed(data: Path) -> tuple[float, int]:
        return peak_rss_run(
            ["predict", str(big_model), str(data), "--memory-budget", args.budget,
             "--out", str(work / "large.parquet"), "--quiet"],
            env,
        )  # fmt: skip

    _, baseline = streamed(tiny)
    seconds, peak = streamed(next(large.glob("*.parquet")))
    written = pd.read_parquet(work / "large.parquet", columns=["probability"])
    shutil.rmtree(work, ignore_errors=True)  # models and predictions: only their facts count
    result = {
        "command": f"python benchmarks/cli_start.py --repeats {args.repeats} --budget {args.budget}",
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores (shared), Python "
            f"{platform.python_version()}, OMP_NUM_THREADS=1"
        ),
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": medians,
        "streamed": {
            "rows": facts["rows"],
            "arrow_bytes": facts["arrow_bytes"],
            "disk_bytes": facts["disk_bytes"],
            "budget_bytes": budget,
            "data_to_budget": facts["arrow_bytes"] / budget,
            "rows_written": len(written),
            "seconds": seconds,
            "rows_per_second": facts["rows"] / seconds,
            "peak_rss_bytes": peak,
            "baseline_rss_bytes": baseline,
            "peak_minus_baseline_bytes": peak - baseline,
        },
    }
    torch_s = medians["python -c 'import torch'"]
    result["targets"] = {
        "help <= half of import torch": medians["steadyclf --help"] <= torch_s / 2,
        "version <= half of import torch": medians["steadyclf --version"] <= torch_s / 2,
        "predict 5,000 rows < import torch": (
            medians["steadyclf predict (5,000 rows, CSV in and out)"] < torch_s
        ),
        "streamed predict within the budget": peak - baseline <= budget,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli_start.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "cli_start.md").write_text(markdown(result) + "\n")
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    torch_s = r["median_seconds"]["python -c 'import torch'"]
    lines = [
        f"CLI start-up and prediction ({r['machine']}), median of {r['repeats']} runs.",
        "",
        f"`{r['command']}`",
        "",
        "| command | median s | runs (s) | vs `import torch` |",
        "|---|---:|---|---:|",
    ]
    for name, median in r["median_seconds"].items():
        runs = ", ".join(f"{s:.2f}" for s in r["seconds"][name])
        lines.append(f"| `{name}` | {median:.2f} | {runs} | {median / torch_s:.2f}x |")
    s = r["streamed"]
    mb = 1e6
    lines += [
        "",
        "Streamed predict: one Parquet file of "
        f"{s['rows']:,} rows, {s['arrow_bytes'] / mb:,.0f} MB decoded "
        f"({s['disk_bytes'] / mb:,.0f} MB on disk), {s['data_to_budget']:.1f} x the "
        f"{s['budget_bytes'] / mb:,.0f} MB budget.",
        "",
        "| | |",
        "|---|---|",
        f"| peak RSS of `steadyclf predict` | {s['peak_rss_bytes'] / mb:,.0f} MB |",
        f"| fixed overhead (same command on 4,096 rows) | {s['baseline_rss_bytes'] / mb:,.0f} MB |",
        f"| peak RSS above that overhead | {s['peak_minus_baseline_bytes'] / mb:,.0f} MB |",
        f"| wall time | {s['seconds']:.0f} s ({s['rows_per_second']:,.0f} rows/s) |",
        f"| rows written | {s['rows_written']:,} |",
        "",
        "Targets: "
        + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in r["targets"].items()),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

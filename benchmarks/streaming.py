"""Streaming benchmark: train on Parquet data 10x larger than the memory budget (issue 6).

Writes (once) a synthetic dataset under ``--data-dir`` (never in the repository): Parquet
files with 24 numeric columns on scales from 1e-6 to 1e6 with offsets up to 1e6 (3 of
them with 5 % missing values), 3 text categoricals (8, 100 and 1000 levels) and a 0/1
label from a non-linear rule. Then runs, as a child process,

    python -m steadyclf train DATA_DIR --target label --stream --memory-budget BUDGET ...

and reports the child's peak RSS (its own ``VmHWM``, read as its command returns: not
``wait4``'s ``ru_maxrss``, which carries the parent's peak into a child started by
``subprocess``; cross-checked by polling ``/proc/PID/status``), the
fixed overhead (the peak RSS of the same command on a 4,096-row
dataset of the same columns: interpreter, libraries, model), the rows per second of the
statistics pass and of the training epochs, and the validation ROC AUC.

Run: ``python benchmarks/streaming.py [--gigabytes 1] [--budget 100MB] [--epochs 2]``.
Writes ``benchmarks/results/streaming.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

RESULTS = Path(__file__).parent / "results"
#: Runs the command line in-process (``python -c PEAK_WRAPPER ARGS``), then prints the
#: process's peak RSS (VmHWM) on stderr.
PEAK_WRAPPER = """
import sys
from steadyclf.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print(f"peak_rss_kb={peak}", file=sys.stderr)
sys.exit(code)
"""
N_NUMERIC = 24
LEVELS = (8, 100, 1000)
ROW_GROUP = 1 << 16
ROWS_PER_FILE = 1 << 20


def write_dataset(
    folder: Path, target_bytes: int, seed: int = 0, row_group: int = ROW_GROUP
) -> dict[str, Any]:
    """Write Parquet files until their decoded (Arrow) size reaches ``target_bytes``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-6, 6, N_NUMERIC)
    offsets = np.where(rng.random(N_NUMERIC) < 0.5, 0.0, 10.0 ** rng.uniform(0, 6, N_NUMERIC))
    weights = rng.normal(size=N_NUMERIC) / np.sqrt(N_NUMERIC)
    levels = [
        pa.array([f"{name}{i}" for i in range(k)]) for name, k in zip("kgu", LEVELS, strict=True)
    ]
    arrow_bytes, rows, file_index, writer = 0, 0, 0, None
    while arrow_bytes < target_bytes:
        z = rng.normal(size=(row_group, N_NUMERIC))
        codes = [rng.integers(0, k, row_group) for k in LEVELS]
        logit = 2.0 * (z @ weights) + 1.5 * np.sin(2 * z[:, 0]) + 0.3 * (codes[0] - 3.5)
        logit += 0.5 * np.where(codes[1] % 3 == 0, 1.0, -0.5)
        label = (rng.random(row_group) < 1 / (1 + np.exp(-logit))).astype(np.int8)
        x = z * scales + offsets
        columns: dict[str, Any] = {}
        for j in range(N_NUMERIC):
            column = x[:, j]
            if j in (3, 7, 11):
                column = np.where(rng.random(row_group) < 0.05, np.nan, column)
            columns[f"x{j:02d}"] = column
        for j, (c, lv) in enumerate(zip(codes, levels, strict=True)):
            columns[f"c{j + 1}"] = pc.take(lv, pa.array(c))
        columns["label"] = label
        table = pa.table(columns)
        if writer is None:
            path = folder / f"part-{file_index:03d}.parquet"
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=row_group)
        arrow_bytes += table.nbytes
        rows += row_group
        if rows % ROWS_PER_FILE == 0:
            writer.close()
            writer, file_index = None, file_index + 1
    if writer is not None:
        writer.close()
    facts = {"rows": rows, "arrow_bytes": arrow_bytes, "files": len(list(folder.glob("*.parquet")))}
    facts["disk_bytes"] = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    (folder / "_dataset.json").write_text(json.dumps(facts))
    return facts


def run_child(command: list[str], env: dict[str, str]) -> tuple[int, float, int, str, str]:
    """Run ``command``; return its exit code, wall seconds, peak RSS (bytes), stdout, stderr.

    The peak is the child's ``VmHWM`` (:data:`PEAK_WRAPPER` prints it); a
    thread also polls ``/proc/PID/status`` as a cross-check (the larger of the two is
    returned).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        polled = [0]
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                try:
                    with open(f"/proc/{child.pid}/status") as f:
                        for line in f:
                            if line.startswith("VmRSS:"):
                                polled[0] = max(polled[0], int(line.split()[1]) * 1024)
                except OSError:
                    pass
                done.wait(0.1)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        _, status, _ = os.wait4(child.pid, 0)
        done.set()
        watcher.join()
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stderr = err.read().decode()
        marks = [line for line in stderr.splitlines() if line.startswith("peak_rss_kb=")]
        own = int(marks[-1].split("=")[1]) * 1024 if marks else 0
        peak = max(own, polled[0])
        return child.returncode, seconds, peak, out.read().decode(), stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0, help="decoded size of the data")
    parser.add_argument("--budget", default="100MB", help="--memory-budget for training")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--data-dir", default=str(Path(tempfile.gettempdir()) / "steadyclf-streaming")
    )
    args = parser.parse_args()
    from steadyclf.io.sources import parse_memory_size

    budget = parse_memory_size(args.budget)
    folder = Path(args.data_dir) / f"{args.gigabytes:g}GB"
    facts_file = folder / "_dataset.json"
    if facts_file.exists():
        facts = json.loads(facts_file.read_text())
    else:
        print(f"writing {args.gigabytes:g} GB of Parquet to {folder} ...", file=sys.stderr)
        facts = write_dataset(folder, int(args.gigabytes * 1e9))
    # One thread: the machine's cores are shared (timings are then less noisy).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    model_dir = Path(tempfile.mkdtemp(prefix="steadyclf-streaming-model-"))

    def train(data: Path, name: str) -> tuple[float, int, str]:
        command = [
            sys.executable, "-c", PEAK_WRAPPER, "train", str(data), "--target", "label",
            "--out", str(model_dir / name), "--stream", "--memory-budget", args.budget,
            "--max-epochs", str(args.epochs), "--json", "--quiet",
        ]  # fmt: skip
        code, seconds, peak, stdout, stderr = run_child(command, env)
        if code != 0:
            sys.exit(f"training failed ({code}):\n{stderr[-3000:]}")
        return seconds, peak, stdout

    # The fixed overhead: the same command on 4096 rows (interpreter, libraries, model).
    tiny = Path(args.data_dir) / "tiny"
    if not (tiny / "_dataset.json").exists():
        write_dataset(tiny, 1, row_group=4096)
    _, baseline, _ = train(tiny, "tiny-model")
    seconds, peak, stdout = train(folder, "model")
    metadata = json.loads((model_dir / "model" / "model.json").read_text())["metadata"]
    summary = json.loads(stdout)
    info = metadata["reading"]
    epochs = json.loads((model_dir / "model" / "model.json").read_text())["history"]
    epoch_seconds = [row["seconds"] for row in epochs]
    result = {
        "command": (
            f"python benchmarks/streaming.py --gigabytes {args.gigabytes:g} --budget {args.budget} "
            f"--epochs {args.epochs}  # runs: python -m steadyclf train {metadata['data']} "
            f"--target label --stream --memory-budget {args.budget} --max-epochs {args.epochs} ..."
        ),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch 1 thread",
        "data": facts | {"budget_bytes": budget, "data_to_budget": facts["arrow_bytes"] / budget},
        "peak_rss_bytes": peak,
        "baseline_rss_bytes": baseline,
        "peak_minus_baseline_bytes": peak - baseline,
        "wall_seconds": seconds,
        "statistics_seconds": info["statistics_seconds"],
        "statistics_rows_per_second": facts["rows"] / info["statistics_seconds"],
        "epoch_seconds": epoch_seconds,
        "training_rows_per_second": info["n_train"] * len(epochs) / sum(epoch_seconds),
        "epochs": len(epochs),
        "validation_rows_scored": summary["validation"]["n"],
        "validation_roc_auc": summary["validation"]["roc_auc"],
        "reading": info,
    }
    shutil.rmtree(model_dir, ignore_errors=True)  # the models were only needed for their facts
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "streaming.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "streaming.md").write_text(markdown(result) + "\n")
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    mb = 1e6
    d = r["data"]
    rows = [
        ("data", f"{d['rows']:,} rows, {d['files']} Parquet files, {d['arrow_bytes'] / mb:,.0f} MB decoded ({d['disk_bytes'] / mb:,.0f} MB on disk)"),
        ("memory budget", f"{d['budget_bytes'] / mb:,.0f} MB (data = {d['data_to_budget']:.1f} x budget)"),
        ("peak RSS of the training process", f"{r['peak_rss_bytes'] / mb:,.0f} MB"),
        ("fixed overhead (same command on 4,096 rows)", f"{r['baseline_rss_bytes'] / mb:,.0f} MB"),
        ("peak RSS above that overhead", f"{r['peak_minus_baseline_bytes'] / mb:,.0f} MB"),
        ("statistics pass (+ exact medians)", f"{r['statistics_seconds']:.0f} s, {r['statistics_rows_per_second']:,.0f} rows/s"),
        ("training", f"{r['epochs']} epochs of {', '.join(f'{s:.0f}' for s in r['epoch_seconds'])} s, {r['training_rows_per_second']:,.0f} rows/s"),
        ("validation ROC AUC", f"{r['validation_roc_auc']:.4f} on {r['validation_rows_scored']:,} held-out rows"),
        ("total wall time", f"{r['wall_seconds']:.0f} s"),
    ]  # fmt: skip
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"Streaming benchmark ({r['machine']}).\n\n`{r['command']}`\n\n| | |\n|---|---|\n{table}"


if __name__ == "__main__":
    main()

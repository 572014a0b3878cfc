"""Faults injected into real runs: inputs that change under a run, edited model files,
crashes and readers during a save, signals, concurrent writers, stalled ranks."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steadyclf import BinaryClassifier, DataError
from steadyclf.io.sources import DataSource


def _table(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] - x[:, 1] > 0).astype(int)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y})


class _AfterEpoch:
    """A callback that changes the data files after the first epoch (a real rewrite)."""

    def __init__(self, change: Callable[[], None]) -> None:
        self.change = change
        self.done = False

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        if not self.done:
            self.done = True
            self.change()


def _inverted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(y=1 - frame["y"])


def _overwrite_csv_inverted(path: Path) -> None:
    _inverted(pd.read_csv(path)).to_csv(path, index=False)  # in place, same size


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 3)


def _fit_streamed(data: Path, change: Callable[[], None]) -> BinaryClassifier:
    clf = BinaryClassifier(random_state=0, max_epochs=4, batch_size=128)
    return clf.fit_files(
        data, "y", stream=True, memory_budget="16kB", callbacks=[_AfterEpoch(change)], context=None
    )


def _parquet_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "parts"
    folder.mkdir()
    frame = _table()
    for i in range(3):
        part = frame.iloc[i * 400 : (i + 1) * 400]
        pq.write_table(
            pa.Table.from_pandas(part, preserve_index=False),
            folder / f"p{i}.parquet",
            row_group_size=200,
        )
    return folder


@pytest.mark.parametrize("change", ["inverted", "truncated"])
def test_a_csv_changed_between_epochs_stops_the_run(tmp_path: Path, change: str) -> None:
    path = tmp_path / "d.csv"
    _table().to_csv(path, index=False)
    rewrite = _overwrite_csv_inverted if change == "inverted" else _truncate
    with pytest.raises(DataError, match=r"d\.csv' changed while the run was reading it") as info:
        _fit_streamed(path, lambda: rewrite(path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("change", ["replaced", "truncated", "inverted"])
def test_a_parquet_folder_changed_between_epochs_stops_the_run(tmp_path: Path, change: str) -> None:
    folder = _parquet_folder(tmp_path)
    victim = folder / "p1.parquet"

    def rewrite() -> None:
        if change == "truncated":
            _truncate(victim)
        elif change == "inverted":
            table = _inverted(pq.read_table(victim).to_pandas())
            pq.write_table(
                pa.Table.from_pandas(table, preserve_index=False), victim, row_group_size=200
            )
        else:  # another file renamed over it, as a sync tool does
            other = folder / ".incoming"
            pq.write_table(pa.Table.from_pandas(_table(400, seed=9), preserve_index=False), other)
            os.replace(other, victim)

    with pytest.raises(
        DataError, match=r"p1\.parquet' changed while the run was reading it"
    ) as info:
        _fit_streamed(folder, rewrite)
    assert "\n" not in str(info.value)


def test_a_same_size_rewrite_that_keeps_the_mtime_is_caught_by_the_fingerprint(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.csv"
    _table().to_csv(path, index=False)
    source = DataSource.open(path)
    before = path.stat()
    _overwrite_csv_inverted(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    with pytest.raises(DataError, match="its content differs"):
        list(source.batches(["a", "y"]))


def test_an_unchanged_input_reads_the_same_rows_every_pass(tmp_path: Path) -> None:
    folder = _parquet_folder(tmp_path)
    source = DataSource.open(folder)
    first = pd.concat(frame for _, frame in source.batches(["a", "y"]))
    second = pd.concat(frame for _, frame in source.batches(["a", "y"]))
    pd.testing.assert_frame_equal(first, second)

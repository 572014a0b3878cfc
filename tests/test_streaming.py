"""Reading in passes: one pipeline for data in memory and in files, the same statistics,
the same defaults and the same model, exact quantiles, shards, the shuffle buffer."""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import steadyclf
from steadyclf import BinaryClassifier, DataError, ParameterError
from steadyclf.cli import main
from steadyclf.io.sources import DataSource, parse_memory_size
from steadyclf.io.tables import read_table
from steadyclf.parallel import share_of
from steadyclf.schema import quantiles
from steadyclf.schema.columns import ColumnPlan
from steadyclf.schema.encoder import TabularEncoder
from steadyclf.schema.split import SplitRule
from steadyclf.schema.summary import summarise
from steadyclf.train.batches import ShuffleBuffer

N_ROWS = 1500


def _mixed_frame(n: int = N_ROWS, seed: int = 0) -> pd.DataFrame:
    """Every column kind the encoder tells apart, on wildly different scales."""
    rng = np.random.default_rng(seed)
    hr = rng.normal(92, 5, n)
    frame = pd.DataFrame(
        {
            "offset": 1e6 + 1e-6 * hr,  # the signal lives in the 13th digit
            "tiny": rng.normal(0, 1e-6, n),
            "huge": rng.exponential(1e9, n),
            "count": rng.integers(0, 10, n).astype(float),
            "city": rng.choice(["Oslo", "Rome", "Lima", None], n),
            "code": rng.integers(0, 100, n),  # listed as categorical: 64 of 100 levels kept
            "const": 5,
            "empty": np.nan,
            "row_id": np.arange(n),
            "user": [f"u{i}" for i in range(n)],
            "digits": [str(v) for v in rng.integers(0, 50, n)],
            "flag": rng.random(n) < 0.3,
            "when": pd.date_range("2020-01-01", periods=n, freq="h"),
            "day": [f"2021-01-{1 + i % 28:02d}" for i in range(n)],
            "level": rng.choice([f"l{i}" for i in range(300)], n),
        }
    )
    frame.loc[rng.random(n) < 0.1, "offset"] = np.nan
    frame.loc[rng.random(n) < 0.2, "count"] = np.nan
    frame["y"] = np.where(hr + rng.normal(0, 2, n) > 92, "sick", "well")
    return frame


def _write_parquet(frame: pd.DataFrame, folder: Path, n_files: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), n_files)):
        table = pa.Table.from_pandas(frame.iloc[part], preserve_index=False)
        pq.write_table(table, folder / f"part-{i}.parquet", row_group_size=170)
    return folder


def _in_memory(frame: pd.DataFrame, **params: Any) -> BinaryClassifier:
    X, y = frame.drop(columns="y"), frame["y"]
    params.setdefault("validation_fraction", 0.1)
    return BinaryClassifier(random_state=3, max_epochs=1, **params).fit(X, y)


def _streamed(data: Any, budget: str = "20MB", **params: Any) -> BinaryClassifier:
    params.setdefault("validation_fraction", 0.1)
    params.setdefault("max_epochs", 1)
    clf = BinaryClassifier(random_state=3, **params)
    return clf.fit_files(data, "y", stream=True, memory_budget=budget, context=None)


def _assert_same_statistics(streamed: BinaryClassifier, clf: BinaryClassifier) -> None:
    buffers, expected = streamed.module_.encoder, clf.module_.encoder
    assert streamed.encoder_.to_dict() == clf.encoder_.to_dict()
    np.testing.assert_array_equal(
        buffers.impute.missing_columns.numpy(), expected.impute.missing_columns.numpy()
    )
    np.testing.assert_array_equal(buffers.impute.median.numpy(), expected.impute.median.numpy())
    for name in ("center", "scale"):
        np.testing.assert_allclose(
            getattr(buffers.normalize, name).numpy(),
            getattr(expected.normalize, name).numpy(),
            rtol=1e-9,
        )


def test_parquet_statistics_equal_the_in_memory_ones(tmp_path: Path) -> None:
    frame = _mixed_frame()
    folder = _write_parquet(frame, tmp_path / "data")
    assert len(DataSource.open(folder).pieces) > 3  # several files and row groups
    # Integer codes read as categories too: the same columns and levels either way.
    params: dict[str, Any] = {"categorical": ["code"], "integer_codes": "category"}
    streamed = _streamed(folder, **params)
    whole = read_table(folder / "part-0.parquet")  # one file: the dtypes io gives
    assert list(whole.columns) == list(frame.columns)
    clf = _in_memory(pd.concat([read_table(p) for p in sorted(folder.iterdir())]), **params)
    _assert_same_statistics(streamed, clf)
    # 'count' (10 values, as floats with gaps) and 'digits' (50, as text); 'code' is listed
    # as categorical: a category only.
    read = [c.name for c in streamed.encoder_.columns_ if c.read_as_category]
    assert read == ["count", "digits"]
    roles = {c.name: c.role for c in streamed.encoder_.columns_}
    assert roles["const"] == roles["empty"] == roles["row_id"] == roles["user"] == "dropped"
    assert roles["digits"] == "numeric" and roles["flag"] == "boolean"
    assert roles["when"] == "datetime" and roles["day"] == "dropped"
    data = streamed.data_
    assert data["n_train"] + data["n_valid"] == N_ROWS and data["n_valid"] > 100
    assert data["streamed"] and streamed.plan_ == clf.plan_


def test_csv_read_in_blocks_gives_the_in_memory_statistics(tmp_path: Path) -> None:
    frame = _mixed_frame(seed=1).drop(columns=["when"])
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    source = DataSource.open(path, csv_block_size=1 << 14)
    plan = ColumnPlan.create(source.columns, source.kinds, "y", untyped=source.untyped)
    summary = summarise(source, plan, SplitRule(0.1, 3), budget=10**7)
    assert source.counted and source.n_rows == N_ROWS and summary.n_rows == N_ROWS
    clf = _in_memory(read_table(path))
    encoder = TabularEncoder.from_summary(summary)
    read = [c.name for c in clf.encoder_.columns_ if c.read_as_category]
    if read:  # integer_codes 'auto' kept the reading of the code columns
        encoder = encoder.with_categories(summary, read)
    assert encoder.to_dict() == clf.encoder_.to_dict()
    _assert_same_statistics(_streamed(path, budget="10MB"), clf)


def test_arrow_batches_encode_like_frames(tmp_path: Path) -> None:
    frame = _mixed_frame(seed=8)
    frame.loc[3, "level"] = "never seen in training"
    folder = _write_parquet(frame, tmp_path / "data", n_files=1)
    clf = _streamed(folder, categorical=["code"])
    encoder = clf.encoder_
    path = folder / "part-0.parquet"
    codes = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=400):
        fast, slow = encoder.transform(batch), encoder.transform(batch.to_pandas())
        np.testing.assert_array_equal(fast[0], slow[0])
        np.testing.assert_array_equal(fast[1], slow[1])
        codes.append(fast[1])
    assert {0, 1} <= set(np.concatenate(codes).ravel().tolist())  # missing and unseen codes
    bad = next(pq.ParquetFile(path).iter_batches(batch_size=50)).to_pandas().assign(tiny=np.inf)
    with pytest.raises(DataError, match="'tiny' has an infinite value at row 0"):
        encoder.transform(bad)


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 1001])
def test_exact_quantiles_match_numpy(tmp_path: Path, n: int) -> None:
    rng = np.random.default_rng(n)
    values = np.concatenate([rng.normal(0, 1, n // 2), -rng.exponential(1e6, n - n // 2)])
    values[rng.random(n) < 0.2] = np.nan
    values[: n // 10] = 3.0  # ties
    frame = pd.DataFrame({"v": values, "w": rng.normal(size=n), "y": np.arange(n) % 2})
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "d.parquet", row_group_size=97)
    source = DataSource.open(tmp_path / "d.parquet")
    split = SplitRule(0.3, seed=5)
    train = ~split.mask(0, n)
    columns = [frame["v"].to_numpy()[train], frame["w"].to_numpy()[train]]
    counts = [int(np.isfinite(c).sum()) for c in columns]
    probabilities = [0.25, 0.5, 0.75]
    found = quantiles.exact_quantiles(
        source, [("v", "numeric"), ("w", "numeric")], counts, probabilities, split, budget=1
    )
    for j, column in enumerate(columns):
        present = column[np.isfinite(column)]
        if present.size == 0:
            np.testing.assert_array_equal(found[j], 0.0)
            continue
        assert found[j, 1] == np.median(present)  # exactly numpy's median
        np.testing.assert_allclose(found[j], np.quantile(present, probabilities), rtol=1e-15)


def test_quantiles_refine_by_histograms_when_values_do_not_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(92, 5, 4000), 1)  # many ties, all in a few radix buckets
    pq.write_table(pa.table({"v": values}), tmp_path / "d.parquet", row_group_size=500)
    passes: list[int] = []
    original = DataSource.batches

    def counting(self: DataSource, *args: Any, **kwargs: Any) -> Any:
        passes.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DataSource, "batches", counting)
    monkeypatch.setattr(quantiles, "collect_limit", lambda budget, n: 10)
    source = DataSource.open(tmp_path / "d.parquet")
    found = quantiles.exact_quantiles(
        source, [("v", "numeric")], [4000], [0.1, 0.5], SplitRule(0.0, 0), budget=10**9
    )
    assert found[0, 1] == np.median(values)
    assert found[0, 0] == pytest.approx(np.quantile(values, 0.1), rel=1e-15)
    assert len(passes) >= 3  # histogram passes before the final selection


class _ThreadGroup:
    """In-process stand-in for a process group: ranks are threads, objects are pickled."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self._barrier = threading.Barrier(world_size, timeout=60)
        self._slots: list[Any] = [None] * world_size

    def run(self, work: Callable[[Any], Any]) -> list[Any]:
        results: list[Any] = [None] * self.world_size
        errors: list[BaseException] = []

        def target(rank: int) -> None:
            try:
                results[rank] = work(_ThreadContext(self, rank))
            except BaseException as exc:  # pragma: no cover - shown by the assert below
                errors.append(exc)
                self._barrier.abort()

        threads = [threading.Thread(target=target, args=(r,)) for r in range(self.world_size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        return results

    def gather(self, rank: int, obj: Any) -> list[Any]:
        self._slots[rank] = pickle.dumps(obj)
        self._barrier.wait()
        out = [pickle.loads(s) for s in self._slots]
        self._barrier.wait()
        return out


class _ThreadContext:
    def __init__(self, group: _ThreadGroup, rank: int) -> None:
        self.group, self.rank, self.world_size = group, rank, group.world_size
        self.device = torch.device("cpu")

    def all_gather_object(self, obj: Any) -> list[Any]:
        return self.group.gather(self.rank, obj)

    def all_reduce_sum(self, array: Any) -> Any:
        return np.sum(self.group.gather(self.rank, array), axis=0)

    def all_reduce_min(self, value: int) -> int:
        return int(min(self.group.gather(self.rank, value)))

    def broadcast_object(self, obj: Any) -> Any:
        return self.group.gather(self.rank, obj)[0]


@pytest.mark.parametrize("world_size", [2, 3])
def test_shards_merged_in_rank_order_equal_one_process(tmp_path: Path, world_size: int) -> None:
    frame = _mixed_frame(seed=2)
    source = DataSource.open(_write_parquet(frame, tmp_path / "data", n_files=2))
    shards = [source.shard(r, world_size) for r in range(world_size)]
    positions = [
        p
        for s in shards
        for piece in s.pieces
        for p in range(piece.start, piece.start + piece.n_rows)
    ]
    assert sorted(positions) == list(range(N_ROWS))  # every row read once
    assert max(s.n_rows for s in shards) - min(s.n_rows for s in shards) <= 1  # 1/N each
    plan = ColumnPlan.create(source.columns, source.kinds, "y", categorical=["code"])
    split = SplitRule(0.1, 3)

    def statistics(shard: DataSource, ctx: Any) -> Any:
        summary = summarise(shard, plan, split, budget=10**7, context=ctx)
        numeric = TabularEncoder.from_summary(summary).numeric_infos
        names = [c.name for c in numeric]
        counts = [int(n) for n in summary.numeric.training_stats(names).count]
        found = quantiles.exact_quantiles(
            shard,
            [(c.name, c.role) for c in numeric],
            counts,
            [0.5],
            split,
            budget=10**7,
            context=ctx,
        )
        return summary, found

    results = _ThreadGroup(world_size).run(lambda ctx: statistics(shards[ctx.rank], ctx))
    single, medians = statistics(source, None)
    for summary, found in results:
        tally, expected = summary.numeric, single.numeric
        assert summary.n_rows == single.n_rows and summary.labels == single.labels
        np.testing.assert_array_equal(found, medians)
        np.testing.assert_array_equal(tally.train.mean, results[0][0].numeric.train.mean)
        np.testing.assert_array_equal(tally.train.m2, results[0][0].numeric.train.m2)
        np.testing.assert_allclose(
            tally.training_stats(tally.names).mean,
            expected.training_stats(expected.names).mean,
            rtol=1e-12,
        )
        np.testing.assert_allclose(tally.train.std, expected.train.std, rtol=1e-9)
        np.testing.assert_array_equal(tally.low, expected.low)
        np.testing.assert_array_equal(tally.n_values, expected.n_values)
        assert {n: c.levels for n, c in summary.columns.items()} == {
            n: c.levels for n, c in single.columns.items()
        }
        for name, col in summary.columns.items():  # integer-valued, and each value's rows
            alone = single.columns[name]
            assert (col.integer, col.n_values) == (alone.integer, alone.n_values), name
            if alone.value_counts is None:
                assert col.value_counts is None, name
            else:
                assert col.value_counts is not None, name
                for mine, theirs in zip(col.value_counts, alone.value_counts, strict=True):
                    np.testing.assert_array_equal(mine, theirs)
    assert sum(s.local_train + s.local_valid for s, _ in results) == N_ROWS
    # Distinct values are counted up to 16, whichever process saw which: 'count' has 10.
    values = dict(zip(single.numeric.names, single.numeric.n_values.tolist(), strict=True))
    assert values["count"] == 10 and values["offset"] == values["huge"] == 16
    # 'count' holds integers (as floats, with gaps): its values are kept with their rows.
    count = single.columns["count"]
    assert count.integer and not single.columns["huge"].integer
    assert count.value_counts is not None and count.value_counts[1].sum() == count.n_present


def test_csv_files_are_shared_whole_with_global_positions(tmp_path: Path) -> None:
    frame = _mixed_frame(seed=4).drop(columns=["when"])
    for i, part in enumerate(np.array_split(np.arange(N_ROWS), 4)):
        frame.iloc[part].to_csv(tmp_path / f"part-{i}.csv", index=False)
    source = DataSource.open(sorted(tmp_path.glob("*.csv")), csv_block_size=1 << 13)
    shares = _ThreadGroup(2).run(lambda ctx: share_of(source, ctx))
    starts = sorted(p.start for s in shares for p in s.pieces)
    assert starts == [0, 375, 750, 1125]
    with pytest.raises(DataError, match="4 CSV file"):
        source.shard(0, 5)


def test_shuffle_buffer_emits_every_row_once_in_a_new_order() -> None:
    buffer = ShuffleBuffer(capacity=100, batch_size=16, generator=torch.Generator().manual_seed(0))
    seen, sizes = [], []
    for start in range(0, 1000, 70):
        rows = torch.arange(start, min(start + 70, 1000))
        # Loss weights travel with their rows.
        for xb, yb, wb in buffer.push(rows[:, None].float(), rows.float(), 2 * rows.float()):
            assert torch.equal(xb[:, 0], yb) and torch.equal(wb, 2 * yb)
            seen.append(yb.clone())  # a batch is a view into the buffer
            sizes.append(len(yb))
        assert buffer.size < 100  # bounded: what is held between chunks
    for _, yb, wb in buffer.drain():
        assert torch.equal(wb, 2 * yb)
        seen.append(yb.clone())
        sizes.append(len(yb))
    order = torch.cat(seen).long()
    assert sorted(order.tolist()) == list(range(1000))
    assert set(sizes[:-1]) == {16}
    assert (order != torch.arange(1000)).float().mean() > 0.9


def test_streamed_model_learns_saves_and_loads(tmp_path: Path) -> None:
    frame = _mixed_frame(n=2000, seed=5)
    folder = _write_parquet(frame, tmp_path / "data")
    clf = BinaryClassifier(random_state=0, max_epochs=6, categorical=["code"]).fit_files(
        folder / "*.parquet", "y", memory_budget="20MB", context=None
    )
    assert clf.data_["streamed"] and clf.data_["why"] == "a glob"
    assert clf.n_iter_ >= 1 and clf.data_["n_rows"] == 2000
    again = steadyclf.load(clf.save(tmp_path / "model"))
    X = frame.drop(columns="y")
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    assert clf.score(X, frame["y"]) > 0.8  # the label noise caps accuracy near 0.88
    assert set(clf.classes_) == {"sick", "well"}


def test_validation_rows_are_subsampled_to_fit_the_budget(tmp_path: Path) -> None:
    frame = _mixed_frame(n=4000, seed=6)
    folder = _write_parquet(frame, tmp_path / "data")
    full = _streamed(folder, budget="50MB", validation_fraction=0.3)
    small = _streamed(folder, budget="300kB", validation_fraction=0.3)
    assert full.data_["rows_in_memory"] and not small.data_["rows_in_memory"]
    assert full.validation_metrics_["n"] == full.data_["n_valid"]
    assert 0 < small.validation_metrics_["n"] < small.data_["n_valid"]
    assert small.data_["validation_keep"] < 1


def test_streamed_epochs_keep_a_bounded_buffer_of_logits(tmp_path: Path, monkeypatch) -> None:
    """A streamed epoch adds up its loss and accuracy every STREAMED_METRIC_ROWS rows
    instead of keeping the logits and labels of every row of the file."""
    from steadyclf.train import trainer as trainer_module

    frame = _mixed_frame(n=4000, seed=7)
    folder = _write_parquet(frame, tmp_path / "data")
    params = {"budget": "300kB", "batch_size": 64, "max_epochs": 3, "n_members": 1}
    whole = _streamed(folder, **params)
    assert not whole.data_["rows_in_memory"]  # streamed every epoch
    sizes: list[int] = []
    allocate = trainer_module.Trainer._buffer

    def recorded(self, name, n, dtype, device):  # type: ignore[no-untyped-def]
        if name in ("logits", "y"):  # the epoch's buffers (not the validation rows')
            sizes.append(n)
        return allocate(self, name, n, dtype, device)

    monkeypatch.setattr(trainer_module, "STREAMED_METRIC_ROWS", 100)
    monkeypatch.setattr(trainer_module.Trainer, "_buffer", recorded)
    bounded = _streamed(folder, **params)
    assert sizes and max(sizes) == 100  # not the ~3,600 training rows
    # The same steps; only the grouping of the sums differs (each group's mean loss is a
    # float32 mean: groups of 100 rows against one of all rows round differently, ~1e-7).
    for a, b in zip(whole.history_, bounded.history_, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-6)
        assert b["train_accuracy"] == pytest.approx(a["train_accuracy"], rel=1e-12)
    # The same steps on the same shapes: the same model (a tolerance, not bit equality).
    np.testing.assert_allclose(
        bounded.predict_proba(frame.drop(columns="y")),
        whole.predict_proba(frame.drop(columns="y")),
        rtol=0,
        atol=1e-12,
    )


def test_memory_sizes() -> None:
    assert parse_memory_size("200MB") == 200_000_000
    assert parse_memory_size("1.5 GiB") == 3 * 2**29
    assert parse_memory_size("64k") == 64_000
    for bad in ("lots", "-1MB", "0"):
        with pytest.raises(ParameterError, match="memory size"):
            parse_memory_size(bad)


def test_bad_inputs_get_one_line_errors(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, None, 1]})
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "a.parquet")
    path = tmp_path / "a.parquet"
    with pytest.raises(DataError, match=r"target 'y' is missing on 1 row \(first: 2\)"):
        BinaryClassifier().fit_files(path, "y", stream=True, context=None)
    with pytest.raises(DataError, match="target column 'label' is not in the data"):
        BinaryClassifier().fit_files(path, "label", stream=True, context=None)
    pq.write_table(pa.table({"x": [1.0], "z": [0]}), tmp_path / "b.parquet")
    with pytest.raises(DataError, match="same columns"):
        DataSource.open(tmp_path)
    with pytest.raises(DataError, match="no file matches"):
        DataSource.open(str(tmp_path / "nothing-*.parquet"))
    (tmp_path / "c").mkdir()
    three = pa.table({"x": np.arange(30.0), "y": np.arange(30) % 3})
    pq.write_table(three, tmp_path / "c" / "c.parquet")
    with pytest.raises(DataError, match=r"has 3 classes \(values seen \[0, 1, 2\], rows "):
        BinaryClassifier().fit_files(tmp_path / "c", "y", context=None)
    with pytest.raises(ParameterError, match="memory size 'lots'"):
        BinaryClassifier().fit_files(tmp_path / "c", "y", memory_budget="lots", context=None)


def test_cli_streams_a_directory_and_a_file_over_the_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = _mixed_frame(n=800, seed=7)
    folder = _write_parquet(frame, tmp_path / "data", n_files=2)
    args = ["--target", "y", "--max-epochs", "2", "--categorical", "code"]
    assert main(["train", str(folder), "--out", str(tmp_path / "m1"), "--json", *args]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 800 and summary["reading"]["why"] == "a directory"
    single = tmp_path / "one.parquet"
    frame.to_parquet(single)
    budget = ["--memory-budget", "100kB"]
    assert main(["train", str(single), "--out", str(tmp_path / "m2"), *budget, *args]) == 0
    err = capsys.readouterr().err
    assert "read the data in passes" in err and "more than the 100 KB budget" in err
    assert "within a 100 KB budget" in err  # it said "0 MB"
    model = steadyclf.load(tmp_path / "m2")
    index = steadyclf.persistence.read_index(tmp_path / "m2")
    assert (
        index["metadata"]["reading"]["n_rows"] == 800 and index["metadata"]["reading"]["streamed"]
    )
    assert model.predict(frame.drop(columns="y")).shape == (800,)


def test_cli_streaming_takes_every_training_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = _mixed_frame(n=600, seed=9)
    frame.loc[[5, 17], "y"] = None
    folder = _write_parquet(frame, tmp_path / "data", n_files=1)
    out = tmp_path / "model"
    args = ["--target", "y", "--out", str(out), "--max-epochs", "3", "--drop-missing-target"]
    assert main(["train", str(folder), *args, "--lr", "auto", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dropped_target_rows"] == 2 and summary["rows"] == 598
    model = steadyclf.load(out)
    assert model.history_[0]["lr_finder"] == model.lr_ and 1e-5 < model.lr_ < 1


def test_cli_streaming_refusals_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _write_parquet(_mixed_frame(n=100), tmp_path / "data", n_files=1)
    out = tmp_path / "model"
    assert (
        main(["train", str(folder), "--target", "y", "--out", str(out), "--memory-budget", "lots"])
        == 2
    )
    err = capsys.readouterr().err
    assert "memory size 'lots'" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_bad_file_in_a_directory_is_named_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A value a CSV column's type refuses in a later file: the column, the value and its
    # row in that file (it said "near row -1" and column "#0"); a corrupt Parquet page: the
    # file, in one line (a traceback); predict blamed its output ("cannot write").
    rng = np.random.default_rng(0)
    csvs, parquets = tmp_path / "csv", tmp_path / "parquet"
    csvs.mkdir(), parquets.mkdir()
    for i in range(3):
        part = pd.DataFrame({"age": rng.normal(50, 10, 500).round(1), "y": np.arange(500) % 2})
        part.to_csv(csvs / f"part-{i}.csv", index=False)
        part.to_parquet(parquets / f"part-{i}.parquet", index=False)
    lines = (csvs / "part-2.csv").read_text().splitlines()
    lines[301] = "oops," + lines[301].split(",", 1)[1]  # data row 300
    (csvs / "part-2.csv").write_text("\n".join(lines) + "\n")
    whole = (parquets / "part-1.parquet").read_bytes()
    page = pq.ParquetFile(parquets / "part-1.parquet").metadata.row_group(0).column(0)
    start = page.data_page_offset
    broken = whole[:start] + b"\xff" * 40 + whole[start + 40 :]
    (parquets / "part-2.parquet").write_bytes(broken)
    args = ["--target", "y", "--max-epochs", "1", "--hidden", "4", "--n-members", "1"]
    out = tmp_path / "model"
    assert main(["train", str(csvs), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"column 'age' of {str(csvs / 'part-2.csv')!r} holds 'oops' at row 300 " in err
    assert not out.exists()
    assert main(["train", str(parquets), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot read {str(parquets / 'part-2.parquet')!r}" in err
    assert not out.exists()
    assert main(["train", str(parquets / "part-0.parquet"), "--out", str(out), *args]) == 0
    capsys.readouterr()
    predictions = tmp_path / "p.csv"
    assert main(["predict", str(out), str(parquets), "--out", str(predictions)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot read {str(parquets / 'part-2.parquet')!r}" in err
    assert "cannot write" not in err and not predictions.exists()


def test_parquet_files_holding_a_pandas_index_are_read_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # df[mask].to_parquet(path) stores the index as a column ('__index_level_0__'): read at
    # once it is the frame's index; read in passes it failed with a KeyError traceback.
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=900), "b": rng.normal(size=900)})
    frame["y"] = (frame["a"] > 0).astype(int)
    kept = frame[frame["b"] > -1]
    folder = tmp_path / "data"
    folder.mkdir()
    kept.iloc[:300].to_parquet(folder / "part-0.parquet")  # with its index
    kept.iloc[300:].to_parquet(folder / "part-1.parquet", index=False)
    assert "__index_level_0__" in pq.read_schema(folder / "part-0.parquet").names
    args = ["--target", "y", "--max-epochs", "2", "--hidden", "4", "--json"]
    assert main(["train", str(folder), "--out", str(tmp_path / "m"), *args]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == len(kept)
    assert [c.name for c in steadyclf.load(tmp_path / "m").encoder_.columns_] == ["a", "b"]
    out = tmp_path / "p.csv"
    assert main(["predict", str(tmp_path / "m"), str(folder), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == len(kept)

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steadyclf import DataError
from steadyclf.io.tables import read_table, table_format, write_table


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({"x": [1.5, np.nan, 3.0], "c": ["a", None, "b"], "y": ["yes", "no", "yes"]})


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "t.tsv", "t.parquet"])
def test_write_then_read_round_trip(tmp_path: Path, table: pd.DataFrame, name: str) -> None:
    path = write_table(table, tmp_path / name)
    back = read_table(path)
    assert list(back.columns) == ["x", "c", "y"]
    np.testing.assert_array_equal(back["x"].to_numpy(), table["x"].to_numpy())
    assert back["c"].isna().tolist() == [False, True, False]
    assert back["y"].tolist() == ["yes", "no", "yes"]
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_gzip_is_really_compressed(tmp_path: Path, table: pd.DataFrame) -> None:
    path = write_table(table, tmp_path / "t.csv.gz")
    with gzip.open(path, "rt") as fh:
        assert fh.readline().strip() == "x,c,y"


def test_dataframe_passes_through(table: pd.DataFrame) -> None:
    assert read_table(table) is table
    with pytest.raises(DataError, match="the DataFrame has a header but no data rows"):
        read_table(table.iloc[:0])


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("none.csv", None, r"no such file: '.*none.csv'"),
        ("empty.csv", "", r"file '.*empty.csv' is empty"),
        ("blank.csv", "\n\n", r"file '.*blank.csv' is empty"),
        ("header.csv", "a,b\n", r"file '.*header.csv' has a header but no data rows"),
        ("dup.csv", "a,b,a\n1,2,3\n", r"duplicate column name 'a' in file '.*dup.csv'"),
        ("ragged.csv", "a,b\n1,2\n1,2,3\n", r"cannot parse file '.*ragged.csv': Error tokenizing"),
        (
            "data.xlsx",
            "a,b\n1,2\n",
            r"unknown file type '.xlsx' for '.*data.xlsx'; use one of .csv",
        ),
        ("noext", "a,b\n1,2\n", r"unknown file type '\(none\)'"),
        ("bad.parquet", "not parquet", r"cannot read file '.*bad.parquet' as Parquet"),
        ("bad.csv.gz", "not gzip", r"cannot read file '.*bad.csv.gz' as text"),
    ],
)
def test_bad_files_are_one_line_errors(
    tmp_path: Path, name: str, content: str | None, match: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=match) as info:
        read_table(path)
    assert "\n" not in str(info.value)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "d.csv"
    folder.mkdir()
    with pytest.raises(DataError, match="is a directory"):
        read_table(folder)


def test_parquet_with_duplicate_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "dup.parquet"
    pq.write_table(pa.table([pa.array([1]), pa.array([2])], names=["a", "a"]), path)
    with pytest.raises(DataError, match="duplicate column name 'a'"):
        read_table(path)


def test_first_column_is_never_the_index(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    assert read_table(path)["a"].tolist() == [1, 3]


def test_write_refuses_unknown_type_before_writing(tmp_path: Path, table: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"unknown file type '\.json'"):
        write_table(table, tmp_path / "out.json")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing(tmp_path: Path, table: pd.DataFrame) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    bad = table.assign(x=[object(), object(), object()])  # pyarrow cannot write these
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises
        write_table(bad, tmp_path / "out.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    assert target.read_text() == "old\n"


def test_table_format() -> None:
    assert table_format("A.CSV.GZ") == "csv"
    assert table_format("x.tsv") == "tsv"
    assert table_format("dir.v2/x.pq") == "parquet"


def test_csv_blocks_are_joined_into_batches_of_the_rows_asked_for(tmp_path: Path) -> None:
    """A CSV block holds bytes, not rows: a wide file gives blocks of a few rows, which
    are joined (in order, whole) into batches of at least ``batch_rows``."""
    from steadyclf.io.files import DataSource

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(1000, 40)), columns=[f"c{j}" for j in range(40)])
    frame["t"] = rng.choice(["a", "b"], len(frame))
    path = tmp_path / "wide.csv"
    frame.to_csv(path, index=False)
    source = DataSource.open(path, csv_block_size=1 << 14)  # 16 kB: about 20 rows a block
    assert source.count_rows() == [1000]
    blocks = [len(f) for _, f in source.batches(["c0", "t"], batch_rows=1)]
    assert len(blocks) > 20  # the file's own blocks, as they come
    got = list(source.batches(list(frame.columns), batch_rows=300))
    sizes = [len(f) for _, f in got]
    assert all(s >= 300 for s in sizes[:-1]) and sum(sizes) == 1000 and len(sizes) <= 4
    assert [start for start, _ in got] == list(np.cumsum([0, *sizes[:-1]]))
    read = pd.concat([f for _, f in got], ignore_index=True)
    np.testing.assert_allclose(read[frame.columns[:40]].to_numpy(), frame.iloc[:, :40], rtol=1e-15)
    assert read["t"].tolist() == frame["t"].tolist()

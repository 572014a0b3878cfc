"""A query that only reads, secrets never printed, one-line errors and no files left behind.

The fixtures are :mod:`test_sql`'s: a throwaway PostgreSQL server, the same rows as a CSV
file, a DuckDB file and a PostgreSQL table, and a model trained on the CSV file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

duckdb = pytest.importorskip("duckdb", reason="the sql extra: pip install 'steadyclf[sql]'")
adbc = pytest.importorskip("adbc_driver_postgresql.dbapi", reason="the sql extra")

from postgres_server import PASSWORD, Cluster, postgres  # noqa: E402
from test_sql import CLI_FIT, data, model  # noqa: E402

from steadyclf.cli import main  # noqa: E402

__all__ = ["data", "model", "postgres"]  # the fixtures, imported for the tests below


def _one_line_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run the CLI, which must fail with exit status 2 and one line on stderr."""
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert PASSWORD not in captured.out + captured.err
    return err


def _pg_execute(pg: Cluster, *statements: str) -> None:
    with adbc.connect(pg.uri()) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
        conn.commit()


def _pg_count(pg: Cluster, table: str) -> int:
    with adbc.connect(pg.uri()) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        row = cur.fetchone()
    assert row is not None
    return int(row[0])


# -- 1. --query only reads -----------------------------------------------------------------
WRITING_DUCKDB = [
    "DROP TABLE rows",
    "SELECT * FROM rows; DROP TABLE rows",
    "DELETE FROM rows RETURNING *",
    "CREATE TABLE more AS SELECT * FROM rows",
    # DuckDB's parser calls it a SELECT: the read-only transaction refuses it.
    "WITH d AS (DELETE FROM rows RETURNING *) SELECT * FROM d",
]


@pytest.mark.parametrize("query", WRITING_DUCKDB)
def test_a_query_that_writes_to_duckdb_is_refused_and_changes_nothing(
    data: dict[str, Any],
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    query: str,
) -> None:
    # Predictions into the file the rows come from: the one case the file is opened for
    # writing (it dropped the table, then failed to read its rows).
    duck = tmp_path / "copy.duckdb"
    shutil.copy(data["folder"] / "rows.duckdb", duck)
    run = ["predict", str(model), str(duck), "--query", query, "--out", f"{duck}::x"]
    err = _one_line_error(capsys, run)
    assert "must only read rows" in err or "must be one statement" in err or "read-only" in err
    with duckdb.connect(str(duck), read_only=True) as con:
        tables = con.sql("SELECT table_name FROM information_schema.tables").fetchall()
        assert tables == [("rows",)]
        assert con.sql("SELECT count(*) FROM rows").fetchall() == [(len(data["frame"]),)]
    # An in-memory DuckDB can still reach files: a COPY or ATTACH never runs.
    for statement in (f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'", f"ATTACH '{duck}' AS d"):
        train = ["train", "duckdb:", "--query", statement, "--target", "y", "--out", "m"]
        assert "must only read rows" in _one_line_error(capsys, train)
    assert not (tmp_path / "x.csv").exists()


def test_a_query_that_writes_to_postgres_is_refused_and_changes_nothing(
    data: dict[str, Any], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pg = data["pg"]
    _pg_execute(
        pg,
        "DROP TABLE IF EXISTS victims",
        "CREATE TABLE victims AS SELECT * FROM rows",
        "CREATE OR REPLACE FUNCTION steadyclf_wipe() RETURNS int LANGUAGE sql AS "
        "'DELETE FROM victims; SELECT 1'",
        "CREATE SEQUENCE IF NOT EXISTS steadyclf_seq",
    )
    n = len(data["frame"])
    queries = [
        "DELETE FROM victims RETURNING *",
        "TRUNCATE victims",
        "SELECT * FROM victims; DELETE FROM victims",
        # Writes the parser takes for a SELECT: the server's read-only transaction refuses.
        "WITH d AS (DELETE FROM victims RETURNING *) SELECT * FROM d ORDER BY id",
        "SELECT *, steadyclf_wipe() AS w FROM victims ORDER BY id",
        "SELECT *, nextval('steadyclf_seq') AS s FROM victims ORDER BY id",
        # PostgreSQL's own syntax (DuckDB's parser fails): one statement, read-only.
        "SELECT * FROM ONLY victims; DELETE FROM victims",
        "SELECT *, set_config('transaction_read_only', 'off', true) AS s FROM victims",
    ]
    for query in queries:
        for command in ("train", "predict"):
            if command == "train":
                args = ["train", pg.uri(), "--target", "y", *CLI_FIT]
                args += ["--out", str(tmp_path / "m")]
            else:
                args = ["predict", str(model), pg.uri(), "--out", str(tmp_path / "p.csv")]
            _one_line_error(capsys, [*args, "--query", query])
            assert not (tmp_path / "m").exists() and not (tmp_path / "p.csv").exists()
            assert _pg_count(pg, "victims") == n, (command, query)
    with adbc.connect(pg.uri()) as conn, conn.cursor() as cur:
        cur.execute("SELECT last_value, is_called FROM steadyclf_seq")
        assert cur.fetchone() == (1, False)  # nextval never ran
    # A read in PostgreSQL's own syntax still runs.
    out = tmp_path / "p.csv"
    query = "SELECT * FROM ONLY victims ORDER BY id"
    assert main(["predict", str(model), pg.uri(), "--query", query, "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == n + 1


# -- 2. a password is never printed --------------------------------------------------------
def test_a_password_in_a_uri_is_never_printed(
    data: dict[str, Any], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pg = data["pg"]
    in_query = pg.uri(password=False) + f"?password={PASSWORD}&sslmode=disable"
    for uri in (pg.uri(), in_query):
        m, out = str(model), str(tmp_path / "p.csv")
        wants_query = {
            "train": ["train", uri, "--target", "y", "--out", str(tmp_path / "m")],
            "predict": ["predict", m, uri, "--out", out],
        }
        for args in wants_query.values():
            err = _one_line_error(capsys, args)
            assert "is a database: give the rows to" in err and "--query" in err
        reads_one_file = {
            "doctor": ["doctor", uri, "--target", "y"],
            "lr-find": ["lr-find", uri, "--target", "y"],
            "evaluate": ["evaluate", m, uri],
            "explain": ["explain", m, uri],
            "report": ["report", m, uri, "--out", str(tmp_path / "r.html")],
        }
        for command, args in reads_one_file.items():
            err = _one_line_error(capsys, args)
            # It said "unknown file type '(none)' for 'postgresql:/steadyclf:<password>@...'".
            assert "://" in err and "unknown file type" not in err, command
            assert "databases are for train and predict" in err or (
                "databases (with --query) are for train and predict" in err
            ), command
        # An output table without a table name, a URI that is no database.
        err = _one_line_error(
            capsys, ["predict", m, str(data["folder"] / "rows.csv"), "--out", uri]
        )
        assert "name the database and the table" in err
    other = f"mysql://steadyclf:{PASSWORD}@127.0.0.1/db"
    for args in (
        ["predict", str(model), f"{other}/rows.csv", "--out", str(tmp_path / "p.csv")],
        ["predict", str(model), f"{other}/*.parquet", "--out", str(tmp_path / "p.csv")],
        ["evaluate", str(model), f"{other}/rows.csv"],
        ["train", f"{other}/rows.csv", "--target", "y", "--out", str(tmp_path / "m")],
        ["train", other, "--query", "SELECT 1", "--target", "y", "--out", str(tmp_path / "m")],
        ["predict", str(model), str(data["folder"] / "rows.csv"), "--out", f"{other}/p.csv"],
    ):
        assert "mysql://steadyclf:***@127.0.0.1/db" in _one_line_error(capsys, args)
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "m").exists()


# -- 3. a query failing part way -----------------------------------------------------------
def test_a_query_failing_part_way_is_one_line_naming_the_database(
    data: dict[str, Any], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    columns = "{i} AS id, {x} AS x, {i} % 20 AS count, 'red' AS colour, 'yes' AS y"
    # Rows stream in before row 1,400 divides by zero (no ORDER BY: nothing to sort first).
    pg_rows = columns.format(i="i", x="100 / (i - 1400)")
    pg_query = f"SELECT {pg_rows} FROM generate_series(1, 3000) AS i"
    duck_rows = columns.format(i="i", x="CASE WHEN i = 2500 THEN error('bad row') ELSE i END")
    duck_query = f"SELECT {duck_rows} FROM range(3000) AS t(i)"
    pg = data["pg"]
    for database, query, message in (
        (pg.uri(), pg_query, "division by zero"),
        ("duckdb:", duck_query, "bad row"),
    ):
        named = "postgresql://steadyclf:***@" if database != "duckdb:" else "an in-memory DuckDB"
        small = ["--memory-budget", "1MB"]  # in passes of small batches too
        for extra in ([], small):
            out = tmp_path / "p.csv"
            args = ["predict", str(model), database, "--query", query, "--out", str(out)]
            err = _one_line_error(capsys, [*args, *extra])
            # It said "cannot write 'p.csv': [libpq] ... division by zero".
            assert f"reading the query's rows on {named}" in err and message in err, err
            assert "cannot write" not in err and not out.exists()
            args = ["train", database, "--query", query, "--target", "y", *CLI_FIT]
            args += ["--out", str(tmp_path / "m")]  # a traceback ending in OSError
            err = _one_line_error(capsys, [*args, *extra])
            assert f"reading the query's rows on {named}" in err and message in err, err
            assert not (tmp_path / "m").exists()


# -- 4. no empty database file left behind -------------------------------------------------
def test_a_failed_predict_into_a_new_duckdb_file_leaves_no_file(
    data: dict[str, Any], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = str(data["folder"] / "rows.csv")
    new = tmp_path / "new.duckdb"
    # Predictions into the file the rows come from, which does not exist (it was opened
    # for writing, created empty, and the query failed: no table).
    query = ["--query", "SELECT * FROM rows"]
    err = _one_line_error(capsys, ["predict", str(model), str(new), *query, "--out", f"{new}::s"])
    assert err.endswith("new.duckdb' does not exist") and not new.exists()
    # Refused once the table is open (an unknown --id), or part way (an infinite value at
    # row 4,000, after batches of 1,024 rows were written in the transaction).
    _one_line_error(capsys, ["predict", str(model), rows, "--id", "nope", "--out", f"{new}::s"])
    assert list(tmp_path.iterdir()) == []  # it left new.duckdb, 12 KB, no tables
    failing = (
        "SELECT i AS id, CASE WHEN i = 4000 THEN 'inf'::DOUBLE ELSE i END AS x, "
        "i % 20 AS count, 'red' AS colour FROM range(5000) AS t(i)"
    )
    args = ["predict", str(model), "duckdb:", "--query", failing, "--id", "id"]
    _one_line_error(capsys, [*args, "--memory-budget", "1MB", "--out", f"{new}::s"])
    assert list(tmp_path.iterdir()) == []
    # A file that was there is left with what it held; a run that succeeds keeps its file.
    with duckdb.connect(str(new)) as con:
        con.execute("CREATE TABLE old AS SELECT 1 AS a")
    _one_line_error(capsys, ["predict", str(model), rows, "--id", "nope", "--out", f"{new}::s"])
    with duckdb.connect(str(new), read_only=True) as con:
        assert con.sql("SELECT * FROM old").fetchall() == [(1,)]
        assert con.sql("SELECT table_name FROM information_schema.tables").fetchall() == [("old",)]
    fresh = tmp_path / "fresh.duckdb"
    assert main(["predict", str(model), rows, "--quiet", "--out", f"{fresh}::s"]) == 0
    with duckdb.connect(str(fresh), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM s").fetchall() == [(len(data["frame"]),)]


# -- 5. a data file given with --query; a failed write names its database once --------------
def test_a_data_file_with_a_query_says_it_is_not_a_database(
    data: dict[str, Any], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = str(data["folder"] / "rows.csv")
    query = ["--query", "SELECT * FROM rows"]
    for args in (
        ["train", rows, *query, "--target", "y", "--out", str(tmp_path / "m")],
        ["predict", str(model), rows, *query, "--out", str(tmp_path / "p.csv")],
    ):
        err = _one_line_error(capsys, args)
        # It said "Catalog Error: Cannot launch in-memory database in read-only mode!".
        assert "--query needs a database" in err and f"{rows!r} is not one" in err
    # A DuckDB file is one whatever its name (its header says so).
    renamed = tmp_path / "rows.db"
    shutil.copy(data["folder"] / "rows.duckdb", renamed)
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(renamed), *query, "--out", str(out), "--quiet"]) == 0
    assert len(out.read_text().splitlines()) == len(data["frame"]) + 1


def test_a_failed_write_names_the_table_and_its_database_once(
    data: dict[str, Any], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pg, rows = data["pg"], str(data["folder"] / "rows.csv")
    refusing = "(probability double precision CHECK (probability < 0), label text)"
    _pg_execute(pg, "DROP TABLE IF EXISTS refusing", f"CREATE TABLE refusing {refusing}")
    duck = tmp_path / "out.duckdb"
    with duckdb.connect(str(duck)) as con:
        con.execute(
            "CREATE TABLE refusing (probability DOUBLE CHECK (probability < 0), label TEXT)"
        )
    for out, database in (
        (pg.uri("postgres/refusing"), "postgresql://steadyclf:***@"),
        (f"{duck}::refusing", f"DuckDB {str(duck)!r}"),
    ):
        err = _one_line_error(capsys, ["predict", str(model), rows, "--out", out])
        # It said "writing table 'x' of DuckDB 'data.duckdb' on DuckDB 'data.duckdb' failed".
        assert f"writing table 'refusing' of {database}" in err and "check" in err.lower(), err
        assert err.count(database) == 1, err

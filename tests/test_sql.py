"""Training from and predicting into SQL databases: DuckDB in-process, a real PostgreSQL.

The PostgreSQL server is a throwaway cluster started for the session
(:mod:`postgres_server`); everything else runs in this process, through the CLI's
``main`` as a user would call it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

duckdb = pytest.importorskip("duckdb", reason="the sql extra: pip install 'steadyclf[sql]'")
adbc = pytest.importorskip("adbc_driver_postgresql.dbapi", reason="the sql extra")

from postgres_server import PASSWORD, Cluster, postgres  # noqa: E402
from test_checkpoint import StopAt  # noqa: E402

from steadyclf import BinaryClassifier, DataError, load  # noqa: E402
from steadyclf.cli import main  # noqa: E402
from steadyclf.io.sql import SqlSource, parse_table_target, redact  # noqa: E402
from steadyclf.train.checkpoint import Checkpoint  # noqa: E402

__all__ = ["postgres"]  # the session fixture, imported for the tests below

#: Small and quick: one network (a batch size: no cross-fitting), a few epochs.
FIT = dict(max_epochs=4, batch_size=32, hidden=(16,), random_state=0)
CLI_FIT = ["--max-epochs", "4", "--batch-size", "32", "--hidden", "16", "--random-state", "0"]
#: Predictions of the same network on the same rows read through two paths: the inputs
#: are the same float64 numbers (no parsing difference), so they agree to rounding;
#: 1e-6 is the issue's bound and far above float64 rounding of a 2-layer network.
TOL = 1e-6


def _frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Numbers, integers, a text column with missing values and a text target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], n).astype(object)
    colour[rng.random(n) < 0.1] = None
    y = np.where(x + (colour == "red") + 0.5 * rng.normal(size=n) > 0.3, "yes", "no")
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "x": x,
            "count": rng.integers(0, 20, n),
            "colour": colour,
            "y": y,
        }
    )


def _pg_load(cluster: Cluster, table: str, frame: pd.DataFrame) -> None:
    with adbc.connect(cluster.uri()) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.adbc_ingest(table, pa.Table.from_pandas(frame, preserve_index=False), mode="create")
        conn.commit()


def _pg_rows(cluster: Cluster, query: str) -> pd.DataFrame:
    with adbc.connect(cluster.uri()) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetch_arrow_table().to_pandas()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, postgres: Cluster) -> dict[str, Any]:
    """The same rows as a CSV file, a DuckDB table and a PostgreSQL table."""
    folder = tmp_path_factory.mktemp("sql")
    frame = _frame()
    frame.to_csv(folder / "rows.csv", index=False)
    frame.to_parquet(folder / "rows.parquet", index=False)
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    with duckdb.connect(str(folder / "rows.duckdb")) as con:
        con.register("arrow_rows", arrow)
        con.execute("CREATE TABLE rows AS SELECT * FROM arrow_rows")
    _pg_load(postgres, "rows", frame)
    return {"folder": folder, "frame": frame, "pg": postgres}


@pytest.fixture(scope="module")
def model(data: dict[str, Any]) -> Path:
    """A model trained on the CSV file, for the prediction tests."""
    path = data["folder"] / "model"
    _train(str(data["folder"] / "rows.csv"), "--out", str(path))
    return path


def _model_json(model: Path) -> dict[str, Any]:
    return json.loads((model / "model.json").read_text())


def _train(*args: str) -> None:
    assert main(["train", *args, "--target", "y", *CLI_FIT, "--quiet"]) == 0


def test_csv_duckdb_and_postgres_train_the_same_model(data: dict[str, Any]) -> None:
    folder, pg = data["folder"], data["pg"]
    query = "SELECT * FROM rows ORDER BY id"
    _train(str(folder / "rows.csv"), "--out", str(folder / "m_csv"))
    _train(str(folder / "rows.duckdb"), "--query", query, "--out", str(folder / "m_duck"))
    # PostgreSQL streamed in passes within a small budget: the streamed path on the same rows.
    stream = ["--stream", "--memory-budget", "200kB"]
    _train(pg.uri(), "--query", query, *stream, "--out", str(folder / "m_pg"))
    # A query over files with no database file: DuckDB in memory. (Parquet: DuckDB's
    # CSV reader would type the yes/no target as booleans.)
    files = f"SELECT * FROM '{folder / 'rows.parquet'}' ORDER BY id"
    _train("duckdb:", "--query", files, "--out", str(folder / "m_files"))

    models = {name: _model_json(folder / name) for name in ("m_csv", "m_duck", "m_pg")}
    for part in ("schema", "architecture", "classes"):  # the columns' plan and the network
        assert models["m_csv"][part] == models["m_duck"][part] == models["m_pg"][part], part
    plans = [m["training"]["plan"] for m in models.values()]
    assert plans[0] == plans[1] == plans[2]
    index = _model_json(folder / "m_pg")
    # The password never reaches the model's metadata.
    assert PASSWORD not in json.dumps(index) and "***" in index["metadata"]["data"]
    assert index["metadata"]["reading"]["streamed"] is True

    out = {}
    for name in ("m_csv", "m_duck", "m_pg", "m_files"):
        path = folder / f"{name}.csv"
        assert (
            main(
                [
                    "predict",
                    str(folder / name),
                    str(folder / "rows.csv"),
                    "--out",
                    str(path),
                    "--quiet",
                ]
            )
            == 0
        )
        out[name] = pd.read_csv(path)
    for name in ("m_duck", "m_pg", "m_files"):
        np.testing.assert_allclose(
            out[name]["probability"], out["m_csv"]["probability"], rtol=0, atol=TOL
        )
        assert (out[name]["label"] == out["m_csv"]["label"]).all()


def test_predictions_written_into_postgres_and_duckdb_tables(
    data: dict[str, Any], model: Path
) -> None:
    folder, pg = data["folder"], data["pg"]
    csv_out = folder / "p.csv"
    assert (
        main(["predict", str(model), str(folder / "rows.csv"), "--id", "id", "--out", str(csv_out)])
        == 0
    )
    expected = pd.read_csv(csv_out)
    query = ["--query", "SELECT * FROM rows ORDER BY id", "--id", "id", "--quiet"]

    pg_out = pg.uri("postgres/scores")
    assert main(["predict", str(model), pg.uri(), *query, "--out", pg_out]) == 0
    got = _pg_rows(pg, "SELECT * FROM scores ORDER BY id")
    assert list(got.columns) == ["id", "probability", "label"]
    np.testing.assert_allclose(got["probability"], expected["probability"], rtol=0, atol=1e-12)
    assert got["label"].tolist() == expected["label"].tolist()
    assert got["id"].tolist() == expected["id"].tolist()
    # A second run appends after the schema check, in one more transaction.
    assert main(["predict", str(model), pg.uri(), *query, "--out", pg_out]) == 0
    assert len(_pg_rows(pg, "SELECT id FROM scores")) == 2 * len(expected)

    # DuckDB: the output table in the very file the rows come from.
    duck = folder / "rows.duckdb"
    assert main(["predict", str(model), str(duck), *query, "--out", f"{duck}::scores"]) == 0
    with duckdb.connect(str(duck), read_only=True) as con:
        got = con.sql("SELECT * FROM scores ORDER BY id").to_arrow_table().to_pandas()
        types = dict(con.sql("DESCRIBE scores").fetchall()[i][:2] for i in range(3))
    np.testing.assert_allclose(got["probability"], expected["probability"], rtol=0, atol=1e-12)
    assert got["label"].tolist() == expected["label"].tolist()
    assert types == {"id": "BIGINT", "probability": "DOUBLE", "label": "VARCHAR"}


def test_append_to_a_table_of_other_columns_is_refused_before_any_work(
    data: dict[str, Any], model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pg = data["pg"]
    with adbc.connect(pg.uri()) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE other (a int, b text)")
        cur.execute("INSERT INTO other VALUES (1, 'kept')")
        conn.commit()
    query = ["--query", "SELECT * FROM rows ORDER BY id"]
    assert main(["predict", str(model), pg.uri(), *query, "--out", pg.uri("postgres/other")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot append to table 'other'" in err and len(err.splitlines()) == 1
    assert PASSWORD not in err
    assert _pg_rows(pg, "SELECT * FROM other").to_dict("list") == {"a": [1], "b": ["kept"]}


def _copy_running(pg: Cluster) -> bool:
    """Whether another session is inside ``COPY ... FROM STDIN`` (ADBC's bulk ingest; its
    reads, this one's too, are ``COPY (...) TO STDOUT``)."""
    query = (
        "SELECT 1 FROM pg_stat_activity WHERE state = 'active' "
        "AND query ILIKE 'COPY %FROM STDIN%' AND pid <> pg_backend_pid()"
    )
    return len(_pg_rows(pg, query)) > 0


@pytest.mark.parametrize("old", [False, True], ids=["new-table", "append"])
def test_predict_killed_mid_way_leaves_no_table_or_the_old_one(
    data: dict[str, Any], model: Path, old: bool
) -> None:
    folder, pg = data["folder"], data["pg"]
    table = f"killed_{int(old)}"
    if old:
        with adbc.connect(pg.uri()) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {table} (probability double precision, label text)")
            cur.execute(f"INSERT INTO {table} VALUES (0.5, 'old')")
            conn.commit()
    # Many rows in small batches: the process is still writing when it is killed.
    rows = (
        "SELECT i AS id, random() AS x, (i % 20) AS count, 'red' AS colour "
        "FROM generate_series(1, 1000000) AS i"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PGPASSWORD": PASSWORD}
    # The child stops after its first batch is written, in the open transaction (the sink
    # never autocommits), and says so: the kill then always lands mid-way. Polling for a
    # running COPY instead missed a fast run on a loaded machine (it finished first).
    mark = folder / f"{table}.written"
    code = (
        "import sys, time, pathlib; from steadyclf.io import sql; write = sql.TableSink.write\n"
        "mark = pathlib.Path(sys.argv.pop(1))\n"
        "def paused(self, frame):\n"
        "    write(self, frame); mark.touch(); time.sleep(600)\n"
        "sql.TableSink.write = paused\n"
        "from steadyclf.cli import main; sys.exit(main())"
    )
    args = [str(model), pg.uri(password=False), "--query", rows, "--memory-budget", "64MB"]
    out = pg.uri("postgres/" + table, password=False)
    log = folder / f"{table}.log"
    with log.open("w") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(mark), "predict", *args, "--out", out],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 120
        while not mark.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the prediction never wrote a batch"
            time.sleep(0.05)
        assert proc.poll() is None, "finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # The server ends the dead session and drops its transaction.
    deadline = time.monotonic() + 30
    while _copy_running(pg) and time.monotonic() < deadline:
        time.sleep(0.05)
    found = _pg_rows(pg, f"SELECT count(*) AS n FROM pg_tables WHERE tablename = '{table}'")
    if old:
        assert _pg_rows(pg, f"SELECT * FROM {table}").to_dict("list") == {
            "probability": [0.5],
            "label": ["old"],
        }
    else:
        assert found["n"].tolist() == [0]


def test_duckdb_predict_failing_mid_way_leaves_no_table_or_the_old_one(
    data: dict[str, Any], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    duck = tmp_path / "out.duckdb"
    with duckdb.connect(str(duck)) as con:
        con.execute("CREATE TABLE old AS SELECT 7::BIGINT AS id, 0.5 AS probability, 'no' AS label")
    # Batches of 1,024 rows (a tiny budget): three are written before row 4,000 fails.
    rows = (
        "SELECT i AS id, CASE WHEN i = 4000 THEN 'inf'::DOUBLE ELSE random() END AS x, "
        "i % 20 AS count, 'red' AS colour FROM range(5000) AS t(i)"
    )
    run = ["predict", str(model), "duckdb:", "--query", rows, "--id", "id"]
    run += ["--memory-budget", "1MB", "--quiet"]
    for table in ("old", "new"):
        assert main([*run, "--out", f"{duck}::{table}"]) == 2
        assert "infinite value at row 4000" in capsys.readouterr().err
    with duckdb.connect(str(duck), read_only=True) as con:
        assert con.sql("SELECT * FROM old").fetchall() == [(7, 0.5, "no")]
        assert con.sql("SELECT table_name FROM information_schema.tables").fetchall() == [("old",)]


def _errors(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["train", *args, "--target", "y", "--out", "/nonexistent/never"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_bad_input_gets_one_line_errors(
    data: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, pg = data["folder"], data["pg"]
    duck = str(folder / "rows.duckdb")
    # A server that is not there, with a password in the URI: never printed.
    unreachable = f"postgresql://steadyclf:{PASSWORD}@127.0.0.1:1/postgres"
    err = _errors(capsys, unreachable, "--query", "SELECT 1")
    assert "cannot connect to postgresql://steadyclf:***@127.0.0.1:1/postgres" in err
    assert PASSWORD not in err
    # The wrong password on the real server.
    wrong = pg.uri().replace(PASSWORD, "not-" + PASSWORD)
    err = _errors(capsys, wrong, "--query", "SELECT 1")
    assert "password authentication failed" in err and PASSWORD not in err
    # A failing query, on both kinds of database.
    assert 'relation "nope" does not exist' in _errors(
        capsys, pg.uri(), "--query", "SELECT * FROM nope"
    )
    assert "nope does not exist" in _errors(capsys, duck, "--query", "SELECT * FROM nope")
    # Unsupported column types.
    err = _errors(capsys, pg.uri(), "--query", "SELECT ARRAY[1, 2] AS a, y FROM rows")
    assert "'a' (list<item: int32>)" in err and "cast them in the query" in err
    err = _errors(capsys, duck, "--query", "SELECT '\\x00'::BLOB AS b, y FROM rows")
    assert "'b' (binary)" in err
    # No rows, a missing target, a database without a query.
    assert "returns no rows" in _errors(
        capsys, pg.uri(), "--query", "SELECT * FROM rows WHERE false"
    )
    err = _errors(capsys, duck, "--query", "SELECT x, colour FROM rows")
    assert "target column 'y' is not in the data" in err
    assert "give the rows to train on with --query" in _errors(capsys, duck)


def test_predict_on_a_database_without_a_query_says_so(
    model: Path, data: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    duck = str(data["folder"] / "rows.duckdb")
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), duck, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("is a database: give the rows to predict with --query 'SELECT ...'")
    assert len(err.splitlines()) == 1 and not out.exists()  # it said "unknown file type"


def test_numeric_decimal_and_null_columns_read_as_numbers(postgres: Cluster) -> None:
    query = (
        "SELECT i, (i * 0.25)::numeric(10, 2) AS price, NULL::int AS empty, i::text AS code "
        "FROM generate_series(1, 5) AS i ORDER BY i"
    )
    source = SqlSource.open(postgres.uri(), query)
    assert source.kinds == {"i": "int", "price": "float", "empty": "int", "code": "text"}
    ((start, frame),) = list(source.batches(source.columns))
    assert start == 0 and frame["price"].tolist() == [0.25, 0.5, 0.75, 1.0, 1.25]
    con = duckdb.connect()
    # A trailing comment and semicolon: the query is wrapped for the count all the same.
    source = SqlSource.open(con, "SELECT 1.5::DECIMAL(4, 1) AS d, NULL AS n -- one row\n;")
    assert source.kinds == {"d": "float", "n": "float"} and source.untyped == {"n"}


def test_shards_split_the_rows_by_position_as_for_files(postgres: Cluster) -> None:
    query = "SELECT i FROM generate_series(0, 99) AS i ORDER BY i"
    source = SqlSource.open(postgres.uri(), query)
    seen = []
    for rank in range(3):
        shard = source.shard(rank, 3)
        for start, frame in shard.batches(["i"], batch_rows=7):
            # Global positions: the value of row i is i.
            assert frame["i"].tolist() == list(range(start, start + len(frame)))
            seen += frame["i"].tolist()
        assert shard.n_rows in (33, 34)
    assert seen == list(range(100))


def test_rows_changing_between_passes_stop_the_run(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "d.duckdb")) as con:
        con.execute("CREATE TABLE t AS SELECT range AS i FROM range(10)")
        source = SqlSource.open(con, "SELECT * FROM t ORDER BY i")
        assert sum(len(f) for _, f in source.batches(["i"])) == 10
        con.execute("INSERT INTO t VALUES (10)")
        with pytest.raises(DataError, match="returned 11 rows in this pass but 10 when counted"):
            list(source.batches(["i"]))


def test_streamed_query_resumes_to_the_uninterrupted_model(
    data: dict[str, Any], tmp_path: Path
) -> None:
    pg = data["pg"]
    query = "SELECT * FROM rows ORDER BY id"
    fit = dict(stream=True, memory_budget="200kB", context=None, query=query)
    reference = BinaryClassifier(**FIT).fit_files(pg.uri(), "y", **fit)  # type: ignore[arg-type]
    BinaryClassifier(**FIT).fit_files(  # type: ignore[arg-type]
        pg.uri(), "y", callbacks=[Checkpoint(tmp_path, every=1), StopAt(2)], **fit
    )
    resume = Checkpoint(tmp_path, every=1, resume=True)
    resumed = BinaryClassifier(**FIT).fit_files(pg.uri(), "y", callbacks=[resume], **fit)  # type: ignore[arg-type]
    assert resume.resumed_epoch == 2
    X = data["frame"].drop(columns="y")
    np.testing.assert_array_equal(resumed.predict_proba(X), reference.predict_proba(X))


def test_uri_spellings() -> None:
    assert redact("postgresql://a:b%40c@h/db") == "postgresql://a:***@h/db"
    assert redact("postgresql://h/db?password=x&sslmode=require") == (
        "postgresql://h/db?password=***&sslmode=require"
    )
    target = parse_table_target("postgresql://a@h:5/db/sch.t?sslmode=require")
    assert target is not None
    assert (target.database, target.table) == ("postgresql://a@h:5/db?sslmode=require", "sch.t")
    with pytest.raises(Exception, match="name the database and the table"):
        parse_table_target("postgresql://a@h/db")


@pytest.mark.slow
def test_torchrun_processes_read_their_share_of_a_query(
    data: dict[str, Any], tmp_path: Path
) -> None:
    """Two processes under torchrun, each reading its rows of the PostgreSQL query, end
    with the statistics one process computes from every row."""
    pg = data["pg"]
    options = ["--target", "y", "--query", "SELECT * FROM rows ORDER BY id", *CLI_FIT]
    options += ["--memory-budget", "50MB", "--quiet"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(port),
        "-m", "steadyclf", "train", pg.uri(), "--out", str(tmp_path / "ddp"), "--json", *options,
    ]  # fmt: skip
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["reading"]["processes"] == 2 and summary["rows"] == len(data["frame"])
    assert PASSWORD not in run.stdout + run.stderr
    assert main(["train", pg.uri(), "--out", str(tmp_path / "one"), "--stream", *options]) == 0
    two, one = load(tmp_path / "ddp"), load(tmp_path / "one")
    assert two.encoder_.to_dict() == one.encoder_.to_dict()
    for name in ("normalize.center", "normalize.scale"):
        np.testing.assert_allclose(  # merged from two shards: float64 rounding apart
            two.module_.encoder.get_buffer(name).numpy(),
            one.module_.encoder.get_buffer(name).numpy(),
            rtol=1e-9,
        )


def test_credentials_from_a_service_file(
    postgres: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = tmp_path / "pg_service.conf"
    service.write_text(
        f"[steadyclf]\nhost=127.0.0.1\nport={postgres.port}\nuser=steadyclf\n"
        f"password={PASSWORD}\ndbname=postgres\n"
    )
    monkeypatch.setenv("PGSERVICEFILE", str(service))
    source = SqlSource.open("postgresql:///?service=steadyclf", "SELECT 1 AS one")
    assert source.n_rows == 1 and source.name == "the query on postgresql:///?service=steadyclf"

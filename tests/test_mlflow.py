"""The MLflow flavour, tracking and serving, against a real tracking store and server.

The tracking store is a SQLite file in a temp folder (MLflow's default kind of store);
the served model is ``mlflow models serve --env-manager local`` on a free port, started
once for the module and killed at the end.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mlflow", reason="the mlflow extra: pip install 'steadyclf[mlflow]'")

import steadyclf.mlflow as smf
from steadyclf import BinaryClassifier, load
from steadyclf.cli import main

mlflow = smf.require_mlflow()  # mlflow, imported without its import-time warning
#: pyfunc and the server run the same float64 NumPy code as predict_proba on the same
#: inputs; JSON carries doubles with 17 significant digits (repr), so 1e-9 holds easily.
TOL = 1e-9
FIT = dict(max_epochs=4, batch_size=32, hidden=(16,), random_state=0, categorical=["k"])


def _frame(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {"a": rng.normal(size=n), "c": rng.choice(["x", "y", "z"], n), "k": rng.integers(0, 3, n)}
    )
    X["c"] = X["c"].astype(object)
    X.loc[::17, "c"] = None
    # An int64 numeric column and a timezone-aware one (DuckDB's TIMESTAMPTZ as pandas reads
    # it): columns the flavour's signature must let through as they are.
    X["n"] = rng.integers(18, 90, n)
    X["t"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 8760, n), "h")
    y = np.where(X["a"] + (X["c"] == "x") + 0.3 * rng.normal(size=n) > 0.3, "yes", "no")
    return X, y


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tracking store in a temp folder, for this module (and its subprocesses)."""
    folder = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mp.chdir(folder)  # artifacts of a sqlite store go to ./mlruns
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        # The default experiment of this store, as a fresh process (and the CLI's
        # subprocesses) would have: an earlier test in this process (docs/mlflow.md's
        # code, tests/test_docs.py) may have made another store's experiment active.
        mlflow.set_experiment(experiment_id="0")
        yield folder
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def logged(store: Path) -> Iterator[dict[str, Any]]:
    """One fit logged by autolog: the run, the estimator and its rows."""
    X, y = _frame()
    started = time.time()
    smf.autolog()
    try:
        with mlflow.start_run() as run:
            clf = BinaryClassifier(**FIT).fit(X, y)  # type: ignore[arg-type]
    finally:
        smf.autolog(disable=True)
    yield {"run_id": run.info.run_id, "clf": clf, "X": X, "y": y, "started": started}


def test_the_module_does_not_shadow_mlflow() -> None:
    assert "steadyclf" not in mlflow.__file__ and hasattr(mlflow, "pyfunc")
    assert smf.__name__ == "steadyclf.mlflow"


def test_autolog_records_params_plan_history_metrics_and_report(logged: dict[str, Any]) -> None:
    clf, run_id = logged["clf"], logged["run_id"]
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    params = run.data.params
    assert params["max_epochs"] == "4" and params["batch_size"] == "32"
    assert params["plan.lr"] == json.dumps(clf.plan_["lr"])
    history = client.get_metric_history(run_id, "epoch_train_loss")
    epochs = [r["epoch"] for r in clf.history_]
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == epochs
    np.testing.assert_allclose(
        [m.value for m in sorted(history, key=lambda m: m.step)],
        [r["train_loss"] for r in clf.history_],
        rtol=1e-12,
    )
    valid = clf.validation_metrics_
    assert run.data.metrics["valid_roc_auc"] == pytest.approx(valid["roc_auc"], rel=1e-12)
    assert run.data.metrics["stall_warnings"] == len(clf.warnings_)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"plan.json", "stall_warnings.json", "report.html"} <= artifacts
    plan = mlflow.artifacts.load_dict(f"runs:/{run_id}/plan.json")
    assert plan["lr"] == clf.plan_["lr"]
    report = mlflow.artifacts.load_text(f"runs:/{run_id}/report.html")
    assert report.lstrip().lower().startswith("<!doctype html")


def test_validation_metrics_and_epoch_curves_have_their_own_keys(logged: dict[str, Any]) -> None:
    clf, run_id = logged["clf"], logged["run_id"]
    client = mlflow.MlflowClient()
    # The model's validation accuracy: one value, not the last point of the epoch curve.
    final = client.get_metric_history(run_id, "valid_accuracy")
    assert [m.step for m in final] == [0]
    assert final[0].value == pytest.approx(clf.validation_metrics_["accuracy"], rel=1e-12)
    assert client.get_run(run_id).data.metrics["valid_accuracy"] == final[0].value
    curve = sorted(client.get_metric_history(run_id, "epoch_valid_accuracy"), key=lambda m: m.step)
    assert [m.step for m in curve] == [r["epoch"] for r in clf.history_]
    np.testing.assert_allclose(
        [m.value for m in curve], [r["valid_accuracy"] for r in clf.history_], rtol=1e-12
    )
    # Clock times of this test session (ms), not 0 (1970).
    for m in (*final, *curve, *client.get_metric_history(run_id, "epoch_train_loss")):
        assert logged["started"] * 1000 - 1000 <= m.timestamp <= time.time() * 1000 + 1000


def test_logged_model_loads_and_pyfunc_predicts_predict_proba(logged: dict[str, Any]) -> None:
    clf, X = logged["clf"], logged["X"]
    uri = f"runs:/{logged['run_id']}/model"
    expected = clf.predict_proba(X)[:, 1]
    pyfunc = mlflow.pyfunc.load_model(uri)
    schema = pyfunc.metadata.get_input_schema()
    assert [(c.name, getattr(c.type, "name", str(c.type))) for c in schema.inputs] == [
        ("a", "Any"),
        ("c", "string"),  # a categorical of text
        ("k", "Any"),  # a categorical of numbers
        ("n", "Any"),  # int64: MLflow's double refuses int64, its long refuses floats
        ("t", "Any"),  # MLflow's datetime refuses time zones
    ]
    assert X["n"].dtype == np.int64 and str(X["t"].dt.tz) == "UTC"
    # The training rows as they are, and as other callers give them.
    np.testing.assert_allclose(pyfunc.predict(X), expected, rtol=0, atol=TOL)
    as_given = X.assign(
        k=X["k"].astype(str), n=X["n"].astype(np.float64), t=X["t"].dt.tz_localize(None)
    )
    np.testing.assert_allclose(pyfunc.predict(as_given), expected, rtol=0, atol=TOL)
    back = smf.load_model(uri)
    np.testing.assert_allclose(back.predict_proba(X)[:, 1], expected, rtol=0, atol=TOL)


def test_every_column_is_required_and_its_values_may_be_missing(logged: dict[str, Any]) -> None:
    clf, X = logged["clf"], logged["X"]
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{logged['run_id']}/model")
    assert all(c.required for c in pyfunc.metadata.get_input_schema().inputs)
    gaps = X.assign(n=X["n"].astype(np.float64))
    gaps.loc[::3, ["a", "n", "t"]] = np.nan, np.nan, pd.NaT  # a number, an int64, a time
    gaps.loc[::4, "c"] = None  # a string
    assert gaps["t"].isna().any() and str(gaps["t"].dt.tz) == "UTC"
    expected = clf.predict_proba(gaps)[:, 1]
    np.testing.assert_allclose(pyfunc.predict(gaps), expected, rtol=0, atol=TOL)
    with pytest.raises(mlflow.exceptions.MlflowException, match=r"missing inputs \['a'\]"):
        pyfunc.predict(X.drop(columns="a"))


def test_save_model_stores_the_directory_as_it_is(tmp_path: Path, logged: dict[str, Any]) -> None:
    clf = logged["clf"]
    clf.save(tmp_path / "steadyclf")
    smf.save_model(str(tmp_path / "steadyclf"), tmp_path / "mlflow")
    inside = tmp_path / "mlflow" / smf.MODEL_SUBDIR
    for name in (p.name for p in (tmp_path / "steadyclf").iterdir()):
        assert (inside / name).read_bytes() == (tmp_path / "steadyclf" / name).read_bytes()
    stored = [p.suffix for p in (tmp_path / "mlflow").rglob("*") if p.is_file()]
    assert ".pkl" not in stored and ".pickle" not in stored  # no pickle anywhere
    flavour = mlflow.models.Model.load(str(tmp_path / "mlflow" / "MLmodel")).flavors
    assert flavour["steadyclf"]["format"] == "safetensors+json"
    assert flavour["python_function"]["loader_module"] == "steadyclf.mlflow"
    with pytest.raises(Exception, match="exists and is not empty"):
        smf.save_model(clf, tmp_path / "mlflow")
    # The estimator itself, fitted on int64 and timezone-aware columns, saved and read back
    # through pyfunc: it takes its own training rows.
    smf.save_model(clf, tmp_path / "from-estimator")
    X = logged["X"]
    got = mlflow.pyfunc.load_model(str(tmp_path / "from-estimator")).predict(X)
    np.testing.assert_allclose(got, clf.predict_proba(X)[:, 1], rtol=0, atol=TOL)


def test_save_model_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    from steadyclf.exceptions import SteadyclfError

    with pytest.raises(SteadyclfError, match="does not exist"):
        smf.save_model(str(tmp_path / "no-model"), tmp_path / "new" / "mlflow")
    assert not (tmp_path / "new").exists()  # nor the folder above, made for it
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SteadyclfError):
        smf.save_model(str(tmp_path / "not-a-model"), tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []  # the empty folder given stays


def test_autolog_of_fit_files_logs_the_report_too(store: Path, tmp_path: Path) -> None:
    X, y = _frame(n=120, seed=3)
    X.assign(y=y).to_csv(tmp_path / "d.csv", index=False)
    smf.autolog(log_models=False)
    try:
        with mlflow.start_run() as run:
            clf = BinaryClassifier(**FIT).fit_files(str(tmp_path / "d.csv"), target="y")  # type: ignore[arg-type]
    finally:
        smf.autolog(disable=True)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert "report.html" in artifacts
    report = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/report.html")
    assert "the first 120 training rows" in report and clf.history_


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(logged: dict[str, Any], store: Path) -> Iterator[str]:
    """``mlflow models serve`` of the logged model, up within 180 s, killed at the end."""
    port = _free_port()
    bin_dir = os.path.dirname(sys.executable)  # uvicorn, started by the mlflow command
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m"]
    command += [f"runs:/{logged['run_id']}/model", "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    log = store / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, "the server did not answer in 180 s"
                time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _invoke(server: str, rows: pd.DataFrame) -> tuple[int, dict[str, Any]]:
    """POST ``rows`` (JSON values, None for null) as ``dataframe_split``: status, answer."""
    body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
    request = urllib.request.Request(
        f"{server}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _json_rows(X: pd.DataFrame) -> pd.DataFrame:
    """``X`` as a JSON client sends it: integers as integers, times as ISO 8601 text with
    their offset (``+00:00``), missing values as null."""
    rows = X.assign(t=X["t"].map(lambda t: None if pd.isna(t) else t.isoformat()))
    return rows.astype(object).where(X.notna(), None)


def test_served_model_answers_with_predict_proba(server: str, logged: dict[str, Any]) -> None:
    clf, X = logged["clf"], logged["X"].iloc[:40]
    rows = _json_rows(X)
    assert rows["c"].isna().any()  # a missing categorical value travels as null
    assert all(isinstance(v, int) for v in rows["n"]) and rows["t"][0].endswith("+00:00")
    status, answer = _invoke(server, rows)
    assert status == 200, answer
    expected = clf.predict_proba(X)[:, 1]
    np.testing.assert_allclose(answer["predictions"], expected, rtol=0, atol=TOL)
    # Missing numbers and times travel as null; times in UTC as '...Z' too.
    gaps = X.assign(n=X["n"].astype(np.float64), t=X["t"].astype(object))
    gaps.loc[::3, ["n", "t"]] = None
    rows = _json_rows(gaps).assign(t=lambda r: r["t"].str.replace("+00:00", "Z"))
    status, answer = _invoke(server, rows)
    assert status == 200, answer
    expected = clf.predict_proba(gaps.assign(t=pd.to_datetime(gaps["t"], utc=True)))[:, 1]
    np.testing.assert_allclose(answer["predictions"], expected, rtol=0, atol=TOL)


def test_served_model_answers_bad_values_with_the_models_message(
    server: str, logged: dict[str, Any]
) -> None:
    rows = _json_rows(logged["X"].iloc[:5])
    rows.loc[2, "t"] = "next tuesday"
    status, answer = _invoke(server, rows)
    assert status == 400
    assert "column 't' holds dates but row 2 holds 'next tuesday'" in answer["message"]
    # A request without a column the model needs: MLflow's check names it.
    status, answer = _invoke(server, _json_rows(logged["X"].iloc[:5]).drop(columns="a"))
    assert status == 400 and "missing inputs ['a']" in answer["message"]


def test_cli_train_mlflow_logs_the_run(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    duckdb = pytest.importorskip("duckdb", reason="the sql extra")
    X, y = _frame(seed=1)
    with duckdb.connect(str(tmp_path / "d.duckdb")) as con:
        con.register("rows", X.assign(y=y, id=np.arange(len(X))))
        con.execute("CREATE TABLE t AS SELECT * FROM rows")
    args = ["train", str(tmp_path / "d.duckdb"), "--query", "SELECT * FROM t ORDER BY id"]
    args += ["--target", "y", "--out", str(tmp_path / "m"), "--mlflow", "--categorical", "k"]
    args += ["--max-epochs", "3", "--batch-size", "32", "--hidden", "16"]
    assert main(args) == 0
    err = capsys.readouterr().err
    run_id = err.split("logged the run to MLflow: run ")[1].split()[0]
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["steadyclf.query"] == "SELECT * FROM t ORDER BY id"
    assert run.data.params["max_epochs"] == "3"
    saved = load(tmp_path / "m")
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run_id, "epoch_train_loss")]
    assert sorted(steps) == [r["epoch"] for r in saved.history_]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    assert "report.html" in artifacts
    model = smf.load_model(f"runs:/{run_id}/model")
    rows = X.assign(id=np.arange(len(X)))
    np.testing.assert_allclose(
        model.predict_proba(rows)[:, 1], saved.predict_proba(rows)[:, 1], rtol=0, atol=TOL
    )


def test_stall_warnings_are_logged(store: Path) -> None:
    from steadyclf.datasets import heart_rate

    # Raw inputs into sigmoid units (tests/test_diagnostics.py's original setup): the
    # detector warns of saturated units from the first epoch.
    X, y = heart_rate(n=400, random_state=0)
    setup = dict(normalize="none", activation="sigmoid", lr=1e-3, hidden=(10,))
    clf = BinaryClassifier(random_state=1, max_epochs=5, early_stopping=False, **setup).fit(X, y)  # type: ignore[arg-type]
    assert clf.warnings_
    with mlflow.start_run() as run:
        smf.log_training(clf, log_model_as=None)
    assert mlflow.MlflowClient().get_run(run.info.run_id).data.metrics["stall_warnings"] == len(
        clf.warnings_
    )
    logged = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/stall_warnings.json")
    assert [w["kind"] for w in logged] == [w["kind"] for w in clf.warnings_]
    assert logged[0]["message"] == clf.warnings_[0]["message"]


def _train_args(tmp_path: Path) -> list[str]:
    """``steadyclf train --mlflow`` on a small CSV file written into ``tmp_path``."""
    X, y = _frame(n=120, seed=2)
    X.assign(y=y).to_csv(tmp_path / "d.csv", index=False)
    args = ["train", str(tmp_path / "d.csv"), "--target", "y", "--out", str(tmp_path / "m")]
    return [*args, "--mlflow", "--max-epochs", "2", "--batch-size", "32", "--hidden", "8"]


@pytest.mark.parametrize("setting", ["unknown scheme", "nothing listening", "unknown run id"])
def test_cli_train_stops_before_training_when_the_run_cannot_be_opened(
    setting: str,
    store: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = _train_args(tmp_path)
    original = uri = os.environ["MLFLOW_TRACKING_URI"]
    named = "'sqlite:///"
    if setting == "unknown scheme":
        uri = "nosuch://x"
        named = repr(uri)
    elif setting == "nothing listening":
        uri = f"http://127.0.0.1:{_free_port()}"
        named = repr(uri)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    else:
        monkeypatch.setenv("MLFLOW_RUN_ID", "deadbeef")
    # The URI given by the environment, as a fresh process reads it (set_tracking_uri(None)
    # removes the variable; set_tracking_uri(original) puts both back).
    mlflow.set_tracking_uri(None)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        code = main(args)
    finally:
        mlflow.set_tracking_uri(original)
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("steadyclf:")]
    assert len(errors) == 1 and errors[0].startswith("steadyclf: error: cannot open ")
    assert f"MLflow tracking URI {named}" in errors[0]
    if setting == "unknown run id":
        assert "run 'deadbeef' (MLFLOW_RUN_ID)" in errors[0]
    # Nothing trained, nothing written: the data file is all there is.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]


def test_cli_train_says_the_model_was_written_when_mlflow_cannot_store_it(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _train_args(tmp_path)
    (tmp_path / "a-file").write_text("")  # no folder can be made under a file
    experiment = mlflow.create_experiment(
        "artifacts nowhere", artifact_location=str(tmp_path / "a-file" / "artifacts")
    )
    mlflow.set_experiment(experiment_id=experiment)
    try:
        code = main(args)
    finally:
        mlflow.set_experiment(experiment_id="0")
    captured = capsys.readouterr()
    assert code != 0 and "Traceback" not in captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("steadyclf: error")]
    assert len(errors) == 1
    out = str(tmp_path / "m")
    assert errors[0].startswith(
        f"steadyclf: error: the model was written to {out!r} but could not be logged to MLflow"
    )
    assert f"trained {out!r}" in captured.out  # the summary of the model written
    load(out)
    (run,) = mlflow.search_runs(experiment_ids=[experiment], output_format="list")
    assert run.info.status == "FAILED"

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import steadyclf
from steadyclf import BinaryClassifier
from steadyclf.callbacks import ProgressBar
from steadyclf.cli import main
from steadyclf.cli.common import Output as CliOutput
from steadyclf.cli.common import training_callbacks
from steadyclf.persistence import FORMAT_VERSION, INDEX_FILE, WEIGHTS_FILE, refresh_checksum

FAST = ["--max-epochs", "25", "--hidden", "8"]


def _table(n: int, seed: int) -> pd.DataFrame:
    """Numeric, categorical and boolean columns with gaps, string labels, an ID column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(100.0, 20.0, size=n)
    city = rng.choice(["Oslo", "Rome", "Lima"], size=n)
    frame = pd.DataFrame(
        {
            "id": [f"row{seed}-{i}" for i in range(n)],
            "x": x,
            "city": city,
            "z": rng.normal(size=n),
        }
    )
    frame.loc[::7, "x"] = np.nan
    frame.loc[::11, "city"] = None
    frame["y"] = np.where((x > 100) | (city == "Rome"), "sick", "healthy")
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    train, test = _table(200, 0), _table(60, 1)
    paths = {}
    for name, frame in (("train", train), ("test", test)):
        for suffix in (".csv", ".parquet"):
            path = root / f"{name}{suffix}"
            if suffix == ".csv":
                frame.to_csv(path, index=False)
            else:
                frame.to_parquet(path, index=False)
            paths[f"{name}{suffix}"] = path
    return paths


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def model(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "model"
    code = main(
        ["train", str(files["train.csv"]), "--target", "y", "--out", str(out), "--quiet", *FAST]
    )
    assert code == 0
    return out


# -- the happy paths ---------------------------------------------------------------------
def test_train_writes_the_model_directory_and_a_json_summary(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    code, stdout, stderr = _run(
        capsys, "train", files["train.parquet"], "--target", "y", "--out", out, "--json", *FAST
    )
    assert code == 0, stderr
    summary = json.loads(stdout)  # nothing but JSON on stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "history.csv",
        INDEX_FILE,
        WEIGHTS_FILE,
        "training.png",
    ]
    roles = {c["name"]: c["role"] for c in summary["columns"]}
    assert roles == {"id": "dropped", "x": "numeric", "city": "categorical", "z": "numeric"}
    by_name = {c["name"]: c for c in summary["columns"]}
    assert "ID-like" in by_name["id"]["reason"]
    assert by_name["x"]["summary"] == "x: numeric (29 missing -> median + indicator)"
    assert summary["classes"] == ["healthy", "sick"] and summary["positive"] == "sick"
    assert summary["epochs"] == len(pd.read_csv(out / "history.csv"))
    # Small data: no rows held out; cross-fitted members score every row out of fold and
    # choose the weight decay among the candidates.
    assert summary["validation_fraction"] == 0 and summary["batch_size"] == "full"
    assert summary["validation"]["n"] == summary["rows"]
    assert summary["validation"]["estimate"].startswith("out of fold")
    losses = summary["cross_fit"]["out_of_fold_log_loss"]
    assert min(losses, key=losses.get) == f"{summary['weight_decay']:g}"
    assert summary["epochs"] == len(pd.read_csv(out / "history.csv"))
    assert summary["threshold"] == 0.5


def test_train_text_summary_says_what_preprocessing_did(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, stderr = _run(
        capsys, "train", files["train.csv"], "--target", "y", "--out", tmp_path / "m", *FAST
    )
    assert code == 0 and stderr == ""  # not a terminal: no progress bar
    assert "5 cross-fitted networks" in stdout and "epochs in all" in stdout
    assert "chosen from 0.001, 0.01, 0.1 by out-of-fold log loss" in stdout
    assert "\nout of fold (200 rows, threshold 0.500): accuracy" in stdout
    assert "id: dropped (ID-like" in stdout
    assert "city: categorical (3 levels, 19 missing -> own level)" in stdout


def test_train_names_integer_classes_as_the_file_has_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """0/1 labels are printed as 0 and 1, not as NumPy's repr (``np.int64(1)``)."""
    frame = _table(120, 3).drop(columns=["id"])
    frame["y"] = (frame["x"] > 100).astype(int)
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    code, stdout, _ = _run(capsys, "train", path, "--target", "y", "--out", tmp_path / "m", *FAST)
    assert code == 0
    assert "\nclasses: 0 (0), 1 (1, positive)\n" in stdout


def test_train_with_a_validation_split_reports_its_metrics(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, stderr = _run(
        capsys,
        "train",
        files["train.csv"],
        "--target",
        "y",
        "--out",
        tmp_path / "m",
        "--validation-fraction",
        "0.2",
        "--weight-decay",
        "auto",
        "--json",
        *FAST,
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["validation_fraction"] == 0.2 and summary["weight_decay"] == 0
    assert summary["validation"]["roc_auc"] > 0.8
    # The first line says which rows trained and which were held out, and the members.
    code, stdout, stderr = _run(
        capsys, "train", files["train.csv"], "--target", "y", "--out", tmp_path / "text",
        "--validation-fraction", "0.2", *FAST,
    )  # fmt: skip
    assert code == 0, stderr
    plan = summary["plan"]
    rows = f"on {summary['rows']} rows ({plan['n_train']} to train on, {plan['n_valid']} held out)"
    assert rows in stdout.splitlines()[0] and plan["n_valid"] > 0
    assert plan["members"] > 1  # held-out rows to stop on: an ensemble, trained together
    assert f"{plan['members']} networks trained together" in stdout.splitlines()[0]


@pytest.mark.parametrize(
    ("option", "value"),
    [("--validation-fraction", "1.5"), ("--validation-fraction", "some"), ("--weight-decay", "-1")],
)
def test_bad_regularisation_options_are_one_line_errors(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
) -> None:
    out = tmp_path / "m"
    code, _stdout, stderr = _run(
        capsys, "train", files["train.csv"], "--target", "y", "--out", out, option, value
    )
    assert code != 0 and not out.exists()
    assert option in stderr and len(stderr.strip().splitlines()) == 1


def test_cli_model_predicts_like_the_in_memory_estimator(
    files: dict[str, Path], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = pd.read_csv(files["train.csv"])
    test = pd.read_csv(files["test.csv"])
    clf = BinaryClassifier(random_state=0, max_epochs=25, hidden=(8,))
    clf.fit(train.drop(columns="y"), train["y"])
    out = tmp_path / "pred.parquet"
    code, _, stderr = _run(capsys, "predict", model, files["test.csv"], "--out", out, "--id", "id")
    assert code == 0, stderr
    pred = pd.read_parquet(out)
    assert list(pred.columns) == ["id", "probability", "label"]
    assert pred["id"].tolist() == test["id"].tolist()
    # `steadyclf train` checkpoints (Ctrl-C), so its cross-fitted members train one after
    # another, where this fit trains them packed (steadyclf.train.packed): the same steps
    # through other float32 kernels, ~1e-7 apart after 25 epochs (measured 9.8e-8).
    np.testing.assert_allclose(
        pred["probability"], clf.predict_proba(test.drop(columns="y"))[:, 1], rtol=0, atol=1e-5
    )
    proba = clf.predict_proba(test.drop(columns="y"))[:, 1]
    clear = np.abs(proba - clf.threshold_) > 1e-5  # labels of rows not at the threshold
    np.testing.assert_array_equal(pred["label"][clear], clf.predict(test.drop(columns="y"))[clear])
    loaded = steadyclf.load(model)
    np.testing.assert_array_equal(
        pred["probability"], loaded.predict_proba(test.drop(columns="y"))[:, 1]
    )


def test_predict_to_stdout_json_and_threshold(
    files: dict[str, Path], model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, _ = _run(capsys, "predict", model, files["test.csv"])
    assert code == 0
    csv = pd.read_csv(pd.io.common.StringIO(stdout))
    assert list(csv.columns) == ["probability", "label"] and len(csv) == 60
    code, stdout, _ = _run(
        capsys, "predict", model, files["test.csv"], "--json", "--threshold", "1"
    )
    document = json.loads(stdout)
    assert document["threshold"] == 1.0
    assert {p["label"] for p in document["predictions"]} == {"healthy"}
    assert [p["probability"] for p in document["predictions"]] == csv["probability"].tolist()


def test_predict_notes_extra_columns_and_warns_on_far_values(
    files: dict[str, Path], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = pd.read_csv(files["test.csv"]).drop(columns="y").assign(extra=1)
    test.loc[[0, 1, 2], "x"] = 1e6
    path = tmp_path / "far.csv"
    test.to_csv(path, index=False)
    code, _, stderr = _run(capsys, "predict", model, path, "--out", tmp_path / "p.csv")
    assert code == 0
    lines = stderr.splitlines()
    # 'id' was dropped in training and 'y' is the target: expected, not noted.
    assert "steadyclf: note: ignoring 1 column(s) the model does not know: extra" in lines
    assert "warning: 3 values of 'x' far outside the training range" in stderr
    code, _, stderr = _run(capsys, "predict", model, path, "--out", tmp_path / "p.csv", "--quiet")
    assert "note" not in stderr and "warning" in stderr


def test_evaluate_reports_metrics_and_writes_plots(
    files: dict[str, Path], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    code, stdout, stderr = _run(capsys, "evaluate", model, files["test.parquet"], "--out", out)
    assert code == 0, stderr
    for name in ("accuracy", "balanced accuracy", "ROC AUC", "PR AUC", "log loss", "Brier"):
        assert name in stdout
    assert "confusion matrix" in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["metrics.json", "roc.png", "precision_recall.png", "calibration.png"]
    )
    code, stdout, _ = _run(capsys, "evaluate", model, files["test.csv"], "--target", "y", "--json")
    report = json.loads(stdout)["metrics"]
    assert report == json.loads((out / "metrics.json").read_text())
    cm = report["confusion_matrix"]
    assert cm["tn"] + cm["fp"] + cm["fn"] + cm["tp"] == 60
    assert report["roc_auc"] > 0.8


def test_threshold_metric_is_stored_and_used(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    args = ["train", files["train.csv"], "--target", "y", "--out", out, "--json", *FAST]
    code, stdout, _ = _run(
        capsys, *args, "--threshold-metric", "balanced_accuracy", "--positive", "healthy"
    )
    assert code == 0
    summary = json.loads(stdout)
    assert summary["positive"] == "healthy" and summary["threshold_metric"] == "balanced_accuracy"
    code, stdout, _ = _run(capsys, "predict", out, files["test.csv"], "--json")
    assert json.loads(stdout)["threshold"] == summary["threshold"]
    # The positive class sorts first: the evaluation is still about it, not the other.
    code, stdout, _ = _run(capsys, "evaluate", out, files["test.csv"], "--json")
    evaluation = json.loads(stdout)
    truth = pd.read_csv(files["test.csv"])["y"]
    assert evaluation["classes"] == ["healthy", "sick"] and evaluation["positive"] == "healthy"
    assert evaluation["metrics"]["n_positive"] == int((truth == "healthy").sum())
    assert evaluation["metrics"]["roc_auc"] > 0.8


def test_drop_missing_target(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv(files["train.csv"])
    frame.loc[[4, 9, 30], "y"] = None
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    code, _, stderr = _run(capsys, "train", path, "--target", "y", "--out", tmp_path / "m")
    assert code == 2
    assert stderr.strip() == (
        "steadyclf: error: the target 'y' is missing on 3 rows (first: 4, 9, 30); "
        "fill them in or drop them (--drop-missing-target)"
    )
    assert not (tmp_path / "m").exists()
    code, stdout, stderr = _run(
        capsys,
        "train",
        path,
        "--target",
        "y",
        "--out",
        tmp_path / "m",
        "--drop-missing-target",
        "--json",
        *FAST,
    )
    assert code == 0
    assert "dropped 3 rows with a missing target (first: 4, 9, 30)" in stderr
    assert json.loads(stdout)["rows"] == 197


def test_estimator_options_reach_the_estimator(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    args = [
        "train", files["train.csv"], "--target", "y", "--out", out, "--quiet",
        "--hidden", "6,3", "--activation", "tanh", "--normalize", "batchnorm", "--optimizer", "adamw",
        "--lr", "0.01", "--schedule", "cosine", "--max-epochs", "4", "--batch-size", "64",
        "--no-early-stopping", "--pos-weight", "balanced", "--random-state", "3",
        "--categorical", "z", "--drop", "id", "--patience", "2", "--validation-fraction", "0.2",
    ]  # fmt: skip
    code, _, stderr = _run(capsys, *args)
    assert code == 0, stderr
    clf = steadyclf.load(out)
    params = clf.get_params()
    assert params["hidden"] == (6, 3) and params["activation"] == "tanh"
    assert params["normalize"] == "batchnorm" and params["optimizer"] == "adamw"
    assert params["lr"] == 0.01 and params["schedule"] == "cosine" and params["batch_size"] == 64
    assert params["early_stopping"] is False and params["pos_weight"] == "balanced"
    assert params["random_state"] == 3 and params["categorical"] == ["z"]
    assert clf.n_iter_ == 4
    assert {c.name: c.role for c in clf.encoder_.columns_}["z"] == "categorical"


def test_progress_bar_only_on_a_terminal(
    hr_data: tuple[pd.DataFrame, pd.Series], capsys: pytest.CaptureFixture[str]
) -> None:
    assert training_callbacks(CliOutput()) == []  # pytest's stderr is not a TTY
    X, y = hr_data
    bar = ProgressBar(mininterval=0)  # draw every update
    BinaryClassifier(max_epochs=3, early_stopping=False, random_state=0).fit(X, y, callbacks=[bar])
    assert "3/3" in capsys.readouterr().err


# -- bad input: one line on stderr, exit 2, no traceback, nothing written ---------------------
def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_TRAIN = [
    ("missing.csv", None, [], r"no such file: '.*missing\.csv'"),
    ("empty.csv", "", [], r"file '.*empty\.csv' is empty"),
    ("header.csv", "x,y\n", [], r"has a header but no data rows"),
    ("data.xlsx", "x,y\n1,a\n", [], r"unknown file type '\.xlsx'"),
    (
        "absent.csv",
        "x,z\n1,a\n2,b\n",
        [],
        r"target column 'y' is not in the data; columns: 'x', 'z'",
    ),
    ("one.csv", "x,y\n1,a\n2,a\n", [], r"has one class \(values seen \['a'\], rows 2\)"),
    ("three.csv", "x,y\n1,a\n2,b\n3,c\n", [], r"values seen \['a', 'b', 'c'\], rows 1, 1, 1\)"),
    (
        "typo.csv",
        "x,y\n" + "1,yes\n2,no\n" * 30 + "3,Yes \n",
        [],
        r"values seen \['Yes ', 'no', 'yes'\], rows 1, 30, 30; 1 of 61 rows hold values beyond "
        r"the two most frequent \('Yes '\): typos\? fix or drop those rows",
    ),
    ("gap.csv", "x,y\n1,a\n2,\n3,b\n", [], r"target 'y' is missing on 1 row \(first: 1\)"),
    (
        "allmissing.csv",
        "x,c,y\n,,a\n,,b\n",
        [],
        r"no usable feature column \(x: all values missing",
    ),
    ("inf.csv", "x,y\n1,a\ninf,b\n", [], r"column 'x' has an infinite value at row 1"),
    ("dup.csv", "x,x,y\n1,2,a\n3,4,b\n", [], r"duplicate column name 'x' in file"),
    ("ok.csv", "x,y\n1,a\n2,b\n", ["--hidden", "0,x"], r"--hidden must be positive layer sizes"),
    ("ok.csv", "x,y\n1,a\n2,b\n", ["--lr", "-1"], r"--lr must be a positive number or 'auto'"),
    ("ok.csv", "x,y\n1,a\n2,b\n", ["--max-epochs", "0"], r"max_epochs must be a positive integer"),
    ("ok.csv", "x,y\n1,a\n2,b\n", ["--positive", "c"], r"positive class 'c' is not in the target"),
]


@pytest.mark.parametrize(("name", "content", "extra", "message"), BAD_TRAIN)
def test_bad_training_input(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str | None,
    extra: list[str],
    message: str,
) -> None:
    data = tmp_path / name
    if content is not None:
        data.write_text(content)
    before = sorted(tmp_path.iterdir())
    code, stdout, stderr = _run(
        capsys, "train", data, "--target", "y", "--out", tmp_path / "m", *extra
    )
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("steadyclf: error: ")
    assert "Traceback" not in stderr
    assert re.search(message, stderr), stderr
    assert sorted(tmp_path.iterdir()) == before  # no model directory, no temporary file


def test_train_refuses_to_overwrite_other_files(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    code, _, stderr = _run(
        capsys, "train", files["train.csv"], "--target", "y", "--out", tmp_path / "out"
    )
    assert code == 2 and "is not a steadyclf model directory" in stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("x,city,z\nabc,Oslo,1\n", [], r"column 'x' is numeric but row 0 holds 'abc'"),
        ("x,z\n1,2\n", [], r"missing column 'city'; the model was trained on 'x', 'city', 'z'"),
        ("x,x,city,z\n1,2,Oslo,3\n", [], r"duplicate column name 'x'"),
        ("x,city,z\ninf,Oslo,1\n", [], r"column 'x' has an infinite value at row 0"),
        ("x,city,z\n1,Oslo,1\n", ["--id", "nope"], r"id column 'nope' is not in the data"),
        (
            "x,city,z,label\n1,Oslo,1,a\n",
            ["--id", "label"],
            r"id column 'label' has the name of a column of the predictions",
        ),
        ("x,city,z\n1,Oslo,1\n", ["--threshold", "2"], r"--threshold must be between 0 and 1"),
    ],
)
def test_bad_prediction_input(
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    extra: list[str],
    message: str,
) -> None:
    data = _write(tmp_path / "new.csv", content)
    out = tmp_path / "pred.csv"
    code, stdout, stderr = _run(capsys, "predict", model, data, "--out", out, *extra)
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert re.search(message, stderr), stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv"]


def test_predict_refuses_unknown_output_type_before_work(
    files: dict[str, Path], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, stderr = _run(
        capsys, "predict", model, files["test.csv"], "--out", tmp_path / "p.xlsx"
    )
    assert code == 2 and "unknown file type '.xlsx'" in stderr
    assert list(tmp_path.iterdir()) == []


def _damage(model: Path, copy: Path, how: str) -> Path:
    shutil.copytree(model, copy)
    if how == "missing weights":
        (copy / WEIGHTS_FILE).unlink()
    elif how == "missing index":
        (copy / INDEX_FILE).unlink()
    elif how == "corrupted weights":
        blob = bytearray((copy / WEIGHTS_FILE).read_bytes())
        blob[len(blob) // 2] ^= 0x55
        (copy / WEIGHTS_FILE).write_bytes(bytes(blob))
    elif how == "corrupted index":
        (copy / INDEX_FILE).write_text((copy / INDEX_FILE).read_text()[:-40])
    elif how == "future version":
        index = json.loads((copy / INDEX_FILE).read_text())
        index["format_version"] = FORMAT_VERSION + 1
        (copy / INDEX_FILE).write_text(json.dumps(index))
        refresh_checksum(copy)
    return copy


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("missing weights", f"is missing {WEIGHTS_FILE}; it is incomplete"),
        ("missing index", f"is missing {INDEX_FILE}"),
        ("corrupted weights", "does not match the checksum"),
        ("corrupted index", "is corrupted (not valid JSON"),
        ("future version", f"has format version {FORMAT_VERSION + 1}"),
    ],
)
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_bad_model_directory(
    files: dict[str, Path],
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    how: str,
    message: str,
    command: str,
) -> None:
    broken = _damage(model, tmp_path / "broken", how)
    out = tmp_path / ("pred.csv" if command == "predict" else "eval")
    code, stdout, stderr = _run(capsys, command, broken, files["test.csv"], "--out", out)
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and message in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_evaluate_with_unknown_labels(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _write(tmp_path / "t.csv", "x,city,z,y\n1,Oslo,1,sick\n2,Rome,1,dead\n")
    code, _, stderr = _run(capsys, "evaluate", model, data)
    assert code == 2 and "target values 'dead' are not classes of the model" in stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(steadyclf.DataError, match="no such file"):
        main(
            [
                "--debug",
                "train",
                str(tmp_path / "x.csv"),
                "--target",
                "y",
                "--out",
                str(tmp_path / "m"),
            ]
        )


# -- a real process, as a user would run it ----------------------------------------------------
def _steadyclf(*args: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "steadyclf", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_subprocess_round_trip(files: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    model = tmp_path / "model"
    done = _steadyclf(
        "train", files[f"train{suffix}"], "--target", "y", "--out", model, "--json", *FAST
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["classes"] == ["healthy", "sick"]
    pred = tmp_path / f"pred{suffix}"
    done = _steadyclf("predict", model, files[f"test{suffix}"], "--out", pred, "--id", "id")
    assert done.returncode == 0, done.stderr
    written = pd.read_csv(pred) if suffix == ".csv" else pd.read_parquet(pred)
    test = pd.read_csv(files["test.csv"]).drop(columns="y")
    loaded = steadyclf.load(model)
    # Batches of other row counts than one call: BLAS may round the products differently.
    expected = loaded.predict_proba(test)[:, 1]
    np.testing.assert_allclose(written["probability"], expected, rtol=1e-12)
    assert written["label"].tolist() == loaded.predict(test).tolist()
    done = _steadyclf(
        "evaluate", model, files[f"test{suffix}"], "--json", "--out", tmp_path / "eval"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metrics"]["n"] == 60
    assert (tmp_path / "eval" / "roc.png").stat().st_size > 1000


@pytest.mark.slow
def test_subprocess_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    data = _write(tmp_path / "three.csv", "x,y\n1,a\n2,b\n3,c\n")
    done = _steadyclf("train", data, "--target", "y", "--out", tmp_path / "m")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "values seen ['a', 'b', 'c']" in done.stderr
    assert not (tmp_path / "m").exists()


def test_train_without_early_stopping_says_why_no_rows_are_held_out(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No early stopping, no held-out rows (scikit-learn's rule for validation_fraction):
    the summary says so, where it blamed small data's classes being too small to
    cross-fit."""
    code, stdout, stderr = _run(
        capsys, "train", files["train.csv"], "--target", "y", "--out", tmp_path / "m",
        "--no-early-stopping", "--validation-fraction", "0.2", *FAST,
    )  # fmt: skip
    assert code == 0, stderr
    assert "validation: none (early stopping off: no rows are held out" in stdout
    assert "cross-fit" not in stdout.split("validation: none")[1].splitlines()[0]


def test_no_output_overwrites_a_file_of_the_model(
    files: dict[str, Path], model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `export m --out m/model.json` overwrote the model it read and exited 0.
    before = {name: (model / name).read_bytes() for name in (INDEX_FILE, WEIGHTS_FILE)}
    for name in (INDEX_FILE, WEIGHTS_FILE):
        code, _, stderr = _run(capsys, "export", model, "--out", model / name)
        assert code == 2 and stderr.count("\n") == 1, stderr
        assert f"is a file of the model in {str(model)!r}" in stderr
        code, _, stderr = _run(capsys, "predict", model, files["test.csv"], "--out", model / name)
        assert code == 2 and "unknown file type" in stderr  # refused as a table type
    assert {name: (model / name).read_bytes() for name in before} == before
    code, _, _ = _run(capsys, "predict", model, files["test.csv"], "--out", model / "scores.csv")
    assert code == 0 and (model / "scores.csv").exists()  # beside the model: fine
    (model / "scores.csv").unlink()

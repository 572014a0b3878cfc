"""The command line for deployment: a start in a fraction of a second (lazy imports),
``predict`` over batches in bounded memory (files, Parquet row groups, standard input),
``inspect`` from model.json alone, and ``export``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import steadyclf
from steadyclf.cli import COMMANDS, main
from steadyclf.io import tables
from steadyclf.persistence import FORMAT_VERSION, WEIGHTS_FILE

#: Predictions made batch by batch against predict_proba on all rows at once: the same model
#: through matrix products of other row counts, which BLAS may sum in another order (a few
#: ulp of a logit); a row scored with another row's inputs would differ by far more.
BATCHES_RTOL = 1e-12

HEAVY = ("torch", "sklearn", "pandas", "matplotlib", "scipy")


def _imported_after(*args: str) -> list[str]:
    """The heavy libraries a fresh process imported to run ``steadyclf ARGS``."""
    code = (
        "import sys\n"
        "from steadyclf.cli import main\n"
        f"code = main({list(args)!r})\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stderr.strip().splitlines()[-1].replace("'", '"')))


@pytest.mark.parametrize("args", [["--help"], ["--version"]])
def test_help_and_version_import_no_heavy_library(args: list[str]) -> None:
    assert _imported_after(*args) == []


def test_the_help_of_every_command_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from steadyclf.cli import COMMANDS, main\n"
        "for name in COMMANDS:\n"
        "    assert main([name, '--help']) == 0\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)


def test_every_command_is_listed_without_importing_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out.split("Commands:")[1]
    listed = re.findall(r"^  ([a-z-]+) ", listing, flags=re.MULTILINE)
    assert sorted(listed) == sorted(COMMANDS)


# -- a model and data -------------------------------------------------------------------------
def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "id": [f"{i:06d}" for i in range(n)],  # leading zeros: text, not numbers
            "x": rng.normal(100.0, 20.0, size=n),
            "city": rng.choice(["Oslo", "Rome", "Lima"], size=n),
            "z": rng.normal(size=n),
        }
    )
    frame.loc[::7, "x"] = np.nan
    frame.loc[::11, "city"] = None
    frame["y"] = np.where((frame["x"] > 100) | (frame["city"] == "Rome"), "sick", "healthy")
    return frame


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ship")
    _table(300, 0).to_csv(root / "train.csv", index=False)
    out = root / "model"
    args = ["train", str(root / "train.csv"), "--target", "y", "--out", str(out), "--quiet"]
    assert main([*args, "--max-epochs", "15", "--hidden", "8"]) == 0
    return out


@pytest.fixture(scope="module")
def new_rows() -> pd.DataFrame:
    frame = _table(6000, 1).drop(columns="y")
    frame.loc[[10, 3000, 5990], "x"] = 1e6  # far values in three different batches
    frame.loc[[20, 4000], "z"] = np.nan  # 'z' had no missing value in training
    return frame


def _expected(model: Path, frame: pd.DataFrame) -> np.ndarray:
    return steadyclf.load(model).predict_proba(frame)[:, 1]


def test_predict_in_batches_equals_predict_proba(
    model: Path, new_rows: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "new.csv"
    new_rows.to_csv(data, index=False)
    out = tmp_path / "pred.csv"
    # 1 MB: CSV blocks of 64 KB, about 1,000 rows each.
    args = ["predict", model, data, "--out", out, "--id", "id", "--memory-budget", "1MB"]
    assert main([str(a) for a in args]) == 0
    stderr = capsys.readouterr().err
    written = pd.read_csv(out, dtype={"id": str})
    assert written["id"].tolist() == new_rows["id"].tolist()
    np.testing.assert_allclose(
        written["probability"], _expected(model, new_rows), rtol=BATCHES_RTOL
    )
    # Counted over every batch.
    assert "3 values of 'x' far outside the training range" in stderr
    assert "2 missing values in 'z', which had none in training" in stderr


def test_predict_reads_parquet_row_groups_and_writes_parquet(
    model: Path,
    new_rows: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tables, "PARQUET_ROW_GROUP", 1000)
    data = tmp_path / "new.parquet"
    pq.write_table(pa.Table.from_pandas(new_rows, preserve_index=False), data, row_group_size=700)
    out = tmp_path / "pred.parquet"
    args = ["predict", model, data, "--out", out, "--memory-budget", "1MB", "--json"]
    assert main([str(a) for a in args]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == len(new_rows) and len(summary["warnings"]) == 2
    written = pd.read_parquet(out)
    assert list(written.columns) == ["probability", "label"]
    np.testing.assert_allclose(
        written["probability"], _expected(model, new_rows), rtol=BATCHES_RTOL
    )
    assert pq.ParquetFile(out).metadata.num_row_groups > 1  # written as it went


def test_a_bad_value_in_a_later_batch_names_its_row_and_writes_nothing(
    model: Path, new_rows: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = new_rows.astype({"x": object})
    frame.loc[4321, "x"] = "oops"
    data = tmp_path / "bad.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "pred.csv"
    code = main(["predict", str(model), str(data), "--out", str(out), "--memory-budget", "1MB"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "column 'x' is numeric but row 4321 holds 'oops'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_a_file_with_a_header_only_is_refused(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "empty.csv"
    data.write_text("x,city,z\n")
    code = main(["predict", str(model), str(data), "--out", str(tmp_path / "p.csv")])
    assert code == 2 and "has a header but no data rows" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_predict_reads_standard_input(model: Path, new_rows: pd.DataFrame, tmp_path: Path) -> None:
    text = new_rows.head(2500).to_csv(index=False)
    command = [sys.executable, "-m", "steadyclf", "predict", str(model), "-", "--id", "id"]
    done = subprocess.run(
        [*command, "--memory-budget", "1MB"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = pd.read_csv(pd.io.common.StringIO(done.stdout), dtype={"id": str})
    assert written["id"].tolist() == new_rows["id"].head(2500).tolist()
    expected = _expected(model, new_rows.head(2500))
    np.testing.assert_allclose(written["probability"], expected, rtol=BATCHES_RTOL)


def test_predict_imports_neither_torch_nor_scikit_learn(
    model: Path, new_rows: pd.DataFrame, tmp_path: Path
) -> None:
    data = tmp_path / "new.csv"
    new_rows.head(100).to_csv(data, index=False)
    loaded = _imported_after("predict", str(model), str(data), "--out", str(tmp_path / "p.csv"))
    assert loaded == ["pandas"]


# -- inspect ---------------------------------------------------------------------------------
def test_inspect_reads_model_json_only(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "model"
    copy.mkdir()
    for path in model.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / WEIGHTS_FILE).write_bytes(b"not even safetensors")  # never read
    assert main(["inspect", str(copy), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format_version"] == FORMAT_VERSION and report["versions"]["steadyclf"]
    assert report["classes"] == ["healthy", "sick"] and report["positive_class"] == "sick"
    roles = {c["name"]: c["role"] for c in report["columns"]}
    assert roles == {"id": "dropped", "x": "numeric", "city": "categorical", "z": "numeric"}
    city = next(c for c in report["columns"] if c["name"] == "city")
    assert city["levels"] == 3 and city["missing"] > 0
    assert report["parameters"]["hidden"] == [8] and report["plan"]["batch_size"] is None
    assert report["training"]["n_iter"] >= 1 and report["training"]["data"]["n_rows"] == 300
    assert main(["inspect", str(copy)]) == 0
    text = capsys.readouterr().out
    assert "city: categorical (str); 3 of 3 levels" in text
    assert "id: dropped" in text and "training:" in text and "parameters:" in text
    folds = report["plan"]["folds"]
    members = f"{report['training']['n_iter']} epochs over {folds} cross-fitted members"
    assert folds > 1 and members in text  # n_iter counts the epochs of every member
    assert "\nout of fold: roc_auc " in text and "\nvalidation:" not in text


def test_inspect_refuses_what_is_not_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err  # it said "incomplete, save the model again"
    assert "holds no model (no model.json, no model.safetensors)" in err


def test_export_command_reports_the_graph(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.onnx"
    assert main(["export", str(model), "--format", "onnx", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["opset"] == {"ai.onnx": 17, "ai.onnx.ml": 3}
    assert [i["name"] for i in summary["inputs"]] == ["x", "city", "z"]
    assert out.stat().st_size > 100
    # An empty --out said "cannot write '': Device or resource busy".
    assert main(["export", str(model), "--out", ""]) == 2
    assert "--out is empty: give the file to write" in capsys.readouterr().err

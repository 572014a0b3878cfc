import json
from pathlib import Path

import pandas as pd
import pytest

from steadyclf import BinaryClassifier
from steadyclf.cli import main
from steadyclf.datasets import heart_rate


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def hr_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    X, y = heart_rate(n=300, random_state=0)
    path = tmp_path_factory.mktemp("data") / "hr.csv"
    X.assign(sick=y).to_csv(path, index=False)
    return path


def test_doctor_prints_the_report(capsys: pytest.CaptureFixture[str], hr_csv: Path) -> None:
    code, out, err = _run(capsys, "doctor", hr_csv, "--target", "sick")
    assert code == 0, err
    assert "[offset] HR sits far from zero" in out
    assert "pre-activations in the flat region (|z| > 4)" in out
    assert "\nVerdict: " in out and out.strip().endswith(".")


def test_doctor_json_is_the_only_output(capsys: pytest.CaptureFixture[str], hr_csv: Path) -> None:
    code, out, _ = _run(capsys, "doctor", hr_csv, "--target", "sick", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["target"] == "sick"
    assert report["findings"][0]["kind"] == "offset"
    assert (
        report["saturation"]["raw_share"] >= 0.7 > 0.05 > report["saturation"]["standardized_share"]
    )


def test_doctor_on_builtin_data_with_another_activation(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, "doctor", "builtin:heart-rate", "--activation", "tanh", "--hidden", "16", "--json"
    )
    assert code == 0
    sat = json.loads(out)["saturation"]
    assert sat["activation"] == "tanh" and sat["hidden"] == [16] and sat["region"] == "|z| > 2"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["doctor", "missing.csv", "--target", "y"], "no such file"),
        (["doctor", "builtin:iris"], "unknown built-in dataset 'builtin:iris'"),
        (["doctor", "builtin:heart-rate", "--target", "HR"], "target 'target'"),
        (["lr-find", "builtin:heart-rate", "--lr", "0.1", "--optimizer", "rmsprop"], "rmsprop"),
    ],
)
def test_unreadable_input_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_doctor_needs_a_target_for_files(capsys: pytest.CaptureFixture[str], hr_csv: Path) -> None:
    code, _, err = _run(capsys, "doctor", hr_csv)
    assert code == 2 and "--target is required" in err


def test_lr_find_prints_and_plots_the_pick_training_uses(
    capsys: pytest.CaptureFixture[str], hr_csv: Path, tmp_path: Path
) -> None:
    png = tmp_path / "lr.png"
    code, out, err = _run(capsys, "lr-find", hr_csv, "--target", "sick", "--out", png)
    assert code == 0, err
    assert out.startswith("suggested learning rate: ")
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, out, _ = _run(capsys, "lr-find", hr_csv, "--target", "sick", "--out", "", "--json")
    found = json.loads(out)
    assert found["plot"] is None and len(found["lrs"]) == len(found["losses"])
    frame = pd.read_csv(hr_csv)
    fitted = BinaryClassifier(lr="auto", random_state=0, max_epochs=2).fit(
        frame[["HR"]], frame["sick"]
    )
    assert found["lr"] == pytest.approx(fitted.lr_)


def test_demo_writes_its_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_dir = tmp_path / "demo"
    code, out, err = _run(capsys, "demo", "--out", out_dir, "--iterations", "10", "--rows", "60")
    assert code == 0, err
    assert "| heart-rate | raw inputs, sigmoid, Adam lr 1e-3 |" in out
    assert "steadyclf: training heart-rate: steadyclf defaults" in err
    assert {p.name for p in out_dir.iterdir()} == {"demo.png", "demo.md", "demo.json"}
    code, out, err = _run(
        capsys, "demo", "--out", out_dir, "--iterations", "5", "--rows", "50", "--json"
    )
    assert code == 0 and err == ""
    assert json.loads(out)["iterations"] == 5


def test_train_prints_stall_warnings(
    capsys: pytest.CaptureFixture[str], hr_csv: Path, tmp_path: Path
) -> None:
    args = ["--normalize", "none", "--activation", "sigmoid", "--lr", "0.001", "--hidden", "10"]
    code, out, err = _run(
        capsys,
        "train",
        hr_csv,
        "--target",
        "sick",
        "--out",
        tmp_path / "model",
        "--max-epochs",
        "60",
        "--json",
        *args,
    )
    assert code == 0, err
    warnings = json.loads(out)["warnings"]
    assert any("inputs not normalised: feature HR" in w for w in warnings)
    assert "steadyclf: warning: epoch 1:" in err


@pytest.fixture(scope="module")
def weighted_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Half the rows positive, but the positives weigh 0.05 and ten rows weigh 0 (with a
    value far off the others': a row training leaves out must not move the report)."""
    X, y = heart_rate(n=400, random_state=1)
    w = pd.Series(1.0, index=X.index).where(y == 0, 0.05)
    frame = X.assign(sick=y, w=w)
    off = frame.sample(10, random_state=0).index
    frame.loc[off, "w"] = 0.0
    frame.loc[off, "HR"] = 1e9
    path = tmp_path_factory.mktemp("weighted") / "w.csv"
    frame.to_csv(path, index=False)
    return path


def test_doctor_weight_leaves_the_column_out_and_weighs_the_classes(
    capsys: pytest.CaptureFixture[str], weighted_csv: Path
) -> None:
    frame = pd.read_csv(weighted_csv)
    kept = frame[frame["w"] > 0]
    code, out, err = _run(capsys, "doctor", weighted_csv, "--target", "sick", "--json")
    assert code == 0, err
    plain = json.loads(out)
    assert "w" in [f["name"] for f in plain["features"]]  # without --weight: a feature
    code, out, err = _run(
        capsys, "doctor", weighted_csv, "--target", "sick", "--weight", "w", "--json"
    )
    assert code == 0, err
    report = json.loads(out)
    features = {f["name"]: f for f in report["features"]}
    assert report["weight"] == "w" and report["weighted"] and list(features) == ["HR"]
    assert report["n_rows"] == len(kept) == len(frame) - 10
    expected = (kept["w"] * kept["sick"]).sum() / kept["w"].sum()
    assert report["positive_rate"] == pytest.approx(expected) and expected < 0.1
    kinds = {f["kind"] for f in report["findings"]}
    assert "imbalance" in kinds and "imbalance" not in {f["kind"] for f in plain["findings"]}
    assert all("w" not in f["features"] for f in report["findings"])
    code, out, _ = _run(capsys, "doctor", weighted_csv, "--target", "sick", "--weight", "w")
    assert code == 0 and f"({expected:.1%} positive by weight)" in out
    # The zero-weight rows' 1e9 heart rates are out of the report, as out of training.
    assert (
        features["HR"]["mean"]
        < 200
        < next(f for f in plain["features"] if f["name"] == "HR")["mean"]
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [("-1", "weight column 'w' is negative at row 3"), ("", "weight column 'w' is missing")],
)
def test_doctor_and_lr_find_refuse_bad_weights_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, value: str, message: str
) -> None:
    X, y = heart_rate(n=60, random_state=0)
    frame = X.assign(sick=y, w=1.0).astype({"w": object})
    frame.loc[3, "w"] = value
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    for command in (["doctor"], ["lr-find", "--out", ""]):
        code, out, err = _run(capsys, *command, path, "--target", "sick", "--weight", "w")
        assert code == 2 and out == "", (command, err)
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "doctor", path, "--target", "sick", "--weight", "nope")
    assert code == 2 and "weight column 'nope' is not in the data" in err


def test_lr_find_weight_runs_the_range_test_of_weighted_training(
    capsys: pytest.CaptureFixture[str], weighted_csv: Path
) -> None:
    code, out, err = _run(
        capsys, "lr-find", weighted_csv, "--target", "sick", "--weight", "w", "--out", "", "--json"
    )
    assert code == 0, err
    found = json.loads(out)
    frame = pd.read_csv(weighted_csv)
    weighted = BinaryClassifier(lr="auto", random_state=0, max_epochs=1).fit(
        frame[["HR"]], frame["sick"], sample_weight=frame["w"]
    )
    plain = BinaryClassifier(lr="auto", random_state=0, max_epochs=1).fit(
        frame[["HR"]], frame["sick"]
    )
    assert found["lr"] == pytest.approx(weighted.lr_)
    assert found["losses"] == pytest.approx(weighted.lr_finder_.losses)
    assert found["losses"] != pytest.approx(plain.lr_finder_.losses)


def test_doctor_names_the_values_and_rows_of_a_target_that_is_not_binary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A target with a typo is the doctor's to explain: it names every value with its rows
    and points at the rare ones (it listed the values only)."""
    frame = pd.DataFrame({"x": range(201), "y": ["Yes", "No"] * 100 + ["ye"]})
    frame.to_csv(tmp_path / "typo.csv", index=False)
    code, out, err = _run(capsys, "doctor", tmp_path / "typo.csv", "--target", "y")
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "has 3 classes (values seen ['No', 'Yes', 'ye'], rows 100, 100, 1;" in err
    assert "1 of 201 rows hold values beyond the two most frequent ('ye'): typos?" in err


@pytest.mark.parametrize("command", ["doctor", "lr-find"])
def test_in_memory_commands_refuse_a_directory_or_glob_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, hr_csv: Path, command: str
) -> None:
    """doctor and lr-find read one file: a directory or glob was "unknown file type
    '(none)'" (docs/cli.md said lr-find takes train's data too)."""
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.csv").write_bytes(hr_csv.read_bytes())
    for data in (folder, folder / "*.csv"):
        code, out, err = _run(capsys, command, data, "--target", "sick")
        assert code == 2 and out == "" and err.count("\n") == 1
        assert "this command reads one file into memory" in err

"""One pipeline: the same file trained in memory and read in passes resolves the same
defaults and reaches the same quality; the stall detector runs on streamed data too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

import steadyclf
from steadyclf.cli import main
from steadyclf.datasets import heart_rate
from steadyclf.policy import LARGE_DATA_MEMBERS, SMALL_DATA_WEIGHT_DECAYS

RESOLVED = ("batch_size", "lr", "validation_fraction", "weight_decay", "small_data", "members")


def _table(n: int, seed: int) -> pd.DataFrame:
    """Numeric columns with offsets and scales, categoricals and missing values."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=(3, n))
    group = rng.choice(["north", "south", "east", "west", None], n, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    shift = pd.Series(group).map({"north": 0.8, "south": -0.8, "east": 0.3}).fillna(0).to_numpy()
    logit = 1.5 * a - b + np.sin(2 * c) + shift
    frame = pd.DataFrame(
        {
            "a": 1e6 + 1e-3 * a,  # the signal in the 10th digit
            "b": np.where(rng.random(n) < 0.15, np.nan, 1e-4 * b),
            "c": 250 * c - 40,
            "group": group,
            "level": rng.choice([f"l{i}" for i in range(12)], n),
            "noise": rng.exponential(3, n),
            "y": np.where(logit + rng.logistic(size=n) > 0, "yes", "no"),
        }
    )
    return frame


def _write(frame: pd.DataFrame, path: Path) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=20_000)
    return path


def _train(data: Path, out: Path, *extra: str) -> dict[str, Any]:
    args = ["train", str(data), "--target", "y", "--out", str(out), "--json", "--quiet", *extra]
    assert main(args) == 0
    return json.loads((out / "model.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rows", "reading"),
    [
        (3_000, []),  # small data: full batch, cross-fitted members, weight decay chosen
        (150_000, ["--memory-budget", "20MB"]),  # mini-batches streamed through the buffer
        (14_000, ["--memory-budget", "2MB"]),  # streamed, four members trained together
    ],
    ids=["3k", "150k", "14k"],
)
def test_the_same_file_in_memory_and_streamed_trains_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: int, reading: list[str]
) -> None:
    data = _write(_table(rows, seed=0), tmp_path / "train.parquet")
    test = _table(20_000, seed=1)
    epochs = ["--max-epochs", "12" if rows > 100_000 else "6"] if rows > 10_000 else []
    memory = _train(data, tmp_path / "memory", *epochs)
    streamed = _train(data, tmp_path / "streamed", "--stream", *reading, *epochs)
    capsys.readouterr()
    plans = [m["training"]["plan"] for m in (memory, streamed)]
    assert {k: plans[0][k] for k in RESOLVED} == {k: plans[1][k] for k in RESOLVED}
    for key in ("batch_size", "lr", "validation_fraction", "weight_decay"):
        assert memory["training"][key] == streamed["training"][key]
    assert not memory["training"]["data"]["streamed"] and streamed["training"]["data"]["streamed"]
    if rows > 10_000:  # really streamed: the encoded rows did not fit the budget
        assert plans[0]["batch_size"] == (2048 if rows > 100_000 else 1024)
        assert plans[0]["validation_fraction"] == 0.1
        assert not streamed["training"]["data"]["rows_in_memory"]
        assert plans[0]["members"] == (1 if rows > 100_000 else LARGE_DATA_MEMBERS)
    else:
        assert (
            plans[0]["batch_size"] is None and plans[0]["weight_decay"] in SMALL_DATA_WEIGHT_DECAYS
        )
    y = (test["y"] == "yes").to_numpy()
    aucs = []
    for name in ("memory", "streamed"):
        model = steadyclf.load(tmp_path / name)
        aucs.append(roc_auc_score(y, model.predict_proba(test.drop(columns="y"))[:, 1]))
    assert min(aucs) > 0.8
    print(f"{rows} rows: test ROC AUC in memory {aucs[0]:.4f}, streamed {aucs[1]:.4f}")
    assert abs(aucs[0] - aucs[1]) < 0.005, aucs


def test_the_original_setup_streamed_raises_the_stall_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = heart_rate(n=1000, random_state=0)
    data = _write(X.assign(y=y), tmp_path / "hr.parquet")
    original = ["--normalize", "none", "--activation", "sigmoid", "--lr", "1e-3", "--hidden", "10"]
    args = ["--batch-size", "full", "--no-early-stopping", "--max-epochs", "60", "--json"]
    out = tmp_path / "model"
    code = main(
        ["train", str(data), "--target", "y", "--out", str(out), "--stream", *original, *args]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "warning: epoch" in captured.err and "inputs not normalised: feature HR" in captured.err
    assert json.loads(captured.out)["reading"]["streamed"]
    kinds = {kind for row in steadyclf.load(out).history_ for kind in row.get("warnings", [])}
    assert {"prior_stall", "saturated_units"} <= kinds


def test_held_out_rows_are_scored_chunk_by_chunk(monkeypatch) -> None:
    """The held-out logits (calibration, threshold, validation metrics) are computed in
    chunks of SCORE_CHUNK_ROWS rows, not in one float64 pass over every held-out row, and
    give the same calibration and metrics."""
    from steadyclf import pipeline

    frame = _table(3000, 8)
    X, y = frame.drop(columns="y"), frame["y"]
    params = {"random_state": 0, "max_epochs": 4, "validation_fraction": 0.2}
    whole = steadyclf.BinaryClassifier(**params).fit(X, y)
    seen: list[int] = []
    forward = pipeline.SteadyNet.logits

    def logits(self, x):  # type: ignore[no-untyped-def]
        seen.append(int(x.shape[0]))
        return forward(self, x)

    monkeypatch.setattr(pipeline, "SCORE_CHUNK_ROWS", 7)
    monkeypatch.setattr(pipeline.SteadyNet, "logits", logits)
    chunked = steadyclf.BinaryClassifier(**params).fit(X, y)
    assert seen and max(seen) == 7 and sum(seen) == whole.validation_metrics_["n"]
    # float64 logits of the same rows; BLAS kernels may differ by chunk shape (1 ulp).
    for key in ("roc_auc", "log_loss", "accuracy", "brier"):
        assert chunked.validation_metrics_[key] == pytest.approx(
            whole.validation_metrics_[key], rel=1e-12, abs=1e-12
        )
    assert chunked.calibration_["method"] == whole.calibration_["method"]

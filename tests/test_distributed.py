"""Distributed training: torchrun detection, collectives, and a real 2-process run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed as dist

import steadyclf
from steadyclf.cli import main
from steadyclf.datasets import heart_rate
from steadyclf.io.sources import SHARED_READING
from steadyclf.parallel import (
    DistributedContext,
    init_from_env,
    is_main_process,
    torchrun_environment,
)
from steadyclf.policy import LARGE_DATA_MEMBERS


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_environment_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert torchrun_environment() is None and is_main_process()
    assert init_from_env() is None  # no group joined outside torchrun
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert torchrun_environment() == (3, 4, 1) and not is_main_process()
    monkeypatch.setenv("WORLD_SIZE", "1")  # `torchrun --nproc-per-node 1`: one process
    assert torchrun_environment() is None


def test_collectives_of_a_one_process_gloo_group() -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
    )
    try:
        ctx = DistributedContext(0, 1, 0, "gloo", torch.device("cpu"))
        assert ctx.all_gather_object({"a": 1}) == [{"a": 1}]
        np.testing.assert_array_equal(ctx.all_reduce_sum(np.arange(3.0)), [0.0, 1.0, 2.0])
        assert ctx.all_reduce_min(7) == 7 and ctx.broadcast_object("x") == "x"
        wrapped = ctx.wrap(torch.nn.Linear(2, 1))
        assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
    finally:
        dist.destroy_process_group()


def _dataset(path: Path, n: int = 3000) -> pd.DataFrame:
    X, y = heart_rate(n=n, random_state=0)
    rng = np.random.default_rng(1)
    frame = X.assign(
        offset=1e6 + 1e-6 * rng.normal(size=n),
        tiny=np.where(rng.random(n) < 0.1, np.nan, 1e-9 * rng.normal(size=n)),
        ward=rng.choice(["a", "b", "c", None], n),
        hour=rng.integers(0, 24, n),  # read as a category too with --integer-codes
        y=y,
    )
    # 12 row groups: each of the 2 processes reads its 6.
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=250)
    return frame


@pytest.mark.slow
def test_two_processes_with_torchrun_match_one_process(tmp_path: Path) -> None:
    data = tmp_path / "hr.parquet"
    frame = _dataset(data)
    options = ["--target", "y", "--max-epochs", "6", "--memory-budget", "50MB", "--quiet"]
    options += ["--validation-fraction", "0.1"]  # 3,000 rows: small data holds none out
    options += ["--integer-codes", "category"]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "steadyclf",
        "train",
        str(data),
        "--out",
        str(tmp_path / "ddp"),
        "--json",
        *options,
    ]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)  # rank 0 alone reports
    assert summary["reading"]["processes"] == 2 and summary["rows"] == len(frame)
    # No leftovers: the model (a link to its one version, .ddp.v-*) and the data.
    version = os.readlink(tmp_path / "ddp")
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != version)
    assert names == ["ddp", "hr.parquet"]

    # Statistics: equal to one process reading every row group.
    model = steadyclf.load(tmp_path / "ddp")
    assert main(["train", str(data), "--out", str(tmp_path / "one"), "--stream", *options]) == 0
    one = steadyclf.load(tmp_path / "one")
    buffers, single = model.module_.encoder, one.module_.encoder
    assert model.encoder_.to_dict() == one.encoder_.to_dict()
    read = [c for c in model.encoder_.columns_ if c.read_as_category]
    assert [c.name for c in read] == ["hour"] and len(read[0].levels) == 24
    for name in ("normalize.center", "normalize.scale"):
        np.testing.assert_allclose(
            buffers.get_buffer(name).numpy(), single.get_buffer(name).numpy(), rtol=1e-9
        )
    np.testing.assert_array_equal(buffers.impute.median.numpy(), single.impute.median.numpy())

    # Held-out rows: both trained four members together (DDP averaging their gradients).
    assert len(model.module_.bodies) == len(one.module_.bodies) == LARGE_DATA_MEMBERS

    # The same validation AUC as one process, within 0.01.
    auc_two, auc_one = model.validation_metrics_["roc_auc"], one.validation_metrics_["roc_auc"]
    assert auc_one > 0.95 and abs(auc_two - auc_one) < 0.01
    assert model.validation_metrics_["n"] == one.validation_metrics_["n"]  # same rows held out

    # The model written by rank 0 predicts in this (single) process.
    proba = model.predict_proba(frame.drop(columns="y"))
    assert proba.shape == (len(frame), 2) and np.isfinite(proba).all()
    assert model.score(frame.drop(columns="y"), frame["y"]) > 0.9


@pytest.mark.slow
def test_small_data_under_torchrun_trains_one_network_on_every_row(tmp_path: Path) -> None:
    """Cross-fitting needs every row in one process; under torchrun the processes hold
    shards, so the defaults train one network together, with the range test's rate of
    rank 0 on every process (``--lr auto``)."""
    data = tmp_path / "hr.parquet"
    frame = _dataset(data)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "steadyclf", "train", str(data), "--out", str(tmp_path / "ddp"), "--json",
        "--target", "y", "--max-epochs", "6", "--lr", "auto", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["reading"]["processes"] == 2 and summary["cross_fit"] is None
    assert summary["reading"]["why"] == SHARED_READING  # it said "asked for (--stream)"
    model = steadyclf.load(tmp_path / "ddp")
    assert len(model.module_.bodies) == 1 and model.weight_decay_ == pytest.approx(1e-2)
    assert model.score(frame.drop(columns="y"), frame["y"]) > 0.9
    # The text summary says why nothing is held out (it blamed too few rows of a class).
    text = subprocess.run(
        [*command[: command.index("--json")], *command[command.index("--json") + 1 : -1]],
        env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert text.returncode == 0, text.stderr[-3000:]
    assert "validation: none (small data under torchrun: the 2 processes train one" in text.stdout


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--random-state", "1"], "random_state=1 but rank 0 with random_state=0"),
        (["--drop", "ward"], "drop=['ward'] but rank 0 with drop=None"),
    ],
)
def test_processes_started_with_other_options_are_refused(
    tmp_path: Path, options: list[str], said: str
) -> None:
    # Two processes started by hand (RANK, WORLD_SIZE) with another --random-state: they
    # trained on other splits and wrote a model saying 0; another --drop failed in numpy
    # (it was hidden by the --drop-missing-target flag's key). Now both stop in one line.
    data = tmp_path / "hr.parquet"
    _dataset(data, n=600)
    port = str(_free_port())
    runs = []
    for rank, extra in ((0, ["--random-state", "0"]), (1, options)):
        env = {
            **os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "RANK": str(rank),
            "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "STEADYCLF_DISTRIBUTED_TIMEOUT": "60",
        }  # fmt: skip
        command = [
            sys.executable, "-m", "steadyclf", "train", str(data), "--target", "y",
            "--out", str(tmp_path / "model"), "--max-epochs", "2", *extra,
        ]  # fmt: skip
        runs.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True))
    errors = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [2, 2]
    for err in errors:
        assert f"rank 1 of 2 was started with {said}" in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "model").exists()

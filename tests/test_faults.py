"""Faults injected into real runs: inputs that change under a run, edited model files,
crashes and readers during a save, signals, concurrent writers, stalled ranks."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import steadyclf
from steadyclf import BinaryClassifier, DataError, ModelFileError
from steadyclf.cli import main
from steadyclf.io import atomic
from steadyclf.io.atomic import leftovers
from steadyclf.io.sources import DataSource
from steadyclf.persistence import read_model, refresh_checksum, save
from steadyclf.train.checkpoint import Checkpoint, read_checkpoint
from steadyclf.train.trainer import StopTraining


def _table(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] - x[:, 1] > 0).astype(int)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y})


class _AfterEpoch:
    """A callback that changes the data files after the first epoch (a real rewrite)."""

    def __init__(self, change: Callable[[], None]) -> None:
        self.change = change
        self.done = False

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        if not self.done:
            self.done = True
            self.change()


def _inverted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(y=1 - frame["y"])


def _overwrite_csv_inverted(path: Path) -> None:
    _inverted(pd.read_csv(path)).to_csv(path, index=False)  # in place, same size


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 3)


def _fit_streamed(data: Path, change: Callable[[], None]) -> BinaryClassifier:
    clf = BinaryClassifier(random_state=0, max_epochs=4, batch_size=128)
    return clf.fit_files(
        data, "y", stream=True, memory_budget="16kB", callbacks=[_AfterEpoch(change)], context=None
    )


def _parquet_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "parts"
    folder.mkdir()
    frame = _table()
    for i in range(3):
        part = frame.iloc[i * 400 : (i + 1) * 400]
        pq.write_table(
            pa.Table.from_pandas(part, preserve_index=False),
            folder / f"p{i}.parquet",
            row_group_size=200,
        )
    return folder


@pytest.mark.parametrize("change", ["inverted", "truncated"])
def test_a_csv_changed_between_epochs_stops_the_run(tmp_path: Path, change: str) -> None:
    path = tmp_path / "d.csv"
    _table().to_csv(path, index=False)
    rewrite = _overwrite_csv_inverted if change == "inverted" else _truncate
    with pytest.raises(DataError, match=r"d\.csv' changed while the run was reading it") as info:
        _fit_streamed(path, lambda: rewrite(path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("change", ["replaced", "truncated", "inverted"])
def test_a_parquet_folder_changed_between_epochs_stops_the_run(tmp_path: Path, change: str) -> None:
    folder = _parquet_folder(tmp_path)
    victim = folder / "p1.parquet"

    def rewrite() -> None:
        if change == "truncated":
            _truncate(victim)
        elif change == "inverted":
            table = _inverted(pq.read_table(victim).to_pandas())
            pq.write_table(
                pa.Table.from_pandas(table, preserve_index=False), victim, row_group_size=200
            )
        else:  # another file renamed over it, as a sync tool does
            other = folder / ".incoming"
            pq.write_table(pa.Table.from_pandas(_table(400, seed=9), preserve_index=False), other)
            os.replace(other, victim)

    with pytest.raises(
        DataError, match=r"p1\.parquet' changed while the run was reading it"
    ) as info:
        _fit_streamed(folder, rewrite)
    assert "\n" not in str(info.value)


def test_a_same_size_rewrite_that_keeps_the_mtime_is_caught_by_the_fingerprint(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.csv"
    _table().to_csv(path, index=False)
    source = DataSource.open(path)
    before = path.stat()
    _overwrite_csv_inverted(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    with pytest.raises(DataError, match="its content differs"):
        list(source.batches(["a", "y"]))


def test_an_unchanged_input_reads_the_same_rows_every_pass(tmp_path: Path) -> None:
    folder = _parquet_folder(tmp_path)
    source = DataSource.open(folder)
    first = pd.concat(frame for _, frame in source.batches(["a", "y"]))
    second = pd.concat(frame for _, frame in source.batches(["a", "y"]))
    pd.testing.assert_frame_equal(first, second)


# -- 2. one checksum over every file of a model or checkpoint directory -----------------------
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = _table(300)
    clf = BinaryClassifier(random_state=0, max_epochs=3, hidden=(8,))
    clf.fit(frame[["a", "b", "c"]], frame["y"])
    directory = tmp_path_factory.mktemp("saved") / "model"
    clf.save(directory)
    (directory / "notes.csv").write_text("saved,with\n1,2\n")  # another file, then re-signed
    refresh_checksum(directory)
    return directory


def _edit_number(text: str, key: str) -> str:
    """Change one digit of the first number after ``"key":`` (one byte of the file)."""
    match = re.search(rf'"{key}":\s*\[?-?\d+\.(\d)', text)
    assert match is not None, key
    at = match.start(1)
    digit = "1" if text[at] != "1" else "2"
    return text[:at] + digit + text[at + 1 :]


@pytest.mark.parametrize(
    ("file", "edit"),
    [
        ("model.json", lambda t: _edit_number(t, "threshold")),
        ("model.json", lambda t: _edit_number(t, "scale")),  # the calibration
        ("notes.csv", lambda t: t.replace("1", "7")),
    ],
    ids=["threshold", "calibration", "other-file"],
)
def test_one_edited_byte_of_a_model_file_is_refused_naming_it(
    tmp_path: Path, saved_model: Path, file: str, edit: Callable[[str], str]
) -> None:
    model = tmp_path / "model"
    shutil.copytree(saved_model, model)
    text = (model / file).read_text()
    (model / file).write_text(edit(text))
    assert len((model / file).read_text()) == len(text)  # one byte changed, not the length
    with pytest.raises(ModelFileError, match=re.escape(file)) as info:
        steadyclf.load(model)
    assert "\n" not in str(info.value)
    data = tmp_path / "new.csv"
    _table(20).drop(columns="y").to_csv(data, index=False)
    code = main(["predict", str(model), str(data), "--out", str(tmp_path / "p.csv")])
    assert code == 2 and not (tmp_path / "p.csv").exists()


def test_a_model_saved_before_the_checksum_still_loads(tmp_path: Path, saved_model: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(saved_model, model)
    index = json.loads((model / "model.json").read_text())
    del index["checksum"], index["files"]  # what the previous version wrote
    (model / "model.json").write_text(json.dumps(index, indent=2))
    assert steadyclf.load(model).threshold_ == pytest.approx(index["threshold"])
    # A model that claims a checksum must match it: the claim cannot be kept while editing.
    index["checksum"] = "sha256:" + "0" * 64
    (model / "model.json").write_text(json.dumps(index, indent=2))
    with pytest.raises(ModelFileError, match=r"model\.json' does not match its checksum"):
        steadyclf.load(model)


def test_refresh_checksum_re_signs_a_deliberate_edit(tmp_path: Path, saved_model: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(saved_model, model)
    index = json.loads((model / "model.json").read_text())
    index["threshold"] = 0.25
    (model / "model.json").write_text(json.dumps(index, indent=2))
    with pytest.raises(ModelFileError):
        steadyclf.load(model)
    refresh_checksum(model)
    assert steadyclf.load(model).threshold_ == 0.25


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = _table(300)
    directory = tmp_path_factory.mktemp("checkpoint")
    # One network (no race of embeddings): its checkpoint.json at the top of the folder.
    clf = BinaryClassifier(
        random_state=0, max_epochs=6, hidden=(8,), batch_size=64, numeric_embedding="none"
    )
    clf.fit(frame[["a", "b", "c"]], frame["y"], callbacks=[Checkpoint(directory), _StopAt(2)])
    assert read_checkpoint(directory).epoch == 2
    return directory


class _StopAt:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        if trainer.epoch == self.epoch:
            raise StopTraining


@pytest.mark.parametrize("key", ["lr", "betas"])
def test_one_edited_byte_of_checkpoint_json_is_refused(
    tmp_path: Path, saved_checkpoint: Path, key: str
) -> None:
    directory = tmp_path / "checkpoint"
    shutil.copytree(saved_checkpoint, directory)
    index = directory / "checkpoint.json"
    text = index.read_text()
    # The optimizer's learning rate, and the first decimal of beta2 (the second beta).
    pattern = (
        r'"lr":\d+\.(\d)\d*,"betas"' if key == "lr" else r'"betas":\{"\$tuple":\[[^,]+,\d\.(\d)'
    )
    match = re.search(pattern, text)
    assert match is not None
    at = match.start(1)
    edited = text[:at] + ("1" if text[at] != "1" else "2") + text[at + 1 :]
    index.write_text(edited)
    with pytest.raises(ModelFileError, match=r"checkpoint\.json does not match its checksum"):
        read_checkpoint(directory)
    frame = _table(300)
    resume = Checkpoint(directory, resume=True)
    with pytest.raises(ModelFileError, match=r"checkpoint\.json"):
        BinaryClassifier(
            random_state=0, max_epochs=6, hidden=(8,), batch_size=64, numeric_embedding="none"
        ).fit(frame[["a", "b", "c"]], frame["y"], callbacks=[resume])


# -- 3. a model directory is replaced in one step ----------------------------------------------
def _variant(saved_model: Path, folder: Path, threshold: float) -> Path:
    """A copy of the saved model with another threshold (re-signed: a real model)."""
    copy = folder / f"t{threshold}"
    shutil.copytree(saved_model, copy)
    index = json.loads((copy / "model.json").read_text())
    index["threshold"] = threshold
    (copy / "model.json").write_text(json.dumps(index))
    refresh_checksum(copy)
    return copy


def _beside(folder: Path) -> list[str]:
    """What ``folder`` holds, a model directory's current version (a link's target) aside."""
    current = {os.readlink(p) for p in folder.iterdir() if p.is_symlink()}
    return sorted(p.name for p in folder.iterdir() if p.name not in current)


def test_a_save_swaps_a_link_to_a_new_version_and_leaves_nothing_behind(
    tmp_path: Path, saved_model: Path
) -> None:
    state = read_model(saved_model)
    out = tmp_path / "out"
    save(state, out)
    first = os.readlink(out)
    save(state, out)
    assert out.is_symlink() and os.readlink(out) != first
    assert _beside(tmp_path) == ["out"] and leftovers(out) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_model_directory_of_the_previous_version_is_replaced(
    tmp_path: Path, saved_model: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    out = tmp_path / "out"
    shutil.copytree(saved_model, out)  # a real directory, as earlier versions saved
    if not exchange:  # a C library or file system without renameat2(RENAME_EXCHANGE)
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    save(read_model(_variant(saved_model, tmp_path / "src", 0.25)), out)
    assert out.is_symlink() and read_model(out).threshold == 0.25
    assert _beside(tmp_path) == ["out", "src"]


_CRASHING_SAVE = """
import os, signal, sys
from steadyclf.io import atomic
from steadyclf.persistence import read_model, save
source, out, step = sys.argv[1:4]
if step == "moved-aside":
    atomic._exchange = lambda a, b: False  # the portable path: two renames
atomic._after_step = lambda name: name == step and os.kill(os.getpid(), signal.SIGKILL)
save(read_model(source), out)
"""


@pytest.mark.parametrize(
    ("step", "legacy", "left_at_out"),
    [("versioned", False, "old"), ("linked", False, "new"), ("moved-aside", True, None)],
)
def test_a_crash_between_the_steps_of_a_save_leaves_a_model(
    tmp_path: Path, saved_model: Path, step: str, legacy: bool, left_at_out: str | None
) -> None:
    out = tmp_path / "out"
    old, new = (
        _variant(saved_model, tmp_path / "src", 0.25),
        _variant(saved_model, tmp_path / "src", 0.75),
    )
    if legacy:
        shutil.copytree(old, out)
    else:
        save(read_model(old), out)
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASHING_SAVE, str(new), str(out), step],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert leftovers(out)  # the crash left something behind...
    if left_at_out is None:  # ...the one window of the portable path: named by a load
        with pytest.raises(ModelFileError, match=r"an interrupted save left '\.out\.v-") as info:
            read_model(out)
        assert "\n" not in str(info.value)
    else:
        assert read_model(out).threshold == (0.25 if left_at_out == "old" else 0.75)
    save(read_model(new), out)  # the next save cleans up after the crash
    assert read_model(out).threshold == 0.75
    assert leftovers(out) == [] and _beside(tmp_path) == ["out", "src"]


_SAVE_LOOP = """
import sys
from steadyclf.persistence import read_model, save
a, b, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
states = [read_model(a), read_model(b)]
print("ready", flush=True)
for i in range(n):
    save(states[i % 2], out)
"""


def test_loads_during_saves_return_the_old_or_the_new_model(
    tmp_path: Path, saved_model: Path
) -> None:
    a, b = (
        _variant(saved_model, tmp_path / "src", 0.25),
        _variant(saved_model, tmp_path / "src", 0.75),
    )
    out = tmp_path / "out"
    save(read_model(a), out)
    saver = subprocess.Popen(
        [sys.executable, "-c", _SAVE_LOOP, str(a), str(b), str(out), "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert saver.stdout is not None and saver.stdout.readline() == "ready\n"
    seen: list[float] = []
    deadline = time.monotonic() + 120
    while saver.poll() is None and time.monotonic() < deadline:
        seen.append(read_model(out).threshold)  # never an error
    _, err = saver.communicate(timeout=60)
    assert saver.returncode == 0, err
    assert set(seen) <= {0.25, 0.75} and len(seen) >= 5
    assert leftovers(out) == []


# -- 4. SIGTERM like Ctrl-C through the end of a run; one writer per --out ----------------------
CLI_RUN = ["--target", "y", "--max-epochs", "8", "--batch-size", "64", "--hidden", "8"]
CLI_RUN += ["--numeric-embedding", "none"]  # one network per run: quick

# Runs the CLI after placing a real signal at a point of the run (``where``).
_SIGNALLED_CLI = """
import os, signal, sys, time
where, args = sys.argv[1], sys.argv[2:]

def term(*_):
    os.kill(os.getpid(), signal.SIGTERM)

class At:
    def on_epoch_end(self, trainer, record):
        if where == "epoch-3" and trainer.epoch == 3:
            term()
        if where == "slow":
            time.sleep(0.25)
        if where == "invert-data" and trainer.epoch == 1:  # the file changes between epochs
            import pandas as pd
            frame = pd.read_csv(args[1])
            frame.assign(y=1 - frame["y"]).to_csv(args[1], index=False)

import steadyclf.cli.train as train
train.training_callbacks = lambda output: [At()]
if where == "calibration":
    import steadyclf.pipeline as pipeline
    real = pipeline.calibrate
    pipeline.calibrate = lambda *a, **k: (term(), real(*a, **k))[1]
if where == "final-write":
    from steadyclf.io import atomic
    atomic._after_step = lambda step: step == "versioned" and term()
if where == "predict-write":
    from steadyclf.io import atomic
    real_mode = atomic.file_mode
    atomic.file_mode = lambda path: (term(), real_mode(path))[1]
from steadyclf.cli import main
sys.exit(main(args))
"""


def _signalled(where: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _SIGNALLED_CLI, where, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def train_csv(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    _table(600).to_csv(path, index=False)
    return path


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp")) + [p.name for p in leftovers(folder / "m")]


@pytest.mark.parametrize("where", ["epoch-3", "calibration", "final-write"])
def test_sigterm_saves_the_training_and_exits_143(
    tmp_path: Path, train_csv: Path, where: str
) -> None:
    out = tmp_path / "m"
    run = _signalled(where, "train", str(train_csv), "--out", str(out), *CLI_RUN)
    _, err = run.communicate(timeout=180)
    assert run.returncode == 143, err
    assert "Traceback" not in err and "SIGTERM" in err and "--resume" in err
    assert not out.exists() and _temporaries(tmp_path) == []
    saved = read_checkpoint(tmp_path / "m.checkpoint").epoch
    assert saved == 3 if where == "epoch-3" else saved >= 1
    code = main(["train", str(train_csv), "--out", str(out), *CLI_RUN, "--resume", "--quiet"])
    assert code == 0 and read_model(out).training["n_iter"] >= saved
    assert not (tmp_path / "m.checkpoint").exists()


def test_sigterm_while_predict_writes_leaves_no_temporary_file(
    tmp_path: Path, saved_model: Path
) -> None:
    data = tmp_path / "new.csv"
    _table(50).drop(columns="y").to_csv(data, index=False)
    out = tmp_path / "p.csv"
    run = _signalled("predict-write", "predict", str(saved_model), str(data), "--out", str(out))
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv"]


def test_a_second_writer_of_the_same_out_is_refused(
    tmp_path: Path, train_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    args = ["train", str(train_csv), "--out", str(out), *CLI_RUN, "--max-epochs", "16"]
    first = _signalled("slow", *args, "--patience", "50")
    lock = tmp_path / ".m.lock"
    deadline = time.monotonic() + 60
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.exists(), first.communicate()[1]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "another run is writing" in err and err.count("\n") == 1
    _, first_err = first.communicate(timeout=180)
    assert first.returncode == 0, first_err
    assert read_model(out).training["n_iter"] >= 1
    assert not lock.exists() and _temporaries(tmp_path) == []


def test_a_fresh_train_is_not_refused_for_what_a_killed_run_left(
    tmp_path: Path, train_csv: Path
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(gone.stdout)  # a process that has ended: its files are leftovers
    checkpoint = tmp_path / "m.checkpoint"
    checkpoint.mkdir()
    (checkpoint / f".checkpoint-000002.safetensors.{pid}-k1ll3d.tmp").write_bytes(b"half")
    (checkpoint / "checkpoint-000002.safetensors").write_bytes(b"no index refers to it")
    (tmp_path / f".m.tmp-{pid}").mkdir()  # a staging directory
    out = tmp_path / "m"
    assert main(["train", str(train_csv), "--out", str(out), *CLI_RUN, "--quiet"]) == 0
    assert read_model(out).threshold > 0 and _temporaries(tmp_path) == []


def test_an_out_that_cannot_be_written_is_refused_before_training(
    tmp_path: Path, train_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("not a folder")
    started = time.monotonic()
    code = main(["train", str(train_csv), "--out", str(tmp_path / "file" / "m"), *CLI_RUN])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write" in err and err.count("\n") == 1
    assert "epoch" not in err and time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        # Members checkpointed epoch by epoch train one after another: the epoch is kept.
        (["--checkpoint-every", "1"], "stopped after epoch 2;"),
        # Packed members (the default) keep whole stages: the first had not ended.
        ([], "nothing was saved; run the same command again"),
    ],
    ids=["member-by-member", "packed"],
)
def test_an_interrupted_cross_fitted_run_says_what_it_kept(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    said: str,
) -> None:
    import steadyclf.cli.train as cli_train

    class Sigint:
        sent = False

        def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
            if trainer.epoch == 2 and not Sigint.sent:  # one Ctrl-C
                Sigint.sent = True
                os.kill(os.getpid(), signal.SIGINT)

    path = tmp_path / "small.csv"
    _table(150).to_csv(path, index=False)  # small data: cross-fitted networks
    monkeypatch.setattr(cli_train, "training_callbacks", lambda output: [Sigint()])
    out = tmp_path / "m"
    args = ["train", str(path), "--target", "y", "--out", str(out), "--max-epochs", "6"]
    code = main([*args, "--numeric-embedding", "none", *extra])
    err = capsys.readouterr().err
    assert code == 130 and Sigint.sent
    assert said in err and "None" not in err and "Traceback" not in err
    assert not out.exists()


# -- 5. torchrun: a stopped or killed rank ends the run with one line ---------------------------
_RANK_STOPS_ITSELF = """
import json, os, signal, sys, time
from pathlib import Path
from steadyclf.train.checkpoint import Checkpoint

how, mark = sys.argv[1], Path(sys.argv[2])
real = Checkpoint.on_epoch_end

def on_epoch_end(self, trainer, record):
    real(self, trainer, record)
    if os.environ["RANK"] == "1" and trainer.epoch == 2:
        mark.write_text(json.dumps({"pid": os.getpid(), "at": time.time()}))
        os.kill(os.getpid(), signal.SIGSTOP if how == "stop" else signal.SIGKILL)

Checkpoint.on_epoch_end = on_epoch_end
from steadyclf.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_stopped_or_killed_rank_ends_the_run_with_one_line(tmp_path: Path, how: str) -> None:
    data = tmp_path / "d.parquet"
    pq.write_table(
        pa.Table.from_pandas(_table(2000), preserve_index=False), data, row_group_size=250
    )
    script = tmp_path / "rank.py"
    script.write_text(_RANK_STOPS_ITSELF)
    mark, timeout = tmp_path / "stopped.json", 8
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--master-addr", "127.0.0.1", "--master-port", str(port), str(script), how]
    command += [str(mark), "train", str(data), "--out", str(tmp_path / "m"), *CLI_RUN]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    env["STEADYCLF_DISTRIBUTED_TIMEOUT"] = str(timeout)
    run = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(
        target=lambda: lines.extend((time.time(), x) for x in run.stderr or [])
    )
    reader.start()  # torchrun's own report follows our processes' lines

    def said() -> bool:
        return any(x.startswith(("steadyclf: error:", "steadyclf: interrupted")) for _, x in lines)

    deadline = time.monotonic() + 180  # a hang (gloo's 30 minutes) fails here
    try:
        while not said() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if how == "stop" and mark.exists():  # spare torchrun its 30 s wait to kill it
            os.kill(json.loads(mark.read_text())["pid"], signal.SIGKILL)
        run.wait(timeout=120)
    finally:
        run.kill()
        reader.join(timeout=30)
        if run.stderr is not None:
            run.stderr.close()
    text = "".join(line for _, line in lines)
    stopped = json.loads(mark.read_text())
    ours = [(t, x) for t, x in lines if x.startswith(("steadyclf: error", "steadyclf: interr"))]
    assert run.returncode != 0 and ours, text[-3000:]
    when, last = ours[0]
    if how == "stop":  # rank 0 waited for the stopped rank at most the timeout
        assert "rank 0 of 2: another process stopped answering or exited" in last, text[-3000:]
        assert when - stopped["at"] < timeout + 30  # slack: a loaded 2-core machine
    # No traceback from our processes (torchrun's own report names only its launcher).
    assert not any(
        "/steadyclf/" in line and line.lstrip().startswith("File ") for line in text.splitlines()
    ), text[-3000:]
    assert not (tmp_path / "m").exists()


# -- 6. smaller: the drift report, permissions, the gzip header ---------------------------------
def test_a_failed_drift_report_leaves_the_predictions_file_alone(
    tmp_path: Path, saved_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "new.csv"
    _table(30).drop(columns="y").to_csv(data, index=False)
    out = tmp_path / "p.csv"
    out.write_text("the previous predictions\n")
    (tmp_path / "file").write_text("a file where a folder should be")
    report = tmp_path / "file" / "drift.json"
    code = main(
        ["predict", str(saved_model), str(data), "--out", str(out), "--drift-report", str(report)]
    )
    assert code == 2 and "Traceback" not in capsys.readouterr().err
    assert out.read_text() == "the previous predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "new.csv", "p.csv"]


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_files_get_the_permissions_open_would_give_them(
    tmp_path: Path, saved_model: Path, umask: int, file_mode: int, dir_mode: int
) -> None:
    from steadyclf.io.tables import write_table

    previous = os.umask(umask)
    try:
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
        save(read_model(saved_model), tmp_path / "m")
        kept = tmp_path / "private.csv"
        kept.write_text("x\n")
        kept.chmod(0o600)
        write_table(pd.DataFrame({"a": [2]}), kept)  # replaced: keeps its mode, as open() would
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "t.csv").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == dir_mode  # the version it links to
    assert stat.S_IMODE((tmp_path / "m" / "model.json").stat().st_mode) == file_mode
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_the_gzip_header_names_the_file_not_its_temporary_name(
    tmp_path: Path, saved_model: Path
) -> None:
    from steadyclf.io.tables import write_table

    data = tmp_path / "new.csv"
    _table(30).drop(columns="y").to_csv(data, index=False)
    assert (
        main(
            ["predict", str(saved_model), str(data), "--out", str(tmp_path / "p.csv.gz"), "--quiet"]
        )
        == 0
    )
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv.gz")
    for name in ("p.csv", "t.csv"):
        blob = (tmp_path / f"{name}.gz").read_bytes()
        assert blob[3] & 0x08  # FNAME: a file name follows the 10-byte header
        assert blob[10 : blob.index(b"\0", 10)] == name.encode()
    assert pd.read_csv(tmp_path / "p.csv.gz").shape == (30, 2)


def test_the_cli_stops_a_run_whose_input_changed_with_one_line(
    tmp_path: Path, train_csv: Path
) -> None:
    out = tmp_path / "m"
    stream = ["--stream", "--memory-budget", "16kB"]
    run = _signalled("invert-data", "train", str(train_csv), "--out", str(out), *CLI_RUN, *stream)
    _, err = run.communicate(timeout=180)
    assert run.returncode == 2, err
    assert err.count("\n") == 1 and "train.csv' changed while the run was reading it" in err
    assert not out.exists()

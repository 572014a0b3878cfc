import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch

import steadyclf
import steadyclf.cli.train as cli_model
from steadyclf import BinaryClassifier, DataError, ModelFileError, ParameterError
from steadyclf.cli import main
from steadyclf.datasets import heart_rate
from steadyclf.exceptions import TrainingInterrupted
from steadyclf.nn.modules import PeriodicEmbedding
from steadyclf.train.checkpoint import (
    INDEX_FILE,
    Checkpoint,
    check_checkpoint_dir,
    read_checkpoint,
    remove_checkpoint,
)
from steadyclf.train.trainer import StopTraining, Trainer


class StopAt:
    """Stands in for a crash: ends training after ``epoch`` (checkpoints run first)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if trainer.epoch == self.epoch:
            raise StopTraining


def _data() -> tuple[pd.DataFrame, pd.Series]:
    return heart_rate(n=240, random_state=1)


def _weights(clf: BinaryClassifier) -> dict[str, torch.Tensor]:
    return dict(clf.module_.state_dict())


def _assert_same_model(a: BinaryClassifier, b: BinaryClassifier) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    # The numbers training produced (not timings, nor what diagnostics added to rows).
    keys = ("epoch", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "lr")
    assert [[r.get(k) for k in keys] for r in a.history_] == [
        [r.get(k) for k in keys] for r in b.history_
    ]


PARAMS = [
    dict(batch_size=32, schedule="plateau", optimizer="adam"),
    dict(batch_size=16, schedule="onecycle", optimizer="sgd"),
    # Full batch with a hold-out: one network (small data otherwise cross-fits members).
    dict(batch_size=None, schedule="cosine", optimizer="adamw", validation_fraction=0.1),
]


@pytest.mark.parametrize("params", PARAMS)
def test_resumed_run_is_bit_identical(tmp_path: Path, params: dict[str, Any]) -> None:
    X, y = _data()
    kw: dict[str, Any] = dict(random_state=3, max_epochs=9, **params)
    reference = BinaryClassifier(**kw).fit(X, y)
    BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(tmp_path, every=2), StopAt(5)])
    assert read_checkpoint(tmp_path).epoch == 4
    resume = Checkpoint(tmp_path, every=2, resume=True)
    resumed = BinaryClassifier(**kw).fit(X, y, callbacks=[resume])
    assert resume.resumed_epoch == 4
    _assert_same_model(reference, resumed)


@pytest.mark.parametrize("run", [7, 17])  # in the first stage (plain), in the second
def test_cross_fitted_members_resume_from_their_parts(tmp_path: Path, run: int) -> None:
    X, y = _data()
    kw: dict[str, Any] = dict(random_state=3, max_epochs=12)  # small data: members
    # A checkpointed fit trains its members one after another (steadyclf.train.packed):
    # the uninterrupted run to compare with is checkpointed too.
    reference = BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(tmp_path / "ref")])
    assert reference.plan_["folds"] > 1
    remove_checkpoint(tmp_path / "ref")

    class Crash:
        """Dies in the middle of run ``run``: the plain network's 5 members x 3 weight
        decays come first, then 5 members with embeddings."""

        epochs = 0

        def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
            Crash.epochs += 1
            if Crash.epochs == 12 * (run - 1) + 5:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(tmp_path, every=2), Crash()])
    parts = sorted(p.name for p in tmp_path.iterdir())
    # Parts are numbered candidate * 3 + weight decay: the plain network (the last
    # candidate) trains first, the one with embeddings after it.
    first = 3 * (len(reference.plan_["numeric_embeddings"]) - 1)
    assert len(parts) == run and f"part-{first}-0" in parts
    resume = Checkpoint(tmp_path, every=2, resume=True)
    resumed = BinaryClassifier(**kw).fit(X, y, callbacks=[resume])
    _assert_same_model(reference, resumed)
    assert remove_checkpoint(tmp_path) and not tmp_path.exists()


class SigintInStage:
    """Sends SIGINT at epoch ``epoch`` of a member of stage ``stage`` of a packed
    cross-fit (0: the plain networks, 1: those with periodic embeddings), once."""

    def __init__(self, stage: int, epoch: int = 3) -> None:
        self.stage, self.epoch, self.sent = stage, epoch, False

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        periodic = isinstance(next(trainer.module.children()), PeriodicEmbedding)
        if not self.sent and periodic == bool(self.stage) and record["epoch"] == self.epoch:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


class EpochsByStage:
    """Counts the epochs members of each stage of a packed cross-fit train."""

    def __init__(self) -> None:
        self.epochs = [0, 0]

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        self.epochs[isinstance(next(trainer.module.children()), PeriodicEmbedding)] += 1


def _assert_same_fit(a: BinaryClassifier, b: BinaryClassifier) -> None:
    """The same model, and the same numbers out of its cross-fit."""
    _assert_same_model(a, b)
    assert a.validation_metrics_ == b.validation_metrics_
    assert a.warnings_ == b.warnings_ and a.data_["cross_fit"] == b.data_["cross_fit"]


def test_packed_members_keep_their_stages_and_resume_identically(tmp_path: Path) -> None:
    X, y = _data()
    kw: dict[str, Any] = dict(random_state=3, max_epochs=12)  # small data: packed members
    reference = BinaryClassifier(**kw).fit(X, y)  # no checkpoint: packed too
    assert reference.plan_["numeric_embeddings"] == ("periodic", "none")
    before = signal.getsignal(signal.SIGINT)
    stop, ck = SigintInStage(1), Checkpoint(tmp_path, every=None)
    with pytest.raises(TrainingInterrupted, match=r"during cross-fitting stage 2;.* after stage 1"):
        BinaryClassifier(**kw).fit(X, y, callbacks=[stop, ck])
    assert stop.sent and ck.saved_at == "cross-fitting stage 1"
    assert signal.getsignal(signal.SIGINT) is before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage-0"]  # the plain networks
    seen = EpochsByStage()
    resume = Checkpoint(tmp_path, resume=True)
    resumed = BinaryClassifier(**kw).fit(X, y, callbacks=[seen, resume])
    _assert_same_fit(reference, resumed)
    assert seen.epochs[0] == 0 and seen.epochs[1] > 0  # the kept stage did not train again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage-0", "stage-1"]
    # Both stages saved: resuming trains nothing and gives the same fit again.
    seen = EpochsByStage()
    again = BinaryClassifier(**kw).fit(X, y, callbacks=[seen, Checkpoint(tmp_path, resume=True)])
    _assert_same_fit(reference, again)
    assert seen.epochs == [0, 0]
    assert remove_checkpoint(tmp_path) and not tmp_path.exists()


def test_a_signal_in_the_first_packed_stage_saves_nothing(tmp_path: Path) -> None:
    X, y = _data()
    ck = Checkpoint(tmp_path / "run", every=None)
    with pytest.raises(TrainingInterrupted, match="stage 1; no earlier stage had ended"):
        BinaryClassifier(random_state=3, max_epochs=12).fit(X, y, callbacks=[SigintInStage(0), ck])
    assert ck.saved_at is None and not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["data", "weights"])
def test_a_kept_stage_of_other_data_or_edited_is_refused(tmp_path: Path, damage: str) -> None:
    X, y = _data()
    kw: dict[str, Any] = dict(random_state=3, max_epochs=12)
    with pytest.raises(TrainingInterrupted):
        BinaryClassifier(**kw).fit(
            X, y, callbacks=[SigintInStage(1), Checkpoint(tmp_path, every=None)]
        )
    if damage == "data":
        X = X.assign(HR=X["HR"] + 1.0)
        error, match = DataError, "training data differs"
    else:
        (weights,) = (tmp_path / "stage-0").glob("*.safetensors")
        blob = bytearray(weights.read_bytes())
        blob[-3] ^= 0x01
        weights.write_bytes(bytes(blob))
        error, match = ModelFileError, "does not match the SHA-256"
    with pytest.raises(error, match=match):
        BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(tmp_path, resume=True)])


def test_resume_depends_on_the_restored_generator(tmp_path: Path) -> None:
    """Control for the test above: the restored shuffling state does change the result."""
    X, y = _data()
    kw: dict[str, Any] = dict(random_state=3, max_epochs=6, batch_size=32)
    reference = BinaryClassifier(**kw).fit(X, y)
    BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(tmp_path), StopAt(3)])

    class ForgetGenerator:
        def on_train_begin(self, trainer: Trainer) -> None:
            assert trainer.generator is not None
            trainer.generator.manual_seed(12345)

    resumed = BinaryClassifier(**kw).fit(
        X, y, callbacks=[Checkpoint(tmp_path, resume=True), ForgetGenerator()]
    )
    assert not torch.equal(
        _weights(reference)["bodies.0.0.weight"], _weights(resumed)["bodies.0.0.weight"]
    )


def test_resume_after_early_stop_trains_no_further(tmp_path: Path) -> None:
    X, y = _data()
    kw: dict[str, Any] = dict(random_state=0, max_epochs=300, patience=2, lr=0.3)
    first = BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(tmp_path)])
    assert first.n_iter_ < 300
    again = BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(tmp_path, resume=True)])
    _assert_same_model(first, again)


def test_every_controls_when_checkpoints_are_written(tmp_path: Path) -> None:
    X, y = _data()
    saved: list[int] = []

    class Spy(Checkpoint):
        def save(self, trainer: Trainer) -> Path:
            saved.append(trainer.epoch)
            return super().save(trainer)

    BinaryClassifier(random_state=0, max_epochs=7, early_stopping=False).fit(
        X, y, callbacks=[Spy(tmp_path, every=3)]
    )
    assert saved == [3, 6]
    # Old weight files are removed once a newer checkpoint is in place.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-000006.safetensors",
        INDEX_FILE,
    ]


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"hidden": (8,)}, ParameterError, "parameter 'hidden' was"),
        ({"random_state": 4}, ParameterError, "random_state|seed"),
        ({"max_epochs": 20}, ParameterError, "max_epochs"),
        ({"data": True}, DataError, "training data differs"),
    ],
)
def test_resume_refuses_a_different_run(
    tmp_path: Path, change: dict[str, Any], error: type[Exception], match: str
) -> None:
    X, y = _data()
    kw: dict[str, Any] = dict(random_state=3, max_epochs=6, hidden=(16,))
    BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(tmp_path), StopAt(2)])
    if change.pop("data", False):
        X = X.assign(HR=X["HR"] + 1.0)
    kw.update(change)
    with pytest.raises(error, match=match):
        BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(tmp_path, resume=True)])


def test_device_and_verbose_may_change_on_resume(tmp_path: Path) -> None:
    X, y = _data()
    BinaryClassifier(random_state=3, max_epochs=4).fit(
        X, y, callbacks=[Checkpoint(tmp_path), StopAt(2)]
    )
    ck = Checkpoint(tmp_path, resume=True)
    BinaryClassifier(random_state=3, max_epochs=4, device="cpu", verbose=1).fit(
        X, y, callbacks=[ck]
    )
    assert ck.resumed_epoch == 2


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    X, y = _data()
    with pytest.raises(ModelFileError, match="no checkpoint in"):
        BinaryClassifier(max_epochs=2).fit(
            X, y, callbacks=[Checkpoint(tmp_path / "none", resume=True)]
        )


@pytest.mark.parametrize("every", [0, -1, 1.5, True])
def test_every_must_be_a_positive_integer(tmp_path: Path, every: Any) -> None:
    with pytest.raises(ParameterError, match="every"):
        Checkpoint(tmp_path, every=every)


class SendSigint:
    def __init__(self, epoch: int, times: int = 1) -> None:
        self.epoch, self.times = epoch, times

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if trainer.epoch == self.epoch:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_a_checkpoint_and_resumes_identically(tmp_path: Path) -> None:
    X, y = _data()
    kw: dict[str, Any] = dict(random_state=5, max_epochs=8, batch_size=32)
    reference = BinaryClassifier(**kw).fit(X, y)
    before = signal.getsignal(signal.SIGINT)
    ck = Checkpoint(tmp_path, every=None)
    with pytest.raises(TrainingInterrupted, match="interrupted after epoch 3"):
        BinaryClassifier(**kw).fit(X, y, callbacks=[SendSigint(3), ck])
    assert ck.saved_epoch == 3
    assert signal.getsignal(signal.SIGINT) is before
    resumed = BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(tmp_path, resume=True)])
    _assert_same_model(reference, resumed)


def test_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    X, y = _data()
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as info:
        BinaryClassifier(random_state=0, max_epochs=8).fit(
            X, y, callbacks=[SendSigint(2, times=2), Checkpoint(tmp_path, every=None)]
        )
    assert not isinstance(info.value, TrainingInterrupted)
    assert signal.getsignal(signal.SIGINT) is before
    assert not (tmp_path / INDEX_FILE).exists()


def test_sigint_handler_is_restored_when_training_fails(tmp_path: Path) -> None:
    X, y = _data()
    before = signal.getsignal(signal.SIGINT)

    class Boom:
        def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        BinaryClassifier(random_state=0, max_epochs=3).fit(
            X, y, callbacks=[Checkpoint(tmp_path), Boom()]
        )
    assert signal.getsignal(signal.SIGINT) is before


def test_a_failed_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = _data()
    kw: dict[str, Any] = dict(random_state=0, max_epochs=6, early_stopping=False)
    BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(tmp_path), StopAt(2)])
    assert read_checkpoint(tmp_path).epoch == 2
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing_fsync(fd: int) -> None:
        # The weights of epoch 3 get written; the index (the commit) fails halfway.
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ModelFileError, match="No space left"):
        BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(tmp_path, resume=True)])
    monkeypatch.undo()
    assert read_checkpoint(tmp_path).epoch == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_checkpoint_holds_the_fitted_preprocessing(tmp_path: Path) -> None:
    X, y = _data()
    X = X.assign(kind=np.where(np.arange(len(X)) % 3 == 0, "a", "b"))
    clf = BinaryClassifier(random_state=0, max_epochs=2).fit(X, y, callbacks=[Checkpoint(tmp_path)])
    data = read_checkpoint(tmp_path)
    assert data.fit is not None and data.preprocessing is not None
    assert data.fit["encoder"] == clf.encoder_.to_dict()
    assert data.fit["classes"] == clf.classes_.tolist()
    mean = data.preprocessing["encoder.normalize.center"]
    assert torch.equal(mean, clf.module_.encoder.normalize.center)


# -- the command line: steadyclf train --checkpoint-every / --resume -------------------------
CLI_RUN = ["--max-epochs", "14", "--batch-size", "32", "--hidden", "16", "--patience", "50"]


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    X, y = _data()
    path = tmp_path / "train.csv"
    X.assign(label=y).to_csv(path, index=False)
    return path


def _train(
    capsys: pytest.CaptureFixture[str], csv: Path, out: Path, *extra: str
) -> tuple[int, str]:
    code = main(["train", str(csv), "--target", "label", "--out", str(out), *CLI_RUN, *extra])
    return code, capsys.readouterr().err


def _tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(model_dir / "model.safetensors")


def _assert_same_files(a: Path, b: Path) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key


def test_cli_ctrl_c_checkpoints_and_resume_finishes_the_same_model(
    tmp_path: Path,
    csv_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _train(capsys, csv_file, tmp_path / "whole")[0] == 0
    out = tmp_path / "model"
    monkeypatch.setattr(cli_model, "training_callbacks", lambda output: [SendSigint(6)])
    code, err = _train(capsys, csv_file, out)
    assert code == 130
    assert "stopped after epoch 6" in err and "--resume" in err and "model.checkpoint" in err
    assert not out.exists()  # no half-trained model where the real one will go
    monkeypatch.undo()
    code, err = _train(capsys, csv_file, out, "--resume")
    assert code == 0, err
    assert "resuming from epoch 6" in err
    assert not (tmp_path / "model.checkpoint").exists()  # removed once the model is saved
    _assert_same_files(tmp_path / "whole", out)


def test_cli_packed_members_resume_from_their_last_stage(
    tmp_path: Path,
    csv_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def train(out: Path, *extra: str) -> tuple[int, str]:
        # Full batch (no --batch-size): the members train packed.
        run = ["--target", "label", "--max-epochs", "14", "--hidden", "16", "--out", str(out)]
        code = main(["train", str(csv_file), *run, *extra])
        return code, capsys.readouterr().err

    assert train(tmp_path / "whole")[0] == 0
    out = tmp_path / "model"
    monkeypatch.setattr(cli_model, "training_callbacks", lambda output: [SigintInStage(1)])
    code, err = train(out)
    assert code == 130
    assert "stopped after cross-fitting stage 1;" in err and "--resume" in err
    assert not out.exists()
    monkeypatch.undo()
    code, err = train(out, "--resume")
    assert code == 0, err
    assert "resuming from cross-fitting stage 1" in err
    assert not (tmp_path / "model.checkpoint").exists()
    _assert_same_files(tmp_path / "whole", out)


def test_cli_refuses_to_overwrite_a_checkpoint_without_resume(
    tmp_path: Path,
    csv_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "model"
    monkeypatch.setattr(cli_model, "training_callbacks", lambda output: [SendSigint(3)])
    assert _train(capsys, csv_file, out, "--checkpoint-every", "2")[0] == 130
    monkeypatch.undo()
    # The checkpoint's index, or its parts' (a fit that races candidates, or cross-fits).
    indexes = sorted((tmp_path / "model.checkpoint").rglob(INDEX_FILE))
    before = [p.read_bytes() for p in indexes]
    assert before
    code, err = _train(capsys, csv_file, out)
    assert code == 2 and "add --resume" in err and "Traceback" not in err
    assert [p.read_bytes() for p in indexes] == before


def test_cli_resume_without_a_checkpoint_is_a_clear_error(
    tmp_path: Path, csv_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _train(capsys, csv_file, tmp_path / "model", "--resume")
    assert code == 2 and "no checkpoint to resume from" in err and "without --resume" in err


def test_cli_checkpoints_and_resume_work_when_streaming(
    tmp_path: Path, csv_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _train(capsys, csv_file, tmp_path / "m", "--stream", "--checkpoint-every", "2")
    assert code == 0, err
    assert "removed checkpoint" in err and not (tmp_path / "m.checkpoint").exists()
    code, err = _train(capsys, csv_file, tmp_path / "m2", "--stream", "--resume")
    assert code == 2 and "no checkpoint to resume from" in err


@pytest.mark.parametrize("every", ["0", "-2", "x"])
def test_cli_checkpoint_every_must_be_positive(
    tmp_path: Path, csv_file: Path, capsys: pytest.CaptureFixture[str], every: str
) -> None:
    code, err = _train(capsys, csv_file, tmp_path / "m", "--checkpoint-every", every)
    assert code == 2 and "--checkpoint-every" in err


def test_cli_divergence_saves_the_best_model_and_fails(
    tmp_path: Path, csv_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    # Full batch: epoch 1 ends finite (the loss is taken before the step), epoch 2 is NaN.
    code, err = _train(
        capsys, csv_file, out, "--lr", "1e30", "--optimizer", "sgd", "--batch-size", "full"
    )
    assert code == 2
    assert "diverged" in err and "best model so far" in err and str(out) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    clf = steadyclf.load(out)
    X, _ = _data()
    assert np.isfinite(clf.predict_proba(X)).all()
    index = json.loads((out / "model.json").read_text())
    assert "diverged" in index["metadata"]


# -- SIGKILL mid-run, then --resume: the same model as an uninterrupted run -----------------
_SLOW_CLI = """
import sys, time
import steadyclf.cli.train as m

class Slow:
    def on_epoch_end(self, trainer, record):
        time.sleep(0.3)  # room to kill the process between checkpoints

m.training_callbacks = lambda output: [Slow()]
from steadyclf.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(*args: str, slow: bool = False) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = _SLOW_CLI if slow else "import sys; from steadyclf.cli import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "reading",
    [[], ["--stream", "--memory-budget", "4kB"]],  # in memory; streamed through the buffer
    ids=["memory", "streamed"],
)
def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_model(
    tmp_path: Path, csv_file: Path, reading: list[str]
) -> None:
    run = ["train", str(csv_file), "--target", "label", *CLI_RUN, "--max-epochs", "20", *reading]
    killed = _cli(*run, "--out", str(tmp_path / "model"), "--checkpoint-every", "3", slow=True)
    reference = _cli(*run, "--out", str(tmp_path / "whole"))
    checkpoint = tmp_path / "model.checkpoint"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and killed.poll() is None:
        try:
            if read_checkpoint(checkpoint).epoch >= 6:
                break
        except ModelFileError:  # none yet, or replaced while we read it
            pass
        time.sleep(0.05)
    assert killed.poll() is None, killed.communicate()[1]
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    stopped_at = read_checkpoint(checkpoint).epoch
    assert 6 <= stopped_at < 20
    assert not (tmp_path / "model").exists()
    resumed = _cli(*run, "--out", str(tmp_path / "model"), "--checkpoint-every", "3", "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resuming from epoch {stopped_at}" in err
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    whole, model = _tensors(tmp_path / "whole"), _tensors(tmp_path / "model")
    assert whole.keys() == model.keys()
    for key in whole:
        torch.testing.assert_close(model[key], whole[key], rtol=1e-5, atol=1e-5)
    if not reading:  # in memory every piece of state is restored: bit for bit
        _assert_same_files(tmp_path / "whole", tmp_path / "model")
    history = pd.read_csv(tmp_path / "model" / "history.csv")
    assert history["epoch"].tolist() == list(range(1, 21))
    index = json.loads((tmp_path / "model" / "model.json").read_text())
    assert index["training"]["data"]["rows_in_memory"] == (not reading)


_SLOW_SECOND_STAGE_CLI = """
import sys, time
import steadyclf.cli.train as m
from steadyclf.nn.modules import PeriodicEmbedding

class SlowEmbeddings:
    def on_epoch_end(self, trainer, record):
        if isinstance(next(trainer.module.children()), PeriodicEmbedding):
            time.sleep(0.05)  # room to kill the process in the second stage

m.training_callbacks = lambda output: [SlowEmbeddings()]
from steadyclf.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigkill_in_a_packed_stage_then_resume_gives_the_uninterrupted_model(
    tmp_path: Path, csv_file: Path
) -> None:
    """The default small-data run (packed members, stages kept): killed in its second
    stage, the first is kept and the resumed run writes the uninterrupted run's model."""
    run = ["train", str(csv_file), "--target", "label", "--max-epochs", "14", "--hidden", "16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    killed = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SECOND_STAGE_CLI, *run, "--out", str(tmp_path / "model")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reference = _cli(*run, "--out", str(tmp_path / "whole"))
    first = tmp_path / "model.checkpoint" / "stage-0" / INDEX_FILE
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and killed.poll() is None and not first.is_file():
        time.sleep(0.02)
    time.sleep(0.3)  # into the second stage, which the slow callback stretches to seconds
    assert killed.poll() is None, killed.communicate()[1]
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    kept = sorted(p.name for p in (tmp_path / "model.checkpoint").iterdir() if p.is_dir())
    assert kept == ["stage-0"] and not (tmp_path / "model").exists()
    resumed = _cli(*run, "--out", str(tmp_path / "model"), "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming from cross-fitting stage 1" in err
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    _assert_same_files(tmp_path / "whole", tmp_path / "model")


def test_cli_divergence_from_the_first_epoch_saves_nothing(
    tmp_path: Path, csv_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    code, err = _train(capsys, csv_file, out, "--lr", "1e30", "--optimizer", "sgd")
    assert code == 2 and "diverged" in err and "no model was saved" in err
    assert not out.exists()


def test_a_checkpoint_directory_named_like_a_stage_is_read_as_what_it_holds(
    tmp_path: Path,
) -> None:
    """Only a stage kept inside a checkpoint is a stage: a run's own directory may be
    called stage-1 and hold a trainer's checkpoint."""
    X, y = _data()
    run = tmp_path / "stage-1"
    kw: dict[str, Any] = dict(random_state=3, max_epochs=4, batch_size=32)
    BinaryClassifier(**kw).fit(X, y, callbacks=[Checkpoint(run, every=2), StopAt(2)])
    assert check_checkpoint_dir(run, resume=True) == "epoch 2"
    resumed = Checkpoint(run, every=2, resume=True)
    BinaryClassifier(**kw).fit(X, y, callbacks=[resumed])
    assert resumed.resumed_epoch == 2


def test_cli_resume_refuses_another_reading_of_the_rows(
    tmp_path: Path,
    csv_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The memory budget decides whether rows stream and how (chunks, shuffle buffer, the
    held-out share kept): a run resumed under another budget trained another model
    without a word; it is refused, and the same budget resumes."""
    out = tmp_path / "model"
    streamed = ["--stream", "--memory-budget", "4kB", "--checkpoint-every", "2"]
    monkeypatch.setattr(cli_model, "training_callbacks", lambda output: [SendSigint(3)])
    assert _train(capsys, csv_file, out, *streamed)[0] == 130
    monkeypatch.undo()
    larger = ["--stream", "--memory-budget", "1MB", "--checkpoint-every", "2"]
    code, err = _train(capsys, csv_file, out, *larger, "--resume")
    assert code == 2 and "cannot resume: the checkpointed run read its rows otherwise" in err
    assert "rows streamed" in err and "now rows held in memory" in err
    assert "--memory-budget" in err and not out.exists()
    code, err = _train(capsys, csv_file, out, *streamed, "--resume")
    assert code == 0, err


def test_the_part_a_run_continues_is_the_one_written_last(tmp_path: Path) -> None:
    """Cross-fitted members do not train in the order of their parts' numbers (the
    packs of one stage, then the next): the part in progress is the one written last,
    which --resume names ("resuming from epoch 16" named part 11-4 while 6-2 trained)."""
    from steadyclf.train.checkpoint_files import INDEX_FILE, latest_checkpoint

    root = tmp_path / "model.checkpoint"
    for age, name in enumerate(["part-11-4", "part-3-0", "part-6-2"]):  # oldest first
        (root / name).mkdir(parents=True)
        (root / name / INDEX_FILE).write_text("{}")
        os.utime(root / name / INDEX_FILE, ns=(10**18 + age * 10**9,) * 2)
    assert latest_checkpoint(root) == root / "part-6-2"

"""Model and checkpoint files that cannot attack steadyclf (see SECURITY.md).

- Loading never unpickles: a pickle payload planted under any file name a model directory
  or a checkpoint uses is refused (or ignored) and never runs.
- model.json is checked against its schema and the weights: a tampered shape or value is
  a ModelFileError, before any allocation it could inflate.
- Outputs are never half-written: a writer failing midway leaves no partial file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch

import steadyclf
from steadyclf import BinaryClassifier, ModelFileError
from steadyclf.cli import main
from steadyclf.persistence import refresh_checksum
from steadyclf.train.checkpoint import INDEX_FILE as CHECKPOINT_INDEX
from steadyclf.train.checkpoint import Checkpoint, read_checkpoint
from steadyclf.train.trainer import StopTraining, Trainer


def _frame(n: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(50.0, 10.0, size=n)
    city = rng.choice(["Oslo", "Rome"], size=n)
    return pd.DataFrame({"x": x, "city": city, "y": np.where(x > 50, "yes", "no")})


#: One model with a hold-out and no race of embeddings: its checkpoint is a single
#: top-level directory (small data otherwise cross-fits members, and a race keeps each
#: candidate, each in its own part-* subdirectory).
SINGLE_MODEL: dict[str, Any] = {
    "random_state": 0,
    "max_epochs": 5,
    "validation_fraction": 0.1,
    "numeric_embedding": "none",
}


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.csv"
    _frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, data_csv: Path) -> Path:
    """A model directory as the CLI writes it (model files, history.csv, training.png)."""
    out = tmp_path_factory.mktemp("models") / "model"
    args = ["train", str(data_csv), "--target", "y", "--out", str(out), "--max-epochs", "5"]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("checkpoints") / "run"
    frame = _frame()

    class StopAt2:
        def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
            if trainer.epoch == 2:
                raise StopTraining

    BinaryClassifier(**SINGLE_MODEL).fit(
        frame[["x", "city"]], frame["y"], callbacks=[Checkpoint(root), StopAt2()]
    )
    return root


# -- pickle payloads --------------------------------------------------------------------------
class _Payload:
    """Unpickling this creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Path]]:
        return (Path.touch, (self.marker,))


def _payloads(marker: Path, tmp: Path) -> dict[str, bytes]:
    """The same payload as a raw pickle and as a torch.save (zip + pickle) file."""
    raw = pickle.dumps(_Payload(marker))
    torch_file = tmp / "payload.pt"
    torch.save({"weights": _Payload(marker)}, torch_file)
    blobs = {"pickle": raw, "torch.save": torch_file.read_bytes()}
    torch_file.unlink()
    # Sanity: each payload does run when unpickled.
    pickle.loads(raw)
    assert marker.exists()
    marker.unlink()
    return blobs


def _model_files(model_dir: Path) -> list[str]:
    names = sorted(p.name for p in model_dir.iterdir())
    assert {"model.json", "model.safetensors", "history.csv", "training.png"} <= set(names)
    return names


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_pickle_planted_in_a_model_never_runs(
    tmp_path: Path, model_dir: Path, data_csv: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    payload = _payloads(marker, tmp_path)[kind]
    for name in _model_files(model_dir):
        planted = tmp_path / f"model-{name}"
        shutil.copytree(model_dir, planted)
        (planted / name).write_bytes(payload)
        # Every file is checked against the checksums in model.json (only hashed, never
        # parsed, unless it is model.json or the weights).
        with pytest.raises(ModelFileError, match=re.escape(name)):
            steadyclf.load(planted)
        code = main(["predict", str(planted), str(data_csv), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert "Traceback" not in err
        assert not marker.exists(), f"unpickled {name}"


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
def test_pickle_planted_in_a_checkpoint_never_runs(
    tmp_path: Path, checkpoint_dir: Path, kind: str
) -> None:
    marker = tmp_path / "pwned"
    payload = _payloads(marker, tmp_path)[kind]
    names = sorted(p.name for p in checkpoint_dir.iterdir())
    assert CHECKPOINT_INDEX in names and any(n.endswith(".safetensors") for n in names)
    frame = _frame()
    for name in names:
        planted = tmp_path / f"run-{name}"
        shutil.copytree(checkpoint_dir, planted)
        (planted / name).write_bytes(payload)
        with pytest.raises(ModelFileError, match="checkpoint"):
            read_checkpoint(planted)
        with pytest.raises(ModelFileError):
            BinaryClassifier(**SINGLE_MODEL).fit(
                frame[["x", "city"]], frame["y"], callbacks=[Checkpoint(planted, resume=True)]
            )
        assert not marker.exists(), f"unpickled {name}"


def test_nothing_is_unpickled_on_the_way(
    tmp_path: Path,
    model_dir: Path,
    checkpoint_dir: Path,
    data_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Valid files load with every unpickling entry point disabled."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("something tried to unpickle")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")]:
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert steadyclf.load(model_dir).n_iter_ > 0
    assert read_checkpoint(checkpoint_dir).epoch == 2
    frame = _frame()
    BinaryClassifier(**SINGLE_MODEL).fit(
        frame[["x", "city"]], frame["y"], callbacks=[Checkpoint(checkpoint_dir, resume=True)]
    )
    assert main(["predict", str(model_dir), str(data_csv), "--out", str(tmp_path / "p.csv")]) == 0


# -- model.json is validated against its schema and the weights -------------------------------
def _tampered(model_dir: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    copy = tmp_path / "tampered"
    shutil.copytree(model_dir, copy)
    index = json.loads((copy / "model.json").read_text())
    edit(index)
    (copy / "model.json").write_text(json.dumps(index))
    refresh_checksum(copy, files=False)  # re-signed: each field's check must refuse the edit
    return copy


def _set(*path: Any) -> Callable[[dict[str, Any]], None]:
    *keys, value = path

    def edit(index: dict[str, Any]) -> None:
        node = index
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return edit


TAMPERED_FIELDS = [
    (_set("format_version", "1"), "format_version"),
    (_set("format_version", 99), "upgrade steadyclf"),
    (_set("format", "something-else"), "not a steadyclf model"),
    (_set("architecture", "hidden", [-5]), "hidden"),
    (_set("architecture", "hidden", "64"), "hidden"),
    (_set("architecture", "hidden", [65]), r"bodies\.0\.\d\.weight"),
    (_set("architecture", "n_numeric", 2), "encoder"),
    (_set("architecture", "activation", "os.system"), "activation"),
    (_set("architecture", "batchnorm", "yes"), "batchnorm"),
    (_set("architecture", "vocab_sizes", [5]), r"vocab|bodies\.0\.\d\.weight"),
    (_set("classes", "values", [0, 1, 2]), "2 classes"),
    (_set("classes", "dtype", "<U999999999999"), "corrupted"),
    (_set("threshold", "0.5"), "threshold"),
    (_set("threshold", 7.0), "threshold"),
    (_set("parameters", "lr", -1), "lr"),
    (_set("parameters", "hidden", [8]), "hidden"),
    (_set("n_features_in", -3), "n_features_in"),
    (_set("feature_names_in", ["a"]), "feature_names_in"),
    (_set("weights", "file", "../../etc/passwd"), "weights file"),
    (_set("weights", "sha256", "0" * 64), "checksum"),
    (lambda index: index["schema"]["columns"][0].update(role="evil"), "role"),
    (lambda index: index.pop("training"), "training"),
    (lambda index: index.clear(), "not a steadyclf model"),
]


@pytest.mark.parametrize(("edit", "match"), TAMPERED_FIELDS)
def test_tampered_model_json_is_a_clear_error(
    tmp_path: Path, model_dir: Path, edit: Callable[[dict[str, Any]], None], match: str
) -> None:
    with pytest.raises(ModelFileError, match=match):
        steadyclf.load(_tampered(model_dir, tmp_path, edit))


def _rewrite_weights(model_dir: Path, tmp_path: Path, change: Callable[[dict], None]) -> Path:
    """Change the tensors and record the new checksum, as a careful attacker would."""
    copy = tmp_path / "tampered"
    shutil.copytree(model_dir, copy)
    state = safetensors.torch.load_file(copy / "model.safetensors")
    change(state)
    blob = safetensors.torch.save(state)
    (copy / "model.safetensors").write_bytes(blob)
    index = json.loads((copy / "model.json").read_text())
    index["weights"]["sha256"] = hashlib.sha256(blob).hexdigest()
    (copy / "model.json").write_text(json.dumps(index))
    refresh_checksum(copy)
    return copy


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda s: s.update({"bodies.0.0.weight": s["bodies.0.0.weight"][:, :1].clone()}),
            "shape|expected",
        ),
        (lambda s: s.update({"bodies.0.0.weight": s["bodies.0.0.weight"].float()}), "float32"),
        (lambda s: s.pop("bodies.0.0.bias"), "lacks tensor"),
        (lambda s: s.update({"extra": torch.zeros(3)}), "unexpected tensor"),
        (lambda s: s["bodies.0.0.weight"].fill_(float("nan")), "NaN or infinite"),
        (lambda s: s["encoder.normalize.scale"].fill_(0.0), "not positive"),
        (lambda s: s.update({"encoder.impute.missing_columns": torch.tensor([5])}), "expected"),
    ],
)
def test_tampered_weights_are_a_clear_error(
    tmp_path: Path, model_dir: Path, change: Callable[[dict], None], match: str
) -> None:
    with pytest.raises(ModelFileError, match=match):
        steadyclf.load(_rewrite_weights(model_dir, tmp_path, change))


_BOUNDED_LOAD = """
import json, resource, shutil, sys
from pathlib import Path
import steadyclf
from steadyclf import ModelFileError
from steadyclf.persistence import refresh_checksum
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # a 10**9-unit layer needs 40 GB
source, tmp = Path(sys.argv[1]), Path(sys.argv[2])
for n, (key, value) in enumerate(
    [("hidden", [10**9]), ("n_numeric", 10**12), ("n_missing", 10**11), ("vocab_sizes", [10**12])]
):
    copy = tmp / f"huge{n}"
    shutil.copytree(source, copy)
    index = json.loads((copy / "model.json").read_text())
    index["architecture"][key] = value
    (copy / "model.json").write_text(json.dumps(index))
    refresh_checksum(copy)
    try:
        steadyclf.load(copy)
    except ModelFileError as exc:
        print("refused", key, str(exc)[:60])
    else:
        sys.exit(f"loaded a model with {key}={value}")
"""


def test_tampered_sizes_are_refused_before_any_large_allocation(
    tmp_path: Path, model_dir: Path
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _BOUNDED_LOAD, str(model_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("refused") == 4


def test_links_and_devices_are_not_model_files(tmp_path: Path, model_dir: Path) -> None:
    copy = tmp_path / "linked"
    shutil.copytree(model_dir, copy)
    (copy / "model.safetensors").unlink()
    (copy / "model.safetensors").symlink_to("/dev/zero")  # would never finish reading
    with pytest.raises(ModelFileError, match=r"model\.safetensors"):
        steadyclf.load(copy)


def test_links_to_devices_are_not_checkpoint_files(tmp_path: Path, checkpoint_dir: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(checkpoint_dir, copy)
    weights = next(copy.glob("checkpoint-*.safetensors"))
    weights.unlink()
    weights.symlink_to("/dev/zero")
    with pytest.raises(ModelFileError, match="missing"):
        read_checkpoint(copy)


def test_oversized_model_json_is_refused_unread(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from steadyclf import persistence

    monkeypatch.setattr(persistence, "MAX_INDEX_BYTES", 100)
    with pytest.raises(ModelFileError, match="larger than"):
        steadyclf.load(model_dir)


# -- no output is ever half-written -----------------------------------------------------------
def _fail_midway(monkeypatch: pytest.MonkeyPatch, cls: Any, method: str) -> None:
    """Make ``cls.method`` write part of its output, then fail as a full disk would."""
    original = getattr(cls, method)

    def half(self: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        if hasattr(path, "write"):  # an open file (predictions are written batch by batch)
            path.write("half a file")
        else:
            Path(path).write_text("half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cls, method, half)
    assert original is not half


def test_failed_prediction_write_leaves_no_partial_file(
    tmp_path: Path,
    model_dir: Path,
    data_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.csv").write_text("probability,label\n0.5,yes\n")
    _fail_midway(monkeypatch, pd.DataFrame, "to_csv")
    for name in ("old.csv", "new.csv"):
        code = main(["predict", str(model_dir), str(data_csv), "--out", str(out / name)])
        err = capsys.readouterr().err
        assert code == 2 and "No space left" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["old.csv"]
    assert (out / "old.csv").read_text() == "probability,label\n0.5,yes\n"


def test_failed_model_write_leaves_no_partial_directory(
    tmp_path: Path,
    data_csv: Path,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = tmp_path / "old"
    shutil.copytree(model_dir, old)
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    _fail_midway(monkeypatch, pd.DataFrame, "to_csv")  # history.csv, inside the staging dir
    for out in (old, tmp_path / "new"):
        args = ["train", str(data_csv), "--target", "y", "--out", str(out), "--max-epochs", "3"]
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2 and "No space left" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before


# -- tampered checkpoints ---------------------------------------------------------------------
def _tampered_checkpoint(
    checkpoint_dir: Path,
    tmp_path: Path,
    *,
    index: Callable[[dict[str, Any]], None] | None = None,
    tensors: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(checkpoint_dir, copy)
    data = json.loads((copy / CHECKPOINT_INDEX).read_text())
    if tensors is not None:
        weights = copy / data["weights_file"]
        state = safetensors.torch.load_file(weights)
        tensors(state)
        blob = safetensors.torch.save(state)
        weights.write_bytes(blob)
        data["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    if index is not None:
        index(data)
    (copy / CHECKPOINT_INDEX).write_text(json.dumps(data))
    refresh_checksum(copy, files=False)
    return copy


def _module_key(state: dict[str, torch.Tensor]) -> str:
    return next(k for k in state if k.startswith("state.module.") and k.endswith("weight"))


def _moment_key(state: dict[str, torch.Tensor]) -> str:
    return next(k for k in state if k.startswith("state.optimizer.") and "exp_avg" in k)


@pytest.mark.parametrize(
    ("index", "tensors", "match"),
    [
        (_set("format_version", 99), None, "format version"),
        (_set("format", "steadyclf-model"), None, "not a steadyclf checkpoint"),
        (_set("weights_file", "../../model.safetensors"), None, "invalid weights file"),
        (_set("weights_sha256", "0" * 64), None, "SHA-256"),
        (_set("state", "epoch", 99), None, "one row per epoch|past max_epochs"),
        (_set("state", "epoch", "2"), None, "wrong type"),
        (_set("state", "history", []), None, "one row per epoch"),
        (_set("config", "lr", 1.0), None, "setting 'lr'"),
        (lambda d: d["state"].pop("optimizer"), None, "keys"),
        (lambda d: d["state"].update(extra=1), None, "keys"),
        (
            lambda d: d["state"]["optimizer"]["param_groups"][0].update(lr={"$float": "nan"}),
            None,
            "learning rate",
        ),
        (lambda d: d["state"].update(epoch={"$tensor": "nope"}), None, "not in the file"),
        (lambda d: d["state"].update(epoch={"$evil": 1}), None, "unknown marker"),
        (
            None,
            lambda s: s.update({_module_key(s): s[_module_key(s)][:1].clone()}),
            "shape",
        ),
        (None, lambda s: s[_module_key(s)].fill_(float("inf")), "non-finite"),
        (
            None,
            lambda s: s.update({_moment_key(s): torch.zeros(1, 1)}),
            "the parameter has shape",
        ),
        (None, lambda s: s.update({"state.generator": torch.zeros(3, dtype=torch.uint8)}), "shape"),
    ],
)
def test_tampered_checkpoints_are_a_clear_error(
    tmp_path: Path,
    checkpoint_dir: Path,
    index: Callable[[dict[str, Any]], None] | None,
    tensors: Callable[[dict[str, torch.Tensor]], None] | None,
    match: str,
) -> None:
    tampered = _tampered_checkpoint(checkpoint_dir, tmp_path, index=index, tensors=tensors)
    frame = _frame()
    with pytest.raises((ModelFileError, steadyclf.ParameterError), match=match):
        BinaryClassifier(**SINGLE_MODEL).fit(
            frame[["x", "city"]], frame["y"], callbacks=[Checkpoint(tampered, resume=True)]
        )

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch

import steadyclf
from steadyclf import BinaryClassifier, ModelFileError, NotFittedError, policy
from steadyclf.persistence import (
    FORMAT_VERSION,
    INDEX_FILE,
    WEIGHTS_FILE,
    read_index,
    refresh_checksum,
    save,
)


def _mixed(n: int = 160, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = rng.normal(100.0, 20.0, size=n)
    city = rng.choice(["Oslo", "Rome", "Lima"], size=n)
    frame = pd.DataFrame({"x": x, "city": city, "flag": rng.integers(0, 2, size=n) == 1})
    frame.loc[::7, "x"] = np.nan
    frame.loc[::11, "city"] = None
    y = pd.Series(np.where((x > 100) | (city == "Rome"), "sick", "healthy"))
    return frame, y


@pytest.fixture(scope="module")
def fitted() -> tuple[BinaryClassifier, pd.DataFrame]:
    X, y = _mixed()
    clf = BinaryClassifier(
        hidden=(8, 4), max_epochs=15, random_state=0, threshold_metric="f1", positive="sick"
    ).fit(X, y)
    return clf, X


@pytest.fixture
def model_dir(tmp_path: Path, fitted: tuple[BinaryClassifier, pd.DataFrame]) -> Path:
    return fitted[0].save(tmp_path / "model")


@pytest.mark.filterwarnings("ignore::steadyclf.UnseenLevelsWarning")  # Paris, on purpose
def test_round_trip_gives_identical_predictions(
    model_dir: Path, fitted: tuple[BinaryClassifier, pd.DataFrame]
) -> None:
    clf, X = fitted
    again = steadyclf.load(model_dir)
    new_rows = X.assign(city=["Paris"] * len(X))  # unseen level
    for data in (X, new_rows):
        np.testing.assert_array_equal(again.predict_proba(data), clf.predict_proba(data))
        np.testing.assert_array_equal(again.predict(data), clf.predict(data))
    assert again.classes_.tolist() == ["healthy", "sick"] == clf.classes_.tolist()
    assert again.threshold_ == clf.threshold_
    assert again.get_params() == clf.get_params()
    assert again.encoder_.to_dict() == clf.encoder_.to_dict()
    assert again.history_ == clf.history_ and again.n_iter_ == clf.n_iter_
    assert again.validation_metrics_ == clf.validation_metrics_
    assert again.weight_decay_ == clf.weight_decay_
    assert again.validation_fraction_ == clf.validation_fraction_
    assert list(again.feature_names_in_) == ["x", "city", "flag"]


@pytest.mark.parametrize(
    "params",
    [{"normalize": "batchnorm", "activation": "tanh"}, {"hidden": ()}, {"normalize": "none"}],
)
def test_other_layouts_round_trip(tmp_path: Path, params: dict) -> None:
    X, y = _mixed(80)
    clf = BinaryClassifier(max_epochs=3, random_state=1, **params).fit(X, y.eq("sick"))
    again = steadyclf.load(clf.save(tmp_path / "m"))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    assert again.classes_.dtype == np.bool_


def test_model_json_holds_the_schema(model_dir: Path) -> None:
    index = json.loads((model_dir / INDEX_FILE).read_text())
    assert index["format_version"] == FORMAT_VERSION
    roles = {c["name"]: c["role"] for c in index["schema"]["columns"]}
    assert roles == {"x": "numeric", "city": "categorical", "flag": "boolean"}
    assert index["classes"]["values"] == ["healthy", "sick"]
    assert set(index["versions"]) >= {"steadyclf", "torch", "safetensors", "python"}
    assert index["parameters"]["hidden"] == [8, 4]
    assert 0.0 <= index["threshold"] <= 1.0
    assert sorted(p.name for p in model_dir.iterdir()) == [INDEX_FILE, WEIGHTS_FILE]


def test_loading_never_unpickles(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling during load")

    for module, name in [
        (pickle, "load"),
        (pickle, "loads"),
        (pickle, "Unpickler"),
        (torch, "load"),
    ]:
        monkeypatch.setattr(module, name, refuse)
    assert steadyclf.load(model_dir).n_iter_ > 0


def test_save_replaces_an_old_model_atomically(
    tmp_path: Path, fitted: tuple[BinaryClassifier, pd.DataFrame]
) -> None:
    clf, _ = fitted
    target = tmp_path / "model"
    clf.save(target)
    (target / "stale.txt").write_text("from the old model")
    clf.save(target)
    assert sorted(p.name for p in target.iterdir()) == [INDEX_FILE, WEIGHTS_FILE]
    assert _beside(tmp_path) == ["model"]  # and its one version, nothing else


def test_failed_save_leaves_the_old_model(
    tmp_path: Path, fitted: tuple[BinaryClassifier, pd.DataFrame]
) -> None:
    clf, _ = fitted
    target = clf.save(tmp_path / "model")
    before = (target / INDEX_FILE).read_text()

    def crash(staging: Path) -> None:
        (staging / "half.csv").write_text("x\n")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save(clf.to_state(), target, extra_files=crash)
    assert (target / INDEX_FILE).read_text() == before
    assert _beside(tmp_path) == ["model"]
    with pytest.raises(KeyboardInterrupt):
        save(clf.to_state(), tmp_path / "new", extra_files=crash)
    assert _beside(tmp_path) == ["model"]


def _beside(folder: Path) -> list[str]:
    """What ``folder`` holds, a model directory's current version (a link's target) aside."""
    current = {os.readlink(p) for p in folder.iterdir() if p.is_symlink()}
    return sorted(p.name for p in folder.iterdir() if p.name not in current)


def test_save_refuses_to_clobber_other_files(
    tmp_path: Path, fitted: tuple[BinaryClassifier, pd.DataFrame]
) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ModelFileError, match="is not a steadyclf model directory"):
        fitted[0].save(tmp_path / "notes")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelFileError, match="is a file"):
        fitted[0].save(tmp_path / "file")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_save_before_fit() -> None:
    with pytest.raises(NotFittedError):
        BinaryClassifier().save("never")


def _rewrite_weights(model_dir: Path, state: dict[str, torch.Tensor]) -> None:
    blob = safetensors.torch.save(state)
    (model_dir / WEIGHTS_FILE).write_bytes(blob)
    index = json.loads((model_dir / INDEX_FILE).read_text())
    index["weights"]["sha256"] = hashlib.sha256(blob).hexdigest()
    (model_dir / INDEX_FILE).write_text(json.dumps(index))
    refresh_checksum(model_dir)


def _edit_index(model_dir: Path, **changes: object) -> None:
    index = json.loads((model_dir / INDEX_FILE).read_text())
    index.update(changes)
    (model_dir / INDEX_FILE).write_text(json.dumps(index))
    refresh_checksum(model_dir)


def test_missing_pieces(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(ModelFileError, match="no model directory at"):
        steadyclf.load(tmp_path / "nowhere")
    (model_dir / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelFileError, match=f"is missing {WEIGHTS_FILE}; it is incomplete"):
        steadyclf.load(model_dir)
    (model_dir / INDEX_FILE).unlink()
    # Neither file: not a model at all (it said "incomplete, save the model again").
    with pytest.raises(ModelFileError, match=f"holds no model \\(no {INDEX_FILE}, no "):
        steadyclf.load(model_dir)
    (model_dir / "notes.txt").write_text("not a model")
    with pytest.raises(ModelFileError, match="holds no model"):
        steadyclf.load(model_dir)


def test_a_copy_of_the_link_alone_says_how_to_copy_a_model(tmp_path: Path, model_dir: Path) -> None:
    # `cp -r model elsewhere/` copies the link, not the version it names: the copy dangles.
    assert model_dir.is_symlink()
    copy = tmp_path / "elsewhere" / model_dir.name
    copy.parent.mkdir()
    os.symlink(os.readlink(model_dir), copy)
    with pytest.raises(
        ModelFileError, match=r"which is not there: .* \(cp -rL, tar -h, rsync -L\)"
    ):
        steadyclf.load(copy)


def test_corrupted_files(model_dir: Path) -> None:
    weights = model_dir / WEIGHTS_FILE
    blob = bytearray(weights.read_bytes())
    blob[-3] ^= 0xFF  # one weight changes: only the checksum can tell
    weights.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match="does not match the checksum"):
        steadyclf.load(model_dir)
    weights.write_bytes(b"\x00" * 16)
    _rewrite_sha(model_dir)
    with pytest.raises(ModelFileError, match="is not a valid safetensors file"):
        steadyclf.load(model_dir)
    (model_dir / INDEX_FILE).write_text("{not json")
    with pytest.raises(ModelFileError, match="is corrupted \\(not valid JSON"):
        steadyclf.load(model_dir)


def _rewrite_sha(model_dir: Path) -> None:
    digest = hashlib.sha256((model_dir / WEIGHTS_FILE).read_bytes()).hexdigest()
    index = json.loads((model_dir / INDEX_FILE).read_text())
    index["weights"]["sha256"] = digest
    (model_dir / INDEX_FILE).write_text(json.dumps(index))
    refresh_checksum(model_dir)


def test_tampered_shapes_and_fields(model_dir: Path) -> None:
    state = safetensors.torch.load((model_dir / WEIGHTS_FILE).read_bytes())
    state["bodies.0.0.weight"] = torch.zeros(8, 3, dtype=torch.float64)
    _rewrite_weights(model_dir, state)
    with pytest.raises(ModelFileError, match=r"tensor 'bodies.0.0.weight' .* expected float64"):
        steadyclf.load(model_dir)
    del state["bodies.0.0.weight"]
    _rewrite_weights(model_dir, state)
    with pytest.raises(ModelFileError, match=r"lacks tensor 'bodies\.0\.0\.weight'"):
        steadyclf.load(model_dir)


def test_tampered_index_fields(
    tmp_path: Path, fitted: tuple[BinaryClassifier, pd.DataFrame]
) -> None:
    clf = fitted[0]
    for changes, match in [
        ({"threshold": 7.0}, "threshold 7.0 is not in"),
        ({"classes": {"values": ["a"], "dtype": "<U1"}}, "2 classes, not 1"),
        ({"classes": {"values": ["a", "b"], "dtype": "<M8[ns]"}}, "dtype .* not allowed"),
        ({"schema": {"columns": []}}, "no usable feature column"),
        ({"training": {}}, "missing or invalid field"),
        ({"format": "something-else"}, "is not a steadyclf model file"),
        ({"format_version": "1"}, "is corrupted \\(format_version '1'\\)"),
    ]:
        target = clf.save(tmp_path / f"m{len(list(tmp_path.iterdir()))}")
        _edit_index(target, **changes)
        with pytest.raises(ModelFileError, match=match):
            steadyclf.load(target)


def test_tampered_training_number(model_dir: Path) -> None:
    training = json.loads((model_dir / INDEX_FILE).read_text())["training"]
    _edit_index(model_dir, training={**training, "weight_decay": "x"})
    with pytest.raises(ModelFileError, match="weight_decay is 'x'"):
        steadyclf.load(model_dir)


def test_future_format_version(model_dir: Path) -> None:
    _edit_index(model_dir, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ModelFileError, match=rf"format version {FORMAT_VERSION + 1} .*upgrade"):
        read_index(model_dir)


def test_version_1_model_files_still_load(
    tmp_path: Path, fitted: tuple[BinaryClassifier, pd.DataFrame], monkeypatch
) -> None:
    X, y = _mixed()
    # Version 1 knew no members, cross-fitted or trained together on a hold-out.
    monkeypatch.setattr(policy, "LARGE_DATA_MEMBERS", 1)
    one_body = {"validation_fraction": 0.1}
    clf = BinaryClassifier(normalize="standardize", max_epochs=5, random_state=0, **one_body)
    clf.fit(X, y)
    model_dir = clf.save(tmp_path / "model")
    # What version 1 wrote: one body, the scaling's centre named mean, no clip, no members.
    state = safetensors.torch.load((model_dir / WEIGHTS_FILE).read_bytes())
    old = {
        k.replace("encoder.normalize.center", "encoder.normalize.mean").replace(
            "bodies.0.", "body."
        ): v
        for k, v in state.items()
    }
    _rewrite_weights(model_dir, old)
    index = json.loads((model_dir / INDEX_FILE).read_text())
    for key in ("clip", "n_members"):
        del index["architecture"][key]
    del index["calibration"]
    index["format_version"] = 1
    del index["checksum"], index["files"]  # as version 1 wrote it
    (model_dir / INDEX_FILE).write_text(json.dumps(index))
    again = steadyclf.load(model_dir)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_calibration_and_column_facts_are_saved(
    tmp_path: Path, fitted: tuple[BinaryClassifier, pd.DataFrame]
) -> None:
    clf, data = fitted
    clf.calibration_ = {"method": "temperature", "scale": 0.5, "bias": 0.25}
    try:
        again = steadyclf.load(clf.save(tmp_path / "m"))
        assert again.calibration_ == clf.calibration_
        np.testing.assert_array_equal(again.predict_proba(data), clf.predict_proba(data))
        raw = again._logits(*again._raw_inputs(data, reset=False))
        np.testing.assert_allclose(again.decision_function(data), 0.5 * raw + 0.25, rtol=1e-15)
    finally:
        clf.calibration_ = {"method": "none", "scale": 1.0, "bias": 0.0}
    info = {c.name: c for c in again.encoder_.columns_}
    assert all(c.n_rows == len(data) for c in info.values() if c.role != "dropped")


def test_stall_warnings_are_saved_with_the_model(tmp_path: Path) -> None:
    """A loaded model said its fit went well (warnings_ came back empty): `steadyclf
    report` of a saved model never showed the stall warnings its fit raised."""
    from steadyclf.datasets import heart_rate

    X, y = heart_rate(n=300, random_state=0)
    clf = BinaryClassifier(
        normalize="none", activation="sigmoid", lr=1e-3, hidden=(10,), max_epochs=30,
        validation_fraction=0.2, random_state=0,
    ).fit(X, y)  # fmt: skip
    assert clf.warnings_  # raw heart rates saturate the sigmoid units
    target = clf.save(tmp_path / "model")
    assert steadyclf.load(target).warnings_ == clf.warnings_
    training = json.loads((target / INDEX_FILE).read_text())["training"]
    for bad in ("no", [{"message": ["nested"]}], [1]):
        _edit_index(target, training={**training, "warnings": bad})
        with pytest.raises(ModelFileError, match="training warnings are not a list"):
            steadyclf.load(target)
    del training["warnings"]  # models saved before warnings were kept
    _edit_index(target, training=training)
    assert steadyclf.load(target).warnings_ == []

"""numeric_embedding: PLR embeddings of the continuous numeric inputs, on small data by
default ('auto'), everywhere with 'periodic', never with 'none'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import steadyclf
from steadyclf import BinaryClassifier, policy
from steadyclf.cli import main
from steadyclf.exceptions import ParameterError
from steadyclf.policy import EMBEDDED_MIN_VALUES
from steadyclf.schema.summary import MAX_CODE_VALUES, MAX_COUNTED_VALUES, NumericTally


def _waves(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A label that flips eight times along one column (many thresholds), 10 % noise, a
    0/1 column, a count of 6 values, a text column and missing values."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    y = ((np.sin(4 * x) > 0) ^ (rng.random(n) < 0.1)).astype(int)
    frame = pd.DataFrame(
        {
            "x": x,
            "flag": rng.random(n) < 0.5,
            "z": rng.normal(size=n),
            "count": rng.integers(0, 6, n),
            "c": rng.choice(["u", "v"], n),
        }
    )
    frame.loc[rng.choice(n, 50, replace=False), "z"] = np.nan
    return frame, y


def test_small_data_embeds_the_continuous_columns_by_default() -> None:
    X, y = _waves(3000, seed=0)
    train, test = slice(0, 2000), slice(2000, None)
    plain = BinaryClassifier(random_state=0, numeric_embedding="none").fit(X[train], y[train])
    default = BinaryClassifier(random_state=0).fit(X[train], y[train])
    assert default.plan_["small_data"] and default.numeric_embedding_ == "periodic"
    # Chosen by out-of-fold log loss over the network without embeddings.
    losses = default.data_["cross_fit"]["numeric_embedding"]
    assert set(losses) == {"periodic", "none"} and losses["periodic"] < losses["none"]
    # x and z (continuous) are embedded; the boolean and the 6-valued count are not.
    assert [c.name for c in default.encoder_.numeric_infos][:4] == ["x", "flag", "z", "count"]
    assert default.module_.arch.periodic == (0, 2) and plain.module_.arch.periodic == ()
    assert (
        plain.numeric_embedding_ == "none" and "numeric_embedding" not in plain.data_["cross_fit"]
    )
    auc_plain = roc_auc_score(y[test], plain.predict_proba(X[test])[:, 1])
    auc_default = roc_auc_score(y[test], default.predict_proba(X[test])[:, 1])
    # Measured 0.70 and 0.91: the plain 64-unit network cannot bend eight times in a
    # few hundred full-batch steps; the embeddings give it the waves directly.
    assert auc_default > 0.85 and auc_default > auc_plain + 0.1


def test_the_folds_choose_no_embeddings_where_they_do_not_pay() -> None:
    # A noisy linear label, ten continuous columns of which nine are noise.
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 10)), columns=[f"x{i}" for i in range(10)])
    y = (X["x0"] + rng.normal(scale=2, size=300) > 0).astype(int)
    default = BinaryClassifier(random_state=0).fit(X, y)
    losses = default.data_["cross_fit"]["numeric_embedding"]
    # Measured 0.611 with embeddings, 0.604 without: more than float noise apart.
    assert losses["none"] < losses["periodic"] - 0.002
    assert default.numeric_embedding_ == "none" and default.module_.arch.periodic == ()
    # The network kept is the one numeric_embedding='none' trains: same draws, same folds.
    plain = BinaryClassifier(random_state=0, numeric_embedding="none").fit(X, y)
    np.testing.assert_allclose(default.predict_proba(X), plain.predict_proba(X), atol=1e-12)
    assert default.weight_decay_ == plain.weight_decay_
    # The estimates differ only by what choosing among more candidates (with and without
    # embeddings) is corrected for (evaluation.selection_bias).
    for metric, sign in (("roc_auc", 1), ("log_loss", -1)):
        raw = [
            m[metric] + sign * m["selection_bias"][metric]
            for m in (default.validation_metrics_, plain.validation_metrics_)
        ]
        assert raw[0] == pytest.approx(raw[1], abs=1e-12)
    bias = (default.validation_metrics_, plain.validation_metrics_)
    assert bias[0]["selection_bias"]["log_loss"] >= bias[1]["selection_bias"]["log_loss"]


def test_auto_races_embeddings_on_held_out_data_up_to_a_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    X, y = _waves(600, seed=3)
    # Mini-batches (not the small-data mode), up to RACE_EMBEDDINGS_MAX_ROWS training
    # rows: both networks race their first epochs on the held-out rows and the one of
    # lower validation loss goes on.
    raced = BinaryClassifier(random_state=0, batch_size=128, max_epochs=2).fit(X, y)
    assert not raced.plan_["small_data"]
    assert list(raced.plan_["numeric_embeddings"]) == ["none", "periodic"]
    losses = raced.data_["race"]["validation_loss"]
    assert {"none", "periodic"} <= set(losses)  # (+codes: the other reading)
    assert raced.numeric_embedding_ == min(losses, key=losses.__getitem__).split("+")[0]
    assert bool(raced.module_.arch.periodic) == (raced.numeric_embedding_ == "periodic")
    # Above the limit: the plain network (the fused step), no embeddings raced.
    monkeypatch.setattr(policy, "RACE_EMBEDDINGS_MAX_ROWS", raced.plan_["n_train"] - 1)
    batched = BinaryClassifier(random_state=0, batch_size=128, max_epochs=2).fit(X, y)
    assert not batched.plan_["small_data"] and batched.numeric_embedding_ == "none"
    raced_first = batched.data_.get("race", {}).get("validation_loss", {})  # codes only
    assert batched.module_.arch.periodic == () and "periodic" not in raced_first
    # 'batchnorm' scales inside the network: 'auto' resolves to none, without an error.
    bn = BinaryClassifier(random_state=0, normalize="batchnorm", max_epochs=2).fit(X, y)
    assert bn.numeric_embedding_ == "none" and bn.module_.arch.periodic == ()
    # 'periodic' asks for them on any data.
    forced = BinaryClassifier(
        random_state=0, numeric_embedding="periodic", batch_size=128, max_epochs=2
    ).fit(X, y)
    assert forced.numeric_embedding_ == "periodic" and forced.module_.arch.periodic == (0, 2)


def test_distinct_values_are_counted_alike_however_the_rows_are_cut() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    ids = rng.integers(0, 300, n).astype(float)
    ids[ids == 7] = np.nan  # an id column with gaps
    almost = rng.integers(0, 40, n).astype(float)
    almost[-3] = 0.5  # integer-valued but for one late value: capped at 16 after all
    block = np.column_stack(
        [
            rng.integers(0, MAX_COUNTED_VALUES - 1, n).astype(float),  # 15 values
            np.repeat(np.arange(MAX_COUNTED_VALUES), n // MAX_COUNTED_VALUES),  # 16, in runs
            rng.normal(size=n),
            np.where(rng.random(n) < 0.5, np.nan, 3.0),  # one value and gaps
            ids,  # about 300 integers: counted past 16, each with its rows
            almost,
        ]
    )
    assert MAX_COUNTED_VALUES >= EMBEDDED_MIN_VALUES  # the count reaches the threshold
    names = ["a", "b", "c", "d", "ids", "almost"]
    columns = np.arange(len(names), dtype=np.intp)
    whole = NumericTally(names)
    whole.add(columns, block, None)
    n_ids = np.unique(ids[~np.isnan(ids)]).size
    expected = [MAX_COUNTED_VALUES - 1, MAX_COUNTED_VALUES, MAX_COUNTED_VALUES, 1, n_ids, 16]
    assert n_ids > 250 and whole.n_values.tolist() == expected
    assert [v.integer for v in whole.values] == [True, True, False, True, True, False]
    values, counts = np.unique(ids[~np.isnan(ids)], return_counts=True)
    for cut in (1, 7, 250, 1000):
        parts = []
        for start in range(0, n, n // cut):
            part = NumericTally(names)
            part.add(columns, block[start : start + n // cut], None)
            parts.append(part)
        merged = parts[0]
        for part in parts[1:]:
            merged.merge(part)
        assert merged.n_values.tolist() == expected, cut
        assert [v.integer for v in merged.values] == [v.integer for v in whole.values]
        # The rows of every id, exactly: the levels of a reading as a category.
        np.testing.assert_array_equal(merged.values[4].values, values)
        np.testing.assert_array_equal(merged.values[4].counts, counts)


def test_integer_values_are_counted_up_to_a_cap_then_only_more() -> None:
    # An integer dtype (hashed) and integer-valued floats (sorted), past MAX_CODE_VALUES.
    n = MAX_CODE_VALUES + 10
    block = np.arange(n, dtype=np.int64)[::-1].reshape(-1, 1)
    for data in (block, block.astype(float)):
        tally = NumericTally(["id"])
        tally.add(np.zeros(1, dtype=np.intp), data, None)
        assert tally.n_values.tolist() == [MAX_CODE_VALUES + 1]  # "more"
        assert tally.values[0].integer and tally.values[0].values is None
        below = NumericTally(["id"])
        below.add(np.zeros(1, dtype=np.intp), data[: MAX_CODE_VALUES // 2], None)
        rest = NumericTally(["id"])
        rest.add(np.zeros(1, dtype=np.intp), data[MAX_CODE_VALUES // 2 : MAX_CODE_VALUES], None)
        assert below.merge(rest).n_values.tolist() == [MAX_CODE_VALUES]  # exact at the cap


def test_an_embedded_model_predicts_the_same_everywhere(tmp_path: Path) -> None:
    X, y = _waves(1200, seed=1)
    clf = BinaryClassifier(random_state=0).fit(X, y)
    assert clf.module_.arch.periodic
    x_num, x_cat = clf._raw_inputs(X, reset=False)
    with torch.no_grad():
        torch_logits = clf.module_(torch.from_numpy(x_num), torch.from_numpy(x_cat)).double()
    raw = clf._logits(x_num, x_cat)  # the NumPy forward pass predictions go through
    # The fitted module computes in float32 (cos and sin of arguments up to about 20
    # radians: absolute errors near 1e-6), the NumPy pass in float64; parity at float64
    # precision is tests/test_numpy_forward.py's, on the same weights in float64.
    np.testing.assert_allclose(raw, torch_logits.numpy(), rtol=0, atol=1e-4)
    assert np.ptp(raw) > 0.5  # logits that differ, so the comparison means something
    loaded = steadyclf.load(clf.save(tmp_path / "model"))
    assert loaded.numeric_embedding_ == "periodic"
    assert loaded.module_.arch.periodic == clf.module_.arch.periodic
    assert [c.n_values for c in loaded.encoder_.numeric_infos] == [
        c.n_values for c in clf.encoder_.numeric_infos
    ]
    # Both sides run the same NumPy code on the same float64 weights and shapes.
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


@pytest.mark.parametrize("normalize", ["batchnorm", "none"])
def test_embeddings_need_scaled_inputs(normalize: str, capsys: pytest.CaptureFixture[str]) -> None:
    X, y = _waves(100, seed=2)
    with pytest.raises(ParameterError, match="numeric_embedding='periodic' embeds scaled"):
        BinaryClassifier(numeric_embedding="periodic", normalize=normalize).fit(X, y)
    code = main(
        [
            "train",
            "x.csv",
            "--target",
            "y",
            "--out",
            "m",
            "--numeric-embedding",
            "periodic",
            "--normalize",
            normalize,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "needs normalize 'robust' or 'standardize'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_train_says_which_columns_are_embedded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = _waves(300, seed=4)
    X.assign(y=y).to_csv(tmp_path / "waves.csv", index=False)
    args = ["train", str(tmp_path / "waves.csv"), "--target", "y", "--out"]
    assert main([*args, str(tmp_path / "m")]) == 0
    assert "periodic embeddings (continuous inputs): x, z\n" in capsys.readouterr().out
    assert main([*args, str(tmp_path / "n"), "--numeric-embedding", "none"]) == 0
    assert "periodic embeddings" not in capsys.readouterr().out


def test_only_cross_fitting_chooses_embeddings() -> None:
    from steadyclf.policy import numeric_embeddings_for, resolve

    params = BinaryClassifier().get_params()
    small = resolve(params, {0: (300, 0), 1: (200, 0)})
    assert small.folds == 5 and small.numeric_embeddings == ("periodic", "none")
    # Too few positives to cross-fit: nothing to choose with, so none.
    assert resolve(params, {0: (300, 0), 1: (3, 0)}).numeric_embeddings == ("none",)
    # torchrun's small-data mode trains one network on every row: none either.
    together = resolve(params, {0: (300, 0), 1: (200, 0)}, world_size=2)
    assert together.folds == 1 and together.numeric_embeddings == ("none",)
    assert together.weight_decays == (1e-2,)
    assert numeric_embeddings_for({**params, "numeric_embedding": "periodic"}, 1) == ("periodic",)
    assert numeric_embeddings_for({**params, "normalize": "batchnorm"}, 5) == ("none",)


@pytest.mark.parametrize("hidden", [(), (8,), (8, 4)])
def test_periodic_body_computes_the_plain_layers_of_its_concatenation(hidden) -> None:
    # The first layer on the inputs and the embeddings apart: the same logits and
    # gradients as nn.Sequential over the same layers (float64: rounding only).
    from torch import nn

    from steadyclf.nn.modules import PeriodicBody, make_body

    g = torch.Generator().manual_seed(0)
    body = make_body(6, hidden, "relu", batchnorm=False, generator=g, periodic=[0, 2]).double()
    assert type(body) is PeriodicBody
    plain = nn.Sequential(*body)  # the same modules: shared parameters
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    grads = []
    for module in (body, plain):
        out = module(x)
        grads.append((out, torch.autograd.grad(out.square().sum(), list(body.parameters()))))
    (out, grad), (expected, expected_grad) = grads
    assert out.shape == (50, 1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for a, b in zip(grad, expected_grad, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert type(make_body(6, hidden, "relu", batchnorm=False, generator=g)) is nn.Sequential


def test_auto_tries_no_embeddings_where_rows_times_continuous_columns_are_too_many(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from steadyclf.policy import EMBEDDED_AUTO_MAX_VALUES, resolve
    from steadyclf.schema.roles import ColumnInfo

    params = BinaryClassifier().get_params()

    def numbers(n: int) -> list[ColumnInfo]:
        return [ColumnInfo(f"c{i}", "numeric", "float64", n_values=1000) for i in range(n)]

    counts = {0: (300, 0), 1: (200, 0)}  # 500 training rows
    most = EMBEDDED_AUTO_MAX_VALUES // 500  # continuous columns within the limit
    at_limit = resolve(params, counts, numeric_infos=numbers(most))
    assert at_limit.numeric_embeddings == ("periodic", "none")
    wider = resolve(params, counts, numeric_infos=numbers(most + 1))
    assert wider.numeric_embeddings == ("none",)
    # The rows count as much as the columns: the same width on fewer rows is tried.
    fewer = {0: (150, 0), 1: (100, 0)}
    assert resolve(params, fewer, numeric_infos=numbers(most + 1)).numeric_embeddings == (
        "periodic",
        "none",
    )
    # Larger data (mini-batches, a hold-out) races no embeddings either.
    batched = {**params, "batch_size": 128}
    raced = resolve(batched, counts, numeric_infos=numbers(10))
    assert raced.numeric_embeddings == ("none", "periodic")
    too_many = EMBEDDED_AUTO_MAX_VALUES // raced.n_train + 1
    plain = resolve(batched, counts, numeric_infos=numbers(too_many))
    assert plain.numeric_embeddings == ("none",)
    # Asked for, they are trained whatever the width; flags and codes never count.
    forced = {**params, "numeric_embedding": "periodic"}
    assert resolve(forced, counts, numeric_infos=numbers(most + 1)).numeric_embeddings == (
        "periodic",
    )
    flags = [ColumnInfo(f"f{i}", "numeric", "int64", n_values=2) for i in range(most + 1)]
    assert resolve(params, counts, numeric_infos=numbers(3) + flags).numeric_embeddings == (
        "periodic",
        "none",
    )
    # Through a fit: 300 rows x 3 continuous columns over a limit of 899.
    monkeypatch.setattr(policy, "EMBEDDED_AUTO_MAX_VALUES", 3 * 300 - 1)
    X, y = _waves(300, seed=1)
    X["w"] = np.random.default_rng(2).normal(size=len(X))
    clf = BinaryClassifier(random_state=0, max_epochs=5).fit(X, y)
    assert clf.plan_["numeric_embeddings"] == ("none",) and clf.module_.arch.periodic == ()
    assert "numeric_embedding" not in clf.data_["cross_fit"]
    monkeypatch.setattr(policy, "EMBEDDED_AUTO_MAX_VALUES", 3 * 300)
    clf = BinaryClassifier(random_state=0, max_epochs=5).fit(X, y)
    assert clf.plan_["numeric_embeddings"] == ("periodic", "none")

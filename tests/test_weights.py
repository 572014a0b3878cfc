"""Row weights (``sample_weight``, ``--weight COLUMN``) and ``class_weight``.

A weight ``k`` means the row counts ``k`` times (scikit-learn's convention), a weight 0
leaves it out: in the loss, the label totals, the scaling statistics, early stopping,
the metrics, the calibration and the threshold, whether the rows are in memory or read
from files in passes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_classification
from torch import nn

from steadyclf import BinaryClassifier, DataError, ParameterError
from steadyclf.cli import main
from steadyclf.evaluation import binary_metrics
from steadyclf.io.sources import DataSource
from steadyclf.nn.step import FusedMLP
from steadyclf.schema.quantiles import Weighting, exact_quantiles
from steadyclf.schema.split import SplitRule
from steadyclf.train.trainer import TrainConfig, Trainer

#: Full batch, every row trains, a fixed number of epochs: nothing that depends on row
#: positions (hold-out, folds) or on a stopping decision, so that weights and repeated
#: or dropped rows meet the same arithmetic.
PLAIN = dict(
    random_state=0, validation_fraction=0.0, early_stopping=False, max_epochs=60, batch_size=None
)


def _data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Columns on scales from 0.1 to 1000, offsets far from zero."""
    X, y = make_classification(n, 6, n_informative=4, random_state=seed)
    return X * [1, 10, 100, 1e3, 0.1, 5] + [0, 5, -50, 1e4, 0, 1], y


def _proba(clf: BinaryClassifier, X: Any) -> np.ndarray:
    return clf.predict_proba(X)[:, 1]


def _scaling(clf: BinaryClassifier) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    inputs = clf.module_.encoder
    return (
        inputs.impute.median.numpy().copy(),
        inputs.normalize.center.numpy().copy(),
        inputs.normalize.scale.numpy().copy(),
    )


# -- what a weight means ----------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [None, 64])
def test_zero_weights_act_as_dropped_rows(batch_size: int | None) -> None:
    # Rows of weight 0 are left out when the rows are read: the others are the same rows
    # in the same order, in batches of the same shapes, so the same operations run on
    # the same numbers. The tolerance only allows a BLAS that picks kernels by address.
    X, y = _data()
    w = np.random.default_rng(1).integers(0, 4, size=len(y)).astype(float)
    kept = w > 0
    params = {**PLAIN, "batch_size": batch_size, "max_epochs": 20}
    weighted = BinaryClassifier(**params).fit(X, y, sample_weight=w)
    dropped = BinaryClassifier(**params).fit(X[kept], y[kept], sample_weight=w[kept])
    np.testing.assert_allclose(_proba(weighted, X), _proba(dropped, X), rtol=0, atol=1e-12)
    assert weighted.data_["weights"]["zero_weight_rows"] == int((~kept).sum())
    assert weighted.data_["n_rows"] == int(kept.sum())
    # Weights 0 and 1: the rows left are unweighted, as when given no weights.
    ones = BinaryClassifier(**params).fit(X, y, sample_weight=kept.astype(float))
    plain = BinaryClassifier(**params).fit(X[kept], y[kept])
    np.testing.assert_allclose(_proba(ones, X), _proba(plain, X), rtol=0, atol=1e-12)


def test_equal_weights_change_nothing() -> None:
    # Weights that are all equal are dropped (they cannot change a weighted mean): the
    # fit is the unweighted one, operation for operation.
    X, y = _data()
    plain = BinaryClassifier(random_state=0).fit(X, y)
    for c in (1.0, 0.37):
        same = BinaryClassifier(random_state=0).fit(X, y, sample_weight=np.full(len(y), c))
        np.testing.assert_allclose(_proba(same, X), _proba(plain, X), rtol=0, atol=1e-12)
        assert same.data_["weights"]["used"] is False
        assert same.validation_metrics_["roc_auc"] == plain.validation_metrics_["roc_auc"]


@pytest.mark.parametrize("normalize", ["robust", "standardize"])
def test_integer_weights_act_as_repeated_rows(normalize: str) -> None:
    # A row of weight k counts as k rows in the scaling statistics (exact quantiles and
    # means, weighted) and in the full-batch loss (a mean over rows, weighted). What
    # differs is float32 rounding: a gradient summed over k copies of a row against one
    # row times k (about 1e-7 relative per step); 60 Adam steps leave a few 1e-7 in the
    # probabilities here, and 1e-4 leaves room for other CPUs' kernels.
    X, y = _data()
    w = np.random.default_rng(2).integers(0, 4, size=len(y))
    params = {**PLAIN, "normalize": normalize}
    weighted = BinaryClassifier(**params).fit(X, y, sample_weight=w)
    repeated = BinaryClassifier(**params).fit(X.repeat(w, axis=0), y.repeat(w))
    for a, b in zip(_scaling(weighted), _scaling(repeated), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(_proba(weighted, X), _proba(repeated, X), rtol=0, atol=1e-4)
    assert weighted.history_[-1]["train_loss"] == pytest.approx(
        repeated.history_[-1]["train_loss"], rel=1e-4
    )
    # Weights scaled by any factor are the same weights.
    scaled = BinaryClassifier(**params).fit(X, y, sample_weight=0.01 * w)
    for a, b in zip(_scaling(scaled), _scaling(weighted), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_allclose(_proba(scaled, X), _proba(weighted, X), rtol=0, atol=1e-4)


def test_weight_k_on_positives_acts_like_pos_weight() -> None:
    # Weighting every positive by k puts the same k in the loss as pos_weight=k (and the
    # same class prior in the initial bias). The loss's scale differs (weights are scaled
    # to mean 1, pos_weight is not), which Adam does not see but through its eps (1e-8,
    # next to gradients near 1e-3: about 1e-5 relative per step; 1e-5 in the
    # probabilities here) and the weight decay: none here. The scaling statistics do
    # differ (positives count k times in the weighted ones), so the inputs are unscaled
    # (normalize='none', on standardised data) and the probabilities uncalibrated, to
    # compare the losses alone.
    X, y = _data()
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    k = 4.0
    params = {**PLAIN, "normalize": "none", "calibration": "none", "weight_decay": 0.0}
    by_weight = BinaryClassifier(**params).fit(X, y, sample_weight=np.where(y == 1, k, 1.0))
    by_pos_weight = BinaryClassifier(**params, pos_weight=k).fit(X, y)
    np.testing.assert_allclose(_proba(by_weight, X), _proba(by_pos_weight, X), rtol=0, atol=1e-4)
    assert by_weight.module_.bodies[0][0].bias.detach().numpy() == pytest.approx(
        by_pos_weight.module_.bodies[0][0].bias.detach().numpy(), abs=1e-4
    )
    # class_weight={1: k} is the same product of weights, the same loss weights.
    by_class_weight = BinaryClassifier(**params, class_weight={1: k}).fit(X, y)
    np.testing.assert_allclose(_proba(by_weight, X), _proba(by_class_weight, X), atol=1e-12)


def test_class_weight_balanced() -> None:
    X, y = make_classification(600, 5, weights=[0.9], flip_y=0.05, random_state=3)
    n, n1 = len(y), int(y.sum())
    clf = BinaryClassifier(random_state=0, class_weight="balanced").fit(X, y)
    assert clf.plan_["class_weight"] == pytest.approx((n / (2 * (n - n1)), n / (2 * n1)))
    # With row weights, 'balanced' divides sums of weights (a weight k is k rows).
    w = np.where(np.arange(n) % 3 == 0, 2.0, 1.0)
    weighted = BinaryClassifier(random_state=0, class_weight="balanced").fit(X, y, sample_weight=w)
    totals = np.array([w[y == 0].sum(), w[y == 1].sum()])
    assert weighted.plan_["class_weight"] == pytest.approx(tuple(totals.sum() / (2 * totals)))
    # What it is for: the minority class is found more often. The probabilities stay
    # calibrated on the rows as given, and the threshold moves to where the weights put
    # the decision: 1 / (1 + w1 / w0).
    plain = BinaryClassifier(random_state=0).fit(X, y)
    assert clf.predict(X)[y == 1].mean() > plain.predict(X)[y == 1].mean()
    w0, w1 = clf.plan_["class_weight"]
    assert clf.threshold_ == pytest.approx(1 / (1 + w1 / w0))
    assert "class_weight" not in clf.validation_metrics_  # metrics weigh the rows as given


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(class_weight="auto"), "class_weight must be None, 'balanced' or a dict"),
        (dict(class_weight={0: -1.0}), "class_weight must be"),
        (dict(class_weight={0: 1, 1: 2, 2: 3}), "for at most the two classes"),
        (dict(class_weight={"a": 2.0}), "class_weight names 'a', which is not a class"),
        (dict(class_weight="balanced", pos_weight=2.0), "both weight the classes"),
    ],
)
def test_bad_class_weight(params: dict[str, Any], message: str) -> None:
    X, y = _data(60)
    with pytest.raises(ParameterError, match=re.escape(message)):
        BinaryClassifier(**params).fit(X, y)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0, -2.0], "sample_weight is negative at row 1 (-2.0)"),
        ([1.0, np.nan], "sample_weight is missing at row 1 (1 row in all)"),
        ([1.0, np.inf], "sample_weight is infinite at row 1 (inf)"),
        ([1, "x"], "sample_weight is not a number at row 1 ('x')"),
        ([0.0, 0.0], "sample_weight is zero on every row with a label"),
    ],
)
def test_bad_sample_weight_is_a_one_line_data_error(weights: list[Any], message: str) -> None:
    X, y = _data(40)
    w = np.array([*weights, *[1.0] * (len(y) - 2)], dtype=object if "x" in weights else float)
    if "zero" in message:
        w = np.zeros(len(y))
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        BinaryClassifier(max_epochs=2).fit(X, y, sample_weight=w)
    assert "\n" not in str(caught.value)


def test_a_class_of_weight_zero_is_an_absent_class() -> None:
    X, y = _data(40)
    with pytest.raises(DataError, match=r"has one class of positive weight .* every row of class"):
        BinaryClassifier(max_epochs=2).fit(X, y, sample_weight=(y == 1).astype(float))


# -- where the weights go -------------------------------------------------------------------
def test_fused_step_weights_rows_as_autograd_does() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    y = (torch.rand(64, generator=g) > 0.5).float()
    w = torch.rand(64, generator=g) * 3
    for pos_weight in (None, 2.5):
        net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
        fused = FusedMLP.from_module(net, pos_weight)
        assert fused is not None
        fused.forward_backward(x, y, w)
        mine = [p.grad.clone() for p in net.parameters()]  # type: ignore[union-attr]
        net.zero_grad()
        pw = None if pos_weight is None else torch.tensor(pos_weight)
        nn.BCEWithLogitsLoss(weight=w, pos_weight=pw)(net(x).reshape(-1), y).backward()
        for a, p in zip(mine, net.parameters(), strict=True):
            torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-7)


def test_early_stopping_watches_the_weighted_validation_loss() -> None:
    # Validation rows of weight 0 change nothing: the same validation loss, epoch by
    # epoch, and so the same stopping epoch, as without those rows.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=g)
    y = ((x[:, 0] + 0.8 * torch.randn(400, generator=g)) > 0).float()
    w = torch.rand(400, generator=g) + 0.5
    w[300:350] = 0.0
    config = TrainConfig(lr=0.05, max_epochs=200, batch_size=None, patience=5, seed=0)

    def fit(valid: tuple[torch.Tensor, ...]) -> Trainer:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
        return Trainer(net, config).fit((x[:300], y[:300], w[:300]), valid)

    with_zeros = fit((x[300:], y[300:], w[300:]))
    without = fit((x[350:], y[350:], w[350:]))
    assert with_zeros.best_epoch == without.best_epoch and with_zeros.stopped_early
    losses = [r["valid_loss"] for r in with_zeros.history]
    assert losses == pytest.approx([r["valid_loss"] for r in without.history], rel=1e-6)
    # ... and it is the weighted one, not the plain mean over rows.
    unweighted = fit((x[350:], y[350:]))
    assert [r["valid_loss"] for r in unweighted.history][:3] != pytest.approx(losses[:3])


def test_validation_metrics_are_weighted() -> None:
    X, y = _data(2000)
    w = np.random.default_rng(4).integers(0, 5, size=len(y)).astype(float)
    clf = BinaryClassifier(random_state=0, validation_fraction=0.25, max_epochs=30).fit(
        X, y, sample_weight=w
    )
    held = SplitRule(clf.validation_fraction_, 0).mask(0, len(y)) & (w > 0)
    metrics = clf.validation_metrics_
    assert metrics["n"] == int(held.sum())
    assert metrics["sum_of_weights"] == pytest.approx(w[held].sum())
    expected = binary_metrics(y[held], _proba(clf, X[held]), clf.threshold_, w[held])
    for name in ("accuracy", "roc_auc", "pr_auc", "log_loss", "brier", "f1"):
        assert metrics[name] == pytest.approx(expected[name], rel=1e-6), name
    assert metrics["confusion_matrix"] == pytest.approx(expected["confusion_matrix"])
    unweighted = binary_metrics(y[held], _proba(clf, X[held]), clf.threshold_)
    assert metrics["log_loss"] != pytest.approx(unweighted["log_loss"], rel=1e-3)


def test_weighted_exact_quantiles_are_those_of_the_repeated_values(tmp_path: Path) -> None:
    # 100,000 values, more than are collected at once: the radix passes sum weights.
    rng = np.random.default_rng(0)
    n = 100_000
    frame = pd.DataFrame({"x": rng.standard_t(3, n), "w": rng.integers(0, 4, n).astype(float)})
    frame.loc[rng.random(n) < 0.05, "x"] = np.nan
    frame["y"] = 1
    frame.to_parquet(tmp_path / "d.parquet", row_group_size=10_000)
    source = DataSource.open(tmp_path / "d.parquet")
    present = frame["x"].notna() & (frame["w"] > 0)
    mass = float(frame.loc[present, "w"].sum())
    weighting = Weighting("w", 1.0, [int(present.sum())])
    probabilities = [0.05, 0.5, 0.95]
    found = exact_quantiles(
        source, [("x", "numeric")], [mass], probabilities, SplitRule(0.0, 0), budget=1 << 20,
        weight=weighting,
    )  # fmt: skip
    repeated = frame["x"].to_numpy().repeat(frame["w"].to_numpy().astype(int))
    np.testing.assert_array_equal(found[0], np.nanquantile(repeated, probabilities))
    # Units: weights twice as large, with their smallest as one row, are the same weights.
    doubled = Weighting("w", 2.0, weighting.rows)
    frame["w"] *= 2
    frame.to_parquet(tmp_path / "d.parquet", row_group_size=10_000)
    again = exact_quantiles(
        DataSource.open(tmp_path / "d.parquet"), [("x", "numeric")], [mass],
        probabilities, SplitRule(0.0, 0), budget=1 << 20, weight=doubled,
    )  # fmt: skip
    np.testing.assert_array_equal(again, found)


def test_weighted_statistics_of_shards_equal_one_process(tmp_path: Path) -> None:
    # Under torchrun each process summarises its shard: the weight tallies, the weighted
    # means and the weighted quantiles merge to those of one process reading every row.
    from test_streaming import _ThreadGroup

    from steadyclf.schema.columns import ColumnPlan
    from steadyclf.schema.encoder import TabularEncoder
    from steadyclf.schema.summary import summarise

    rng = np.random.default_rng(5)
    n = 3000
    frame = pd.DataFrame({"a": rng.normal(50, 9, n), "b": rng.exponential(3.0, n)})
    frame.loc[rng.random(n) < 0.1, "b"] = np.nan
    frame["y"] = (frame["a"] > 50).astype(int)
    frame["w"] = rng.integers(0, 4, n).astype(float)
    for i, part in enumerate(np.array_split(np.arange(n), 3)):
        frame.iloc[part].to_parquet(tmp_path / f"part-{i}.parquet", row_group_size=250)
    source = DataSource.open(sorted(tmp_path.glob("*.parquet")))
    plan = ColumnPlan.create(source.columns, source.kinds, "y", weight="w")
    split = SplitRule(0.1, 3)

    def statistics(shard: Any, ctx: Any) -> Any:
        summary = summarise(shard, plan, split, budget=10**7, context=ctx)
        names = [c.name for c in TabularEncoder.from_summary(summary).numeric_infos]
        stats = summary.numeric.training_stats(names, weighted=True)
        rows = [int(c) for c in summary.numeric.training_stats(names).count]
        found = exact_quantiles(
            shard, [(c, "numeric") for c in names], list(stats.count), [0.05, 0.5, 0.95],
            split, budget=10**7, context=ctx, weight=Weighting("w", 1.0, rows),
        )  # fmt: skip
        return summary, stats, found

    results = _ThreadGroup(2).run(lambda ctx: statistics(source.shard(ctx.rank, 2), ctx))
    single, stats, found = statistics(source, None)
    train = ~split.mask(0, n) & (frame["w"] > 0).to_numpy()
    for summary, shard_stats, shard_found in results:
        assert summary.weights.labels == single.weights.labels
        assert summary.weights.n_zero == int((frame["w"] == 0).sum())
        np.testing.assert_allclose(shard_stats.mean, stats.mean, rtol=1e-12)
        np.testing.assert_allclose(shard_stats.std, stats.std, rtol=1e-9)
        np.testing.assert_array_equal(shard_found, found)
    for j, name in enumerate(["a", "b"]):
        values = frame.loc[train, name].to_numpy().repeat(frame.loc[train, "w"].astype(int))
        np.testing.assert_allclose(stats.mean[j], np.nanmean(values), rtol=1e-12)
        np.testing.assert_array_equal(found[j], np.nanquantile(values, [0.05, 0.5, 0.95]))


def test_autograd_step_weights_rows_as_the_fused_one() -> None:
    # torchrun and layers the fused step does not know train through autograd.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = (x[:, 0] + 0.5 * torch.randn(256, generator=g) > 0).float()
    w = torch.rand(256, generator=g) * 2

    def fit(fused: bool) -> Trainer:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        config = TrainConfig(lr=0.01, max_epochs=5, batch_size=64, fused=fused, pos_weight=2.0)
        return Trainer(net, config).fit((x, y, w), (x[:64], y[:64], w[:64]))

    fused, autograd = fit(True), fit(False)
    for a, b in zip(fused.history, autograd.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-5)


def test_weights_are_recorded_in_the_model(tmp_path: Path) -> None:
    X, y = _data(200)
    w = np.where(np.arange(len(y)) % 4 == 0, 0.0, 2.0)
    w[1] = 5.0
    clf = BinaryClassifier(random_state=0, max_epochs=20, class_weight={0: 1, 1: 3}).fit(
        X, y, sample_weight=w
    )
    clf.save(tmp_path / "m")
    index = json.loads((tmp_path / "m" / "model.json").read_text())
    facts = index["training"]["data"]["weights"]
    assert facts == {
        "weights": "sample_weight",
        "sum": pytest.approx(w.sum()),
        "min": 2.0,
        "max": 5.0,
        "zero_weight_rows": 50,
        "used": True,
    }
    assert index["parameters"]["class_weight"] == {"0": 1, "1": 3}
    assert index["training"]["plan"]["class_weight"] == [1.0, 3.0]
    loaded = __import__("steadyclf").load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    # The parameters read back (class names as text) fit again the same way.
    again = BinaryClassifier(**loaded.get_params()).fit(X, y, sample_weight=w)
    assert again.plan_["class_weight"] == clf.plan_["class_weight"]


def test_sample_weight_is_not_a_feature() -> None:
    frame = pd.DataFrame({"sample_weight": np.arange(50.0), "x": np.arange(50.0) % 7})
    y = np.arange(50) % 2
    clf = BinaryClassifier(max_epochs=3).fit(frame, y, sample_weight=np.ones(50))
    assert [c.name for c in clf.encoder_.columns_] == ["sample_weight", "x"]  # the user's column


# -- the command line, in memory and streamed ---------------------------------------------------
def _frame(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    X, y = _data(n, seed)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    frame["label"] = np.where(y == 1, "yes", "no")
    frame["w"] = np.random.default_rng(seed).integers(0, 4, n)
    return frame


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


FAST = ["--max-epochs", "15", "--hidden", "8", "--batch-size", "128"]
HELD = ["--validation-fraction", "0.2"]


def test_cli_weight_column_in_memory_and_streamed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = _frame()
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", row_group_size=200)
    summaries = {}
    for name, extra in (
        ("d.csv", []),
        ("d.parquet", ["--stream", "--memory-budget", "100KB"]),
    ):
        out = tmp_path / f"m-{name}"
        code, stdout, stderr = _run(
            capsys, "train", tmp_path / name, "--target", "label", "--weight", "w",
            "--out", out, "--json", *FAST, *HELD, *extra,
        )  # fmt: skip
        assert code == 0, stderr
        summaries[name] = summary = json.loads(stdout)
        assert "w" not in [c["name"] for c in summary["columns"]]  # never a feature
        assert summary["weights"]["zero_weight_rows"] == int((frame["w"] == 0).sum())
        assert summary["weights"]["sum"] == float(frame["w"].sum())
        assert summary["rows"] == int((frame["w"] > 0).sum())
        held = SplitRule(0.2, 0).mask(0, len(frame)) & (frame["w"] > 0).to_numpy()
        assert summary["validation"]["sum_of_weights"] == float(frame["w"][held].sum())
    streamed = summaries["d.parquet"]
    assert streamed["reading"]["streamed"] and not streamed["reading"]["rows_in_memory"]
    # The same rows and weights, read at once or in passes: the same statistics and
    # class totals; the batches are drawn differently, so the models are close, not equal.
    for key in ("plan", "columns"):
        assert streamed[key] == summaries["d.csv"][key], key
    assert streamed["validation"]["roc_auc"] == pytest.approx(
        summaries["d.csv"]["validation"]["roc_auc"], abs=0.02
    )
    # Weighted metrics from evaluate too; the weight column is not read as a feature.
    code, stdout, stderr = _run(
        capsys, "evaluate", tmp_path / "m-d.csv", tmp_path / "d.csv", "--weight", "w", "--json"
    )
    assert code == 0, stderr
    report = json.loads(stdout)["metrics"]
    assert report["sum_of_weights"] == float(frame["w"].sum()) and report["n"] == len(frame)
    # ... and weighted figures (they were drawn unweighted beside weighted metrics).
    figures = {}
    for extra in ((), ("--weight", "w")):
        out = tmp_path / f"evaluation{len(extra)}"
        args = ("evaluate", tmp_path / "m-d.csv", tmp_path / "d.csv", *extra, "--out", out)
        code, _, stderr = _run(capsys, *args)
        assert code == 0, stderr
        figures[extra] = [(out / n).read_bytes() for n in ("roc.png", "calibration.png")]
    assert all(a != b for a, b in zip(*figures.values(), strict=True))
    # A class of no weight has no curves (only the reliability diagram is drawn).
    frame.assign(w=np.where(frame["label"] == frame["label"].iloc[0], 1.0, 0.0)).to_csv(
        tmp_path / "one_class.csv", index=False
    )
    out = tmp_path / "one_class"
    args = ("evaluate", tmp_path / "m-d.csv", tmp_path / "one_class.csv", "--weight", "w")
    code, _, stderr = _run(capsys, *args, "--out", out)
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["calibration.png", "metrics.json"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, r"weight column 'w' is negative at row 7 \(-1(\.0)?\)"),
        (np.nan, r"weight column 'w' is missing at row 7 \(1 row in all\)"),
        ("heavy", r"weight column 'w' is not a number at row 7 \('heavy'\)"),
    ],
)
def test_cli_bad_weights_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: Any, message: str
) -> None:
    frame = _frame(100)
    frame["w"] = frame["w"].astype(object)
    frame.loc[7, "w"] = value
    frame.to_csv(tmp_path / "d.csv", index=False)
    before = sorted(tmp_path.iterdir())
    for extra in ([], ["--stream"]):
        code, stdout, stderr = _run(
            capsys, "train", tmp_path / "d.csv", "--target", "label", "--weight", "w",
            "--out", tmp_path / "m", *extra,
        )  # fmt: skip
        assert code == 2 and stdout == ""
        assert stderr.count("\n") == 1 and stderr.startswith("steadyclf: error: "), stderr
        assert re.search(message, stderr), stderr
        assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weight", "nope"], r"weight column 'nope' is not in the data"),
        (["--weight", "label"], r"weight column 'label' is the target"),
        (["--class-weight", "yes=0"], r"--class-weight must be 'balanced' or CLASS=WEIGHT"),
        (["--class-weight", "yes=2", "--pos-weight", "2"], r"both weight the classes"),
    ],
)
def test_cli_bad_weight_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    _frame(60).to_csv(tmp_path / "d.csv", index=False)
    code, stdout, stderr = _run(
        capsys, "train", tmp_path / "d.csv", "--target", "label", "--out", tmp_path / "m", *extra
    )
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and re.search(message, stderr), stderr


def test_cli_class_weight_by_class_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _frame(300).to_csv(tmp_path / "d.csv", index=False)
    code, stdout, stderr = _run(
        capsys, "train", tmp_path / "d.csv", "--target", "label", "--class-weight", "yes=3",
        "--out", tmp_path / "m", "--json", *FAST,
    )  # fmt: skip
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["plan"]["class_weight"] == [1.0, 3.0]
    assert "w" in [c["name"] for c in summary["columns"]]  # no --weight: a plain column

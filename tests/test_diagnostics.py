import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from steadyclf import BinaryClassifier, ParameterError
from steadyclf.datasets import centred_nonlinear, heart_rate
from steadyclf.doctor import diagnose
from steadyclf.nn.modules import make_body
from steadyclf.train import stall
from steadyclf.train.stall import StallDetector, base_rate_loss, saturated_share
from steadyclf.train.trainer import TrainConfig, Trainer

# The network of the original question: raw inputs, Linear(10) -> sigmoid -> Linear, Adam 1e-3.
ORIGINAL = dict(
    normalize="none",
    activation="sigmoid",
    lr=1e-3,
    hidden=(10,),
    batch_size=None,
    early_stopping=False,
)


# -- doctor ---------------------------------------------------------------------------------
def test_doctor_on_heart_rate_shows_the_offset_and_the_saturation_contrast() -> None:
    report = diagnose(*heart_rate(n=400, random_state=0))
    offset = next(f for f in report.findings if f.kind == "offset")
    assert offset.features == ["HR"]
    assert offset.evidence["mean"] == pytest.approx(92, abs=2)
    assert offset.evidence["std"] == pytest.approx(10, abs=1)
    assert offset.evidence["offset_ratio"] > 5
    assert "normalize='robust'" in offset.fix and offset.why
    sat = report.saturation
    assert sat is not None and sat.activation == "sigmoid" and sat.region == "|z| > 4"
    # Each unit saturates unless its initial weight is below 4 / |HR| (about 6 % of the
    # Glorot range): most of the 10 units do, whatever the seed.
    assert sat.raw_share >= 0.7 and sat.standardized_share < 0.05
    # The gradient reaching the first layer is smaller on raw inputs (orders of magnitude
    # when every unit starts saturated; here a few may not).
    assert sat.raw_grad_preact * 2 < sat.standardized_grad_preact
    text = str(report)
    assert "HR sits far from zero: mean 91.6, std 9.95" in text
    assert f"{100 * sat.raw_share:.1f}%" in text and "0.0%" in text
    assert "\nVerdict: steadyclf's defaults" in text
    assert "offset from zero" in report.verdict
    assert "% of sigmoid" in report.headline


def test_doctor_flags_the_threshold_problem_of_heart_rate() -> None:
    report = diagnose(*heart_rate(n=400, random_state=0))
    sep = next(f for f in report.findings if f.kind == "separates")
    assert sep.evidence["auc"] == pytest.approx(1.0)
    assert sep.evidence["threshold"] == pytest.approx(91, abs=1)
    assert sep.evidence["accuracy"] == 1.0
    assert "leak" in sep.why and "threshold" in sep.fix


def test_doctor_finds_nothing_to_fix_on_centred_data() -> None:
    report = diagnose(*centred_nonlinear(n=300, random_state=0))
    assert report.findings == []
    assert report.headline.startswith("no scale problem")
    assert report.verdict.endswith("nothing to change.")
    assert report.saturation is not None and report.saturation.raw_share < 0.01


def _messy_table() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.1).astype(int)
    frame = pd.DataFrame(
        {
            "tiny": rng.normal(scale=1e-3, size=n),
            "huge": rng.normal(scale=1e3, size=n),
            "same": np.full(n, 7.0),
            "rare": np.r_[np.ones(2), np.zeros(n - 2)] + 0.5,
            "income": rng.lognormal(mean=0, sigma=1.5, size=n),
            "gappy": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),
            "leak": y + rng.normal(scale=0.01, size=n),
            "city": rng.choice(["a", "b", "c"], size=n),
        }
    )
    return frame, y


def test_doctor_findings_name_features_with_numbers_and_fixes() -> None:
    report = diagnose(*_messy_table(), normalize="standardize")
    kinds = {f.kind: f for f in report.findings}
    assert set(kinds) >= {
        "scales",
        "dropped",
        "constant",
        "heavy_tail",
        "missing",
        "imbalance",
        "separates",
    }
    assert kinds["scales"].features == ["huge", "tiny"]
    assert kinds["scales"].evidence["ratio"] > 1e5
    assert kinds["dropped"].features == ["same"] and "constant" in kinds["dropped"].summary
    assert kinds["constant"].features == ["rare"]
    # "leak" is skewed too (two clusters), but that is no tail a log transform would fix.
    assert [f.features for f in report.findings if f.kind == "heavy_tail"] == [["income"]]
    assert "log1p(income)" in kinds["heavy_tail"].fix
    assert kinds["missing"].evidence["missing_share"] == pytest.approx(0.3, abs=0.06)
    assert kinds["imbalance"].evidence["positive_rate"] == pytest.approx(0.1, abs=0.03)
    assert "pos_weight='balanced'" in kinds["imbalance"].fix
    assert kinds["separates"].features == ["leak"]
    for finding in report.findings:
        assert finding.summary and finding.why and finding.fix
    # Findings that need the user's action reach the verdict.
    assert "log-transform income" in report.verdict and "check leak for leakage" in report.verdict
    assert "gappy" not in report.verdict  # imputation handles it: nothing to do
    table = {f.name: f for f in report.features}
    assert table["city"].role == "categorical" and table["city"].n_distinct == 3
    assert table["gappy"].missing_share == pytest.approx(0.3, abs=0.06)


def test_doctor_finds_duplicates_and_contradicting_labels() -> None:
    frame = pd.DataFrame(
        {
            "a": [1.0, 1.0, 2.0, 2.0, 3.0, 4.0, np.nan, np.nan],
            "b": ["x", "x", "y", "y", "z", "z", None, None],
        }
    )
    y = np.array([0, 1, 1, 1, 0, 1, 0, 1])
    kinds = {f.kind: f for f in diagnose(frame, y).findings}
    assert kinds["duplicates"].evidence["duplicate_rows"] == 3
    # Rows missing the same values are identical too.
    assert kinds["contradictions"].evidence == {"rows": 4.0, "groups": 2.0}


def test_doctor_report_is_json() -> None:
    report = diagnose(*_messy_table())
    data = json.loads(json.dumps(report.to_dict()))
    assert data["verdict"] == report.verdict
    assert {f["kind"] for f in data["findings"]} == {f.kind for f in report.findings}
    assert data["saturation"]["activation"] == "sigmoid"
    same = next(f for f in data["features"] if f["name"] == "same")
    assert same["mean"] is None  # dropped columns have no numeric statistics


def test_doctor_refuses_bad_input() -> None:
    X, y = heart_rate(n=50, random_state=0)
    with pytest.raises(ParameterError, match="activation"):
        diagnose(X, y, activation="swish")
    with pytest.raises(ValueError, match="binary"):
        diagnose(X, np.arange(50) % 3)
    with pytest.raises(ValueError, match="missing"):
        diagnose(X, np.r_[np.nan, np.ones(49)])


@pytest.mark.parametrize(
    ("activation", "expected"), [("sigmoid", 0.5), ("tanh", 0.5), ("relu", 0.5)]
)
def test_saturated_share(activation: str, expected: float) -> None:
    if activation == "relu":
        z = torch.tensor([[-1.0, 1.0], [-2.0, -1.0]])  # unit 0 dead on every row
    else:
        big = 5.0 if activation == "sigmoid" else 3.0
        z = torch.tensor([[big, 0.0], [0.1, -big]])
    assert saturated_share(z, activation) == expected


def test_base_rate_loss() -> None:
    assert base_rate_loss(0.5) == pytest.approx(math.log(2))
    p = 0.2
    assert base_rate_loss(p) == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))
    # With pos_weight='balanced' the best constant is 0.5 and the loss is that of a coin.
    assert base_rate_loss(p, (1 - p) / p) == pytest.approx(2 * (1 - p) * math.log(2))


# -- stall detection ------------------------------------------------------------------------
def test_stall_warning_fires_on_the_original_setup() -> None:
    X, y = heart_rate(n=400, random_state=0)
    seen: set[str] = set()
    for seed in (1, 2, 0):  # which units start saturated depends on the initial weights
        fit = BinaryClassifier(random_state=seed, max_epochs=300, **ORIGINAL).fit(X, y)  # type: ignore[arg-type]
        assert {"prior_stall", "saturated_units"} <= {w["kind"] for w in fit.warnings_}
        seen |= {w["kind"] for w in fit.warnings_}
    assert "vanishing_gradient" in seen
    clf = BinaryClassifier(random_state=0, max_epochs=300, **ORIGINAL).fit(X, y)  # type: ignore[arg-type]
    kinds = {w["kind"]: w for w in clf.warnings_}
    assert all(w["epoch"] <= 300 for w in clf.warnings_)
    stall = kinds["prior_stall"]
    assert "base rate" in stall["message"]
    assert stall["cause"] == "inputs not normalised: feature HR has mean 91.6 and std 9.95"
    assert stall["fix"] == "use normalize='robust' (the default) or 'standardize'"
    assert stall["cause"] in stall["message"] and stall["fix"] in stall["message"]
    # The same warnings are in the history, on the epoch they were raised.
    flagged = {k for row in clf.history_ for k in row.get("warnings", [])}
    assert flagged == set(kinds)
    assert all("grad_norm" in row for row in clf.history_)
    row = clf.history_[stall["epoch"] - 1]
    assert "prior_stall" in row["warnings"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [400, 1000])
def test_default_settings_raise_no_warning(seed: int, n: int) -> None:
    X, y = heart_rate(n=n, random_state=seed)
    clf = BinaryClassifier(random_state=seed).fit(X, y)
    assert clf.warnings_ == []
    assert not any("warnings" in row for row in clf.history_)


def test_verbose_prints_the_warning(capsys: pytest.CaptureFixture[str]) -> None:
    X, y = heart_rate(n=200, random_state=0)
    BinaryClassifier(random_state=0, max_epochs=5, verbose=1, **ORIGINAL).fit(X, y)  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert "warning at epoch 1" in err and "use normalize='robust'" in err


def _trainer(body: nn.Module, detector: StallDetector, **config: object) -> Trainer:
    settings: dict = dict(lr=0.01, max_epochs=60, batch_size=None, early_stopping=False)
    settings.update(config)
    return Trainer(body, TrainConfig(**settings, callbacks=(detector,)))


def test_vanishing_gradient_in_a_deep_sigmoid_network() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 3)
    y = (x[:, 0] > 0).float()
    body = make_body(3, (32,) * 8, "sigmoid", batchnorm=False)
    detector = StallDetector(0.5, sample=x)
    _trainer(body, detector, lr=1e-3, max_epochs=3).fit((x, y))
    warning = next(w for w in detector.warnings if w.kind == "vanishing_gradient")
    assert warning.epoch == 1
    assert "activation='relu'" in warning.fix  # inputs are fine: the cause is the network


def test_divergence_is_reported_after_a_roll_back() -> None:
    class BlowUpOnce:
        done = False

        def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
            if not self.done:
                self.done = True
                with torch.no_grad():
                    next(trainer.module.parameters()).fill_(math.nan)

    torch.manual_seed(0)
    x = torch.randn(100, 2)
    y = (x[:, 0] > 0).float()
    detector = StallDetector(0.5)
    config = TrainConfig(
        lr=0.01,
        max_epochs=4,
        batch_size=None,
        early_stopping=False,
        callbacks=(BlowUpOnce(), detector),
    )
    trainer = Trainer(make_body(2, (8,), "relu", batchnorm=False), config).fit((x, y))
    (warning,) = [w for w in detector.warnings if w.kind == "divergence"]
    assert "non-finite" in warning.message and "0.001" in warning.message
    assert trainer.history[warning.epoch - 1]["warnings"] == ["divergence"]


def test_rising_loss_is_divergence() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 2) * 50
    y = (x[:, 0] > 0).float()
    detector = StallDetector(
        0.5, feature_names=["a", "b"], feature_mean=[0, 0], feature_std=[50, 50], normalized=False
    )
    _trainer(make_body(2, (16,), "relu", batchnorm=False), detector, lr=3.0).fit((x, y))
    warning = next(w for w in detector.warnings if w.kind == "divergence")
    assert "rose" in warning.message
    assert "learning rate 3 is too high" in warning.cause
    assert "feature a has mean 0 and std 50" in warning.cause


def test_early_stop_at_the_prior_is_a_stall() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 2)
    y = (torch.rand(200) < 0.5).float()  # no signal at all
    detector = StallDetector(float(y.mean()), sample=x)
    trainer = _trainer(
        make_body(2, (8,), "relu", batchnorm=False), detector, lr=1e-6, early_stopping=True
    ).fit((x, y))
    assert trainer.stopped_early and len(trainer.history) < detector.warmup
    (warning,) = detector.warnings
    assert warning.kind == "prior_stall" and "no signal" in warning.cause
    assert trainer.history[-1]["warnings"] == ["prior_stall"]


def test_saturation_check_leaves_batchnorm_statistics_alone() -> None:
    torch.manual_seed(0)
    body = make_body(2, (4,), "tanh", batchnorm=True)
    before = {k: v.clone() for k, v in body.state_dict().items()}
    found = stall._first_preactivations(body, torch.randn(50, 2) * 100 + 5, None)
    assert found is not None and found[1] == "tanh" and found[0].shape == (50, 4)
    for key, value in body.state_dict().items():
        assert torch.equal(value, before[key]), key


def _survey_table() -> tuple[pd.DataFrame, np.ndarray]:
    """17 columns as a survey has them: years and incomes, codes, gaps in seven columns."""
    rng = np.random.default_rng(3)
    n = 1500
    y = (rng.random(n) < 0.4).astype(int)
    columns: dict[str, object] = {
        "year": rng.integers(1975, 2021, n).astype(float),
        "income": rng.lognormal(10, 1.2, n),
        "wealth": rng.lognormal(11, 1.5, n),
        "age": rng.integers(18, 90, n).astype(float),
        "educ": rng.integers(8, 20, n).astype(float),
        "region": rng.choice(["north", "south", "east", "west"], n),
        "party": rng.choice(["a", "b", "c"], n),
    }
    for j in range(10):
        columns[f"q{j}"] = rng.normal(size=n) + 0.2 * y
    frame = pd.DataFrame(columns)
    for name, share in [("age", 0.02), ("educ", 0.01), ("q0", 0.6), ("q1", 0.3),
                        ("q2", 0.05), ("party", 0.1), ("income", 0.7)]:  # fmt: skip
        frame.loc[rng.random(n) < share, name] = np.nan
    return frame, y


def test_doctor_reports_each_kind_once_with_every_column_and_its_figures() -> None:
    frame, y = _survey_table()
    report = diagnose(frame, y)
    kinds = [f.kind for f in report.findings]
    # One entry per kind: 4 where there was one per column and kind (12); and the integer
    # columns that may be codes (year: 46 values, educ: 12; age's 72 are a quantity's).
    assert sorted(kinds) == ["codes", "heavy_tail", "missing", "offset", "scales"]
    codes = next(f for f in report.findings if f.kind == "codes")
    assert codes.features == ["year", "educ"] and codes.severity == "info"
    missing = next(f for f in report.findings if f.kind == "missing")
    assert set(missing.features) == {"age", "educ", "q0", "q1", "q2", "party", "income"}
    shares = [missing.per_feature[c]["missing_share"] for c in missing.features]
    assert shares == sorted(shares, reverse=True)  # most missing first
    assert missing.per_feature["q0"]["missing_share"] == pytest.approx(0.6, abs=0.05)
    assert missing.summary.startswith("7 columns have missing values: income 7")
    assert "own level" in missing.fix and "median" in missing.fix
    assert "income, q0 are mostly missing" in missing.fix
    offset = next(f for f in report.findings if f.kind == "offset")
    assert set(offset.features) == {"year", "educ"}
    assert offset.per_feature["year"]["mean"] == pytest.approx(1997.5, abs=2)
    text = str(report)
    # The explanation is said once per kind, not once per column.
    assert text.count("networks cannot take NaN") == 1
    assert text.count("weights are initialised for inputs near N(0, 1)") == 1
    findings = text.split("Findings\n")[1].split("\n\n")[0]
    assert len(findings.splitlines()) <= 30  # one screen
    for name in missing.features:
        assert name in findings


def test_heavy_tail_advice_follows_the_models_scaling() -> None:
    from steadyclf.doctor import findings as doctor_findings

    frame, y = _survey_table()
    standardized = diagnose(frame, y, normalize="standardize")
    tail = next(f for f in standardized.findings if f.kind == "heavy_tail")
    assert set(tail.features) == {"wealth", "income"}
    assert "log1p(" in tail.fix and tail.action.startswith("log-transform")
    # The default robust scaling tames tails itself (median, 5-95 % spread, smooth clip):
    # no transform to apply by hand, and the verdict counts the tails as handled.
    assert "robust" in doctor_findings.TAIL_SAFE_SCALINGS
    report = diagnose(frame, y)
    tail = next(f for f in report.findings if f.kind == "heavy_tail")
    assert "log1p" not in tail.fix and tail.fix.startswith("nothing to do")
    assert tail.action == "" and tail.severity == "info"
    assert "heavy tails" in report.verdict and "log-transform" not in report.verdict


def test_scaling_advice_follows_normalize() -> None:
    X, y = heart_rate(n=300, random_state=0)
    raw = diagnose(X, y, normalize="none")
    offset = next(f for f in raw.findings if f.kind == "offset")
    assert offset.fix.startswith("set normalize='robust'")
    assert "use normalize='robust'" in raw.verdict
    default = next(f for f in diagnose(X, y).findings if f.kind == "offset")
    assert default.fix.startswith("nothing to do with normalize='robust' (the default)")
    assert default.action == ""
    with pytest.raises(ParameterError, match="normalize"):
        diagnose(X, y, normalize="robust-ish")


def test_the_race_stopping_its_candidates_is_not_the_end_of_the_run() -> None:
    """The race stops its candidates after a few epochs (``stopped_early``), and the
    detector judges the end of a run still at the base rate a stall; the winner then goes
    on with the same detector. A stall found at the race's stop is dropped when the run
    goes on and learns, not kept from epoch 3; one found at the real end is kept."""
    from types import SimpleNamespace

    base = base_rate_loss(0.5, None)
    module = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))

    def run(detector: StallDetector, history: list, numbers: range, loss: float) -> None:
        trainer = SimpleNamespace(history=history, recoveries=0, module=module)
        trainer.stopped_early = False
        detector.on_train_begin(trainer)  # type: ignore[arg-type]
        for epoch in numbers:
            record = {"epoch": epoch, "train_loss": loss, "lr": 0.01}
            trainer.history.append(record)
            detector.on_epoch_end(trainer, record)  # type: ignore[arg-type]
        trainer.stopped_early = True  # the race's StopTraining, then early stopping
        detector.on_train_end(trainer)  # type: ignore[arg-type]

    for later, kinds in ((0.5, []), (0.999, ["prior_stall"])):
        detector = StallDetector(0.5)
        race: list = []
        run(detector, race, range(1, 4), 0.995 * base)
        assert [w.kind for w in detector.warnings] == ["prior_stall"]
        # The winner goes on from the state the race kept (a copy of its history).
        run(detector, [dict(r) for r in race], range(4, 30), later * base)
        assert [w.kind for w in detector.warnings] == kinds
        if kinds:
            assert "after 29 epochs" in detector.warnings[0].message


@pytest.mark.parametrize("held_out", [None, 0.2], ids=["cross-fitted", "raced"])
def test_verbose_prints_each_warning_of_the_fit_once(
    held_out: float | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each candidate of a choice (weight decays; the race's sides) has its own detector:
    they keep quiet, and the chosen one's warnings are printed (three times before, one
    per weight decay)."""
    X, y = heart_rate(n=300, random_state=0)
    params = {"validation_fraction": held_out} if held_out else {}
    clf = BinaryClassifier(
        normalize="none", activation="sigmoid", lr=1e-3, hidden=(10,), max_epochs=30,
        random_state=0, verbose=1, **params,
    ).fit(X, y)  # fmt: skip
    printed = [line for line in capsys.readouterr().err.splitlines() if "warning at epoch" in line]
    assert clf.warnings_ and len(printed) == len(clf.warnings_)
    for line, warning in zip(printed, clf.warnings_, strict=True):
        assert line.endswith(warning["message"]) and f"epoch {warning['epoch']}:" in line


def test_a_cross_fitted_fit_marks_its_warnings_in_the_history() -> None:
    """history_ rows carry the kinds of the stall warnings raised at their epoch, on small
    data too (the packed members' rows were copies the detector never saw)."""
    X, y = heart_rate(n=300, random_state=0)
    clf = BinaryClassifier(
        normalize="none", activation="sigmoid", lr=1e-3, hidden=(10,), max_epochs=30,
        random_state=0,
    ).fit(X, y)  # fmt: skip
    assert clf.plan_["folds"] > 1 and clf.warnings_
    marked = {
        (r["epoch"], kind)
        for r in clf.history_
        if r["member"] == 0
        for kind in r.get("warnings", [])
    }
    assert {(w["epoch"], w["kind"]) for w in clf.warnings_} <= marked
    assert all("grad_norm" in r for r in clf.history_ if r["member"] == 0)

"""The HTML report: every section, every column, pictures inline with alt text and their
numbers in tables, nothing fetched from anywhere. (tests/test_report_browser.py renders it
in a real browser.)"""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steadyclf import BinaryClassifier, SteadyclfError
from steadyclf.cli import main
from steadyclf.report import build_report, render_report, write_report

SECTIONS = [
    "data",
    "training",
    "metrics",
    "roc",
    "precision-recall",
    "calibration",
    "confusion",
    "importance",
    "schema",
    "drift",
]


def report_table(n: int, seed: int, *, drifted: bool = False) -> pd.DataFrame:
    """Numbers on odd scales with gaps, categoricals, an ID column, a yes/no label."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "patient_id": [f"p{seed}-{i}" for i in range(n)],
            "heart_rate": rng.normal(92, 10, n),
            "income": rng.lognormal(10, 1, n),
            "ward": rng.choice(["north", "south", "east"], n),
            "smoker": rng.choice([True, False], n),
            "noise": rng.normal(size=n),
        }
    )
    frame.loc[rng.random(n) < 0.1, "income"] = np.nan
    if drifted:
        frame["ward"] = np.where(rng.random(n) < 0.3, "annex", frame["ward"])
    logit = 0.25 * (frame["heart_rate"] - 92) + np.where(frame["ward"] == "north", 1.0, -0.5)
    frame["outcome"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "sick", "well")
    return frame


@pytest.fixture(scope="module")
def fitted() -> tuple[BinaryClassifier, pd.DataFrame]:
    train = report_table(1_200, 0)
    clf = BinaryClassifier(random_state=0, hidden=(16,), validation_fraction=0.25)
    clf.fit(train.drop(columns="outcome"), train["outcome"])
    return clf, report_table(400, 1, drifted=True)


@pytest.fixture(scope="module")
def page(fitted: tuple[BinaryClassifier, pd.DataFrame]) -> str:
    clf, test = fitted
    context = build_report(
        clf, test.drop(columns="outcome"), test["outcome"], data_name="test.csv", n_repeats=3
    )
    return render_report(context)


def _pictures(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<img src="([^"]*)" alt="([^"]*)">', page)


def test_every_section_and_every_column_is_there(
    page: str, fitted: tuple[BinaryClassifier, pd.DataFrame]
) -> None:
    clf, _ = fitted
    for section in SECTIONS:
        assert f'<h2 id="{section}">' in page and f'href="#{section}"' in page
    for column in clf.feature_names_in_:
        assert f'<th scope="row">{column}</th>' in page  # in the schema table at least
    assert "patient_id" in page and "ID-like" in page  # dropped, with the reason
    assert "Not used by the model (dropped in training): patient_id" in page
    # The drift of the test rows: a new ward level.
    assert "differ from the training data" in page and "&#39;annex&#39;" in page


def test_pictures_are_inline_svg_with_alt_text_and_their_numbers_in_tables(page: str) -> None:
    pictures = _pictures(page)
    assert len(pictures) == 6  # training, ROC, PR, calibration, confusion, importance
    for src, alt in pictures:
        assert src.startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(src.split(",", 1)[1]).decode("utf-8")
        assert "<svg" in svg and "</svg>" in svg
        assert len(alt) > 60  # says what the picture shows, and where its numbers are
    tables = re.findall(r"<caption>(.*?)</caption>", page)
    for caption in ("ROC curve (area", "Precision-recall curve", "Reliability by bin",
                    "Rows: true class", "Columns ranked by importance", "Training history"):  # fmt: skip
        assert any(c.startswith(caption) for c in tables), caption
    roc = page.split("<caption>ROC curve")[1].split("</table>")[0]
    assert roc.count("<tr>") == 7  # header + the six false-positive rates
    bins = page.split("<caption>Reliability by bin")[1].split("</table>")[0]
    assert bins.count("<tr>") == 11


def test_nothing_is_fetched_from_anywhere(page: str) -> None:
    without_pictures = re.sub(r'src="data:[^"]*"', 'src=""', page)
    assert not re.search(r"https?://", without_pictures)
    assert "<script" not in page and "@import" not in page and "url(" not in page
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert attribute.startswith(("data:", "#")), attribute
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_the_report_is_written_atomically(
    tmp_path: Path, fitted: tuple[BinaryClassifier, pd.DataFrame]
) -> None:
    clf, test = fitted
    path = write_report(clf, test.drop(columns="outcome"), test["outcome"], tmp_path / "r.html",
                        n_repeats=2)  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    assert path.read_text().startswith("<!DOCTYPE html>")


def test_bad_input_and_a_missing_template_library(
    monkeypatch: pytest.MonkeyPatch, fitted: tuple[BinaryClassifier, pd.DataFrame]
) -> None:
    clf, test = fitted
    X, y = test.drop(columns="outcome"), test["outcome"]
    with pytest.raises(SteadyclfError, match="both classes"):
        build_report(clf, X[y == "sick"], y[y == "sick"])
    with pytest.raises(SteadyclfError, match="missing column 'ward'"):
        build_report(clf, X.drop(columns="ward"), y)
    monkeypatch.setitem(sys.modules, "jinja2", None)
    with pytest.raises(SteadyclfError, match=r"pip install 'steadyclf\[report\]'"):
        render_report({})


def test_cli_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report_table(900, 2).to_csv(tmp_path / "train.csv", index=False)
    report_table(300, 3).to_csv(tmp_path / "test.csv", index=False)
    model = tmp_path / "model"
    assert main(["train", str(tmp_path / "train.csv"), "--target", "outcome", "--out",
                 str(model), "--hidden", "8", "--quiet"]) == 0  # fmt: skip
    out = tmp_path / "report.html"
    code = main(["report", str(model), str(tmp_path / "test.csv"), "--out", str(out), "--json",
                 "--repeats", "2"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["out"] == str(out) and out.stat().st_size == summary["bytes"]
    # Small data: cross-fitted members, Platt scaling on their out-of-fold logits.
    assert summary["highlights"]["calibration"] == "platt"
    assert "heart_rate" in out.read_text()
    code = main(
        ["report", str(model), str(tmp_path / "test.csv"), "--out", str(tmp_path / "r.pdf")]
    )
    assert code == 2 and "--out must be an .html file" in capsys.readouterr().err


def test_the_training_section_of_cross_fitted_members() -> None:
    """Small data's members each have their own epochs: the caption says so (not "over 137
    epochs"), and the table of every epoch says whose epoch each row is."""
    from steadyclf.report import _training

    train = report_table(300, 2)
    clf = BinaryClassifier(random_state=0, hidden=(8,), numeric_embedding="none")
    clf.fit(train.drop(columns="outcome"), train["outcome"])
    members = sorted({r["member"] for r in clf.history_})
    assert members == list(range(clf.plan_["folds"])) and len(members) > 1
    section = _training(clf)
    caption = section["picture"]["alt"]
    assert f"Training curves of {len(members)} members" in caption
    assert f"over {len(clf.history_)} epochs" not in caption
    assert section["columns"][:2] == ["member", "epoch"]
    assert [row[0] for row in section["history"]] == [r["member"] for r in clf.history_]
    facts = dict(section["facts"])
    assert facts["cross-fitted members"] == len(members)
    assert facts["median best epoch"] == clf.best_epoch_ and "best epoch" not in facts
    assert section["validation_name"] == "out-of-fold"  # no rows were held out


def test_a_held_out_fit_reports_validation_numbers(
    fitted: tuple[BinaryClassifier, pd.DataFrame], page: str
) -> None:
    from steadyclf.report import _training

    section = _training(fitted[0])
    assert section["validation_name"] == "validation"
    assert "best epoch" in dict(section["facts"]) and "cross-fitted members" not in page
    assert '<th scope="row">validation roc auc</th>' in page

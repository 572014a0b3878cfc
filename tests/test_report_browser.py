"""The HTML report in a real browser: headless Chromium loads it without a console error,
decodes and draws every picture, and shows every section and every column.

CI always runs it (``.ci/run`` installs Debian's ``chromium`` and ``chromium-driver``);
on a machine without them it is skipped, saying what to install.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import find_browser, render
from test_report import SECTIONS, report_table

from steadyclf import BinaryClassifier
from steadyclf.report import write_report

FOUND = find_browser()
pytestmark = pytest.mark.skipif(
    isinstance(FOUND, str), reason=f"no browser to render the report in: {FOUND}"
)

HEADINGS = [
    "Data and the doctor's findings",
    "Training",
    "Metrics at the threshold",
    "ROC curve",
    "Precision-recall curve",
    "Calibration",
    "Confusion matrix",
    "Column importance",
    "Schema",
    "Drift from the training data",
]


@pytest.mark.slow
def test_the_report_renders_in_chromium(tmp_path: Path) -> None:
    assert len(HEADINGS) == len(SECTIONS)
    train, test = report_table(1_200, 0), report_table(400, 1, drifted=True)
    clf = BinaryClassifier(random_state=0, hidden=(16,), validation_fraction=0.25)
    clf.fit(train.drop(columns="outcome"), train["outcome"])
    page = write_report(
        clf, test.drop(columns="outcome"), test["outcome"], tmp_path / "report.html", n_repeats=2
    )
    shown = render(page, screenshot=tmp_path / "report.png")
    assert shown.errors == [], shown.errors  # no SEVERE console entry (CSP, decoding, ...)
    assert shown.title.startswith("steadyclf report")
    for heading in HEADINGS:
        assert heading in shown.headings, heading
    assert len(shown.pictures) == 6
    for picture in shown.pictures:
        assert picture["decoded"], picture
        assert picture["width"] > 100 and picture["height"] > 100
        assert len(picture["alt"]) > 60
    for column in train.columns.drop("outcome"):
        assert column in shown.text, column
    assert shown.screenshot is not None
    png = shown.screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000

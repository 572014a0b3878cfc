"""Column names and levels come from the data: each output format escapes them its own
way (issue 22, item 7). Markdown: a ``|``, a newline or ``<b>`` never moves a drift
table's figures or becomes markup; terminal: control characters are shown, not acted
on; HTML: the report's template engine escapes every value."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from steadyclf import BinaryClassifier
from steadyclf.cli.common import Output
from steadyclf.drift import DriftReport
from steadyclf.importance import ColumnImportance, Importance
from steadyclf.io.escape import markdown, terminal
from steadyclf.schema.encoder import TabularEncoder

CAT = "c|a|t"
ODD = "new\nline <b>x</b> \\ `y`"
ANSI = "red\x1b[31m\u202e"
#: A cell separator: a '|' without a backslash before it.
_CELL = re.compile(r"(?<!\\)\|")


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 400
    train = pd.DataFrame(
        {
            CAT: rng.choice(["p|q", "r", "s"], n),
            ODD: rng.normal(size=n),
            ANSI: rng.normal(size=n),
            "plain": rng.normal(size=n),
        }
    )
    new = train.copy()
    new.loc[: n // 2, CAT] = "t|u\nv"  # half the rows: a level never seen
    new.loc[:99, ODD] = np.nan  # a quarter missing
    new[ANSI] = new[ANSI] + 50.0  # all out of range
    return train, new


def test_markdown_drift_table_keeps_every_figure_in_its_column() -> None:
    train, new = _frames()
    report = DriftReport(TabularEncoder.fit(train, categorical=[CAT]))
    report.update(new)
    text = report.to_markdown()
    lines = text.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("| column")))
    rows = lines[header + 2 :]
    columns = report.columns()
    assert len(rows) == len(columns)  # no name or level broke a row in two
    for row, column in zip(rows, columns, strict=True):
        cells = [c.strip() for c in _CELL.split(row)[1:-1]]
        assert len(cells) == 5, row
        # The name cell, unescaped, is the name (a newline shown as \n).
        assert re.sub(r"\\(.)", r"\1", cells[0]) == terminal(column["column"])
        assert cells[1] == column["role"]
        missing = f"{column['training_missing_share']:.1%} -> {column['missing_share']:.1%}"
        assert cells[2] == missing
        assert ("unseen levels" in cells[3]) == (column["column"] == CAT)
        assert ("outside range" in cells[3]) == (column["column"] != CAT)
        assert bool(cells[4]) == column["flagged"]
    flagged = {c["column"] for c in report.flagged()}
    assert flagged == {CAT, ODD, ANSI}
    assert "<b>" not in text and "\x1b" not in text and "\u202e" not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain name", "plain name"),
        ("c|a|t", r"c\|a\|t"),
        ("a\nb", r"a\\nb"),
        ("<b>x</b>", r"\<b\>x\<\/b\>".replace(r"\/", "/")),
        ("back\\slash", r"back\\slash"),
        ("*not bold* [no link](x)", r"\*not bold\* \[no link\]\(x\)"),
    ],
)
def test_markdown_escapes_what_markdown_would_read(text: str, expected: str) -> None:
    assert markdown(text) == expected


def test_terminal_output_shows_control_characters() -> None:
    assert terminal(ANSI) == "red\\x1b[31m\\u202e"
    assert terminal("naïve café") == "naïve café"  # printable text as it is
    found = Importance(
        scoring="roc_auc",
        baseline=0.9,
        n_rows=100,
        n_repeats=5,
        columns=[
            ColumnImportance(ODD, "numeric", 0.2, 0.01, 0.18, 0.22, 1),
            ColumnImportance(ANSI, "numeric", 0.1, 0.01, 0.08, 0.12, 2),
        ],
        unused=["gone\r"],
    )
    lines = str(found).splitlines()
    assert len(lines) == 2 + 2 + 1  # title, header, two columns, the unused ones
    assert "\x1b" not in str(found) and "\r" not in str(found)
    assert lines[2].split()[1] == "new\\nline" and lines[-1].endswith("gone\\r")


def test_cli_messages_are_one_line_whatever_the_column_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = Output(as_json=False, quiet=False)
    output.warn(f"column {ANSI} differs")
    output.note(f"ignoring {ODD}")
    output.result({}, lambda: f"first line\ncolumn {ANSI}")
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "steadyclf: warning: column red\\x1b[31m\\u202e differs",
        "steadyclf: note: ignoring new\\nline <b>x</b> \\ `y`",
    ]
    assert captured.out.splitlines() == ["first line", "column red\\x1b[31m\\u202e"]


def test_the_html_report_escapes_names_and_levels() -> None:
    from steadyclf.report import build_report, render_report

    train, _ = _frames()
    rng = np.random.default_rng(1)
    y = (train[ODD] + rng.normal(size=len(train)) > 0).astype(int)
    clf = BinaryClassifier(
        hidden=(4,),
        max_epochs=5,
        random_state=0,
        weight_decay=1e-2,
        numeric_embedding="none",
        validation_fraction=0.2,
        categorical=[CAT],
    ).fit(train, y)
    context = build_report(clf, train, y, n_repeats=1, max_rows=100, progress=False)
    page = render_report(context)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page

"""Does new data look like the training data? Per-column drift from the model's schema.

A model keeps, for every input column, what training saw (:class:`~steadyclf.schema.roles.
ColumnInfo`): the range of each numeric column, the kept levels of each categorical one
and how many training rows held other levels, and the missing values out of the rows.
:class:`DriftReport` compares new rows with that, column by column:

- **numeric and datetime columns**: the share of present values outside the training
  range ``[low, high]`` (the network extrapolates there);
- **categorical columns**: the share of present values outside the model's vocabulary
  (levels never seen, or too rare to keep), against the same share in training,
  ``n_other / (n_rows - n_missing)``; the most frequent such values are listed;
- **every column**: the missing rate now against the missing rate in training.

It counts batch by batch (:meth:`DriftReport.update`) and reports merge
(:meth:`DriftReport.merge`), so it works the same on a DataFrame, on a file predicted in
chunks and across processes. A column is **flagged** when

- its missing rate moved by more than :data:`MISSING_CHANGE` (5 percentage points);
- more than :data:`OUT_OF_RANGE_SHARE` (1 %) of its values fall outside the training
  range, or more than ``4 / (training values + 1)`` on a small training set (new values
  from the training distribution land outside the range of n training values with
  probability about ``2 / (n + 1)``);
- the share of its values outside the vocabulary grew by more than
  :data:`UNSEEN_CHANGE` (5 percentage points).

These are thresholds for a person to look, not tests: a flag says "this column differs
from what the model learnt from", and the report gives the numbers. :meth:`write` saves
the report as JSON or, for a ``.md`` file, Markdown, atomically.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .exceptions import ParameterError
from .io.atomic import atomic_write
from .io.escape import markdown
from .io.jsonable import to_jsonable
from .schema.encoder import TabularEncoder
from .schema.roles import ColumnInfo
from .schema.values import category_key

__all__ = [
    "MISSING_CHANGE",
    "OUT_OF_RANGE_SHARE",
    "UNSEEN_CHANGE",
    "DriftReport",
    "drift_format",
]

#: Flag a column whose missing rate moved by more than this (absolute share).
MISSING_CHANGE = 0.05
#: Flag a numeric column with more than this share of values outside the training range.
OUT_OF_RANGE_SHARE = 0.01
#: Flag a categorical column whose share of values outside the vocabulary grew by more.
UNSEEN_CHANGE = 0.05
#: Distinct out-of-vocabulary values counted per column (the most frequent are listed).
MAX_TRACKED_LEVELS = 1000
#: Out-of-vocabulary values listed per column in the report.
LISTED_LEVELS = 5
FORMATS = {".json": "json", ".md": "markdown", ".markdown": "markdown"}


def drift_format(path: str | os.PathLike[str]) -> str:
    """``'json'`` or ``'markdown'`` by the suffix of ``path``; an error for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ParameterError(f"a drift report is written as .json or .md; got {str(path)!r}")
    return FORMATS[suffix]


@dataclass
class _Counts:
    """What one column of the new rows looked like, mergeable."""

    rows: int = 0
    missing: int = 0
    below: int = 0  # numeric: values under the training minimum
    above: int = 0  # numeric: values over the training maximum
    other: int = 0  # categorical: values outside the vocabulary
    levels: Counter[str] = field(default_factory=Counter)

    def merge(self, other: _Counts) -> None:
        self.rows += other.rows
        self.missing += other.missing
        self.below += other.below
        self.above += other.above
        self.other += other.other
        for level, count in other.levels.items():
            if level in self.levels or len(self.levels) < MAX_TRACKED_LEVELS:
                self.levels[level] += count


class DriftReport:
    """Per-column drift of new rows against the training data, accumulated batch by batch.

    Parameters
    ----------
    encoder : TabularEncoder
        The model's schema (``clf.encoder_``).

    Examples
    --------
    >>> import pandas as pd
    >>> from steadyclf.schema.encoder import TabularEncoder
    >>> train = pd.DataFrame({"age": [float(a) for a in range(20, 60, 2)], "city": ["a", "b"] * 10})
    >>> report = DriftReport(TabularEncoder.fit(train))
    >>> report.update(pd.DataFrame({"age": [35.0, 90.0, 41.0, 28.0], "city": ["a", "z", "b", "a"]}))
    >>> [(c["column"], c["flagged"]) for c in report.columns()]
    [('age', True), ('city', True)]
    >>> report.flagged()[0]["reasons"]
    ['25.0% of values outside the training range [20, 58] (0.0% below, 25.0% above)']
    """

    def __init__(self, encoder: TabularEncoder) -> None:
        self.encoder = encoder
        self._numeric = encoder.numeric_infos
        # A column read as a category too (integer codes) is one entry: its range as a
        # number, its unseen values as a category.
        self._categorical = [c for c in encoder.categorical_columns if c.role == "categorical"]
        self._counts = {c.name: _Counts() for c in (*self._numeric, *self._categorical)}
        self.n_rows = 0

    def update(self, table: pd.DataFrame | pa.RecordBatch | pa.Table) -> None:
        """Count the rows of ``table`` (a DataFrame or an Arrow batch)."""
        frame = table.to_pandas() if isinstance(table, (pa.RecordBatch, pa.Table)) else table
        x_num, x_cat = self.encoder.transform(frame, copy=False)
        n = len(frame)
        self.n_rows += n
        for j, info in enumerate(self._numeric):
            column = np.asarray(x_num[:, j], dtype=np.float64)
            missing = np.isnan(column)
            batch = _Counts(rows=n, missing=int(missing.sum()))
            if info.role != "boolean" and info.low is not None and info.high is not None:
                with np.errstate(invalid="ignore"):
                    batch.below = int((column < info.low).sum())
                    batch.above = int((column > info.high).sum())
            self._counts[info.name].merge(batch)
        numbers = {c.name: j for j, c in enumerate(self._numeric)}
        for j, info in enumerate(self.encoder.categorical_columns):
            codes = x_cat[:, j]
            other = codes == 1  # code 1: a level outside the vocabulary
            if info.read_as_category:  # rows and missing values counted as a number
                batch = _Counts(other=int(other.sum()))
                values = x_num[other, numbers[info.name]]
                batch.levels = Counter(category_key(v) for v in values.tolist())
            else:
                batch = _Counts(rows=n, missing=int((codes == 0).sum()), other=int(other.sum()))
                if batch.other:
                    values = frame[info.name].to_numpy()[other]
                    batch.levels = Counter(category_key(v) for v in values)
            self._counts[info.name].merge(batch)

    def merge(self, other: DriftReport) -> DriftReport:
        """Add the counts of ``other`` (same model) in place; return ``self``."""
        if [c.name for c in other.encoder.columns_] != [c.name for c in self.encoder.columns_]:
            raise ParameterError("drift reports of different models cannot be merged")
        self.n_rows += other.n_rows
        for name, counts in other._counts.items():
            self._counts[name].merge(counts)
        return self

    # -- results -----------------------------------------------------------------------------
    def columns(self) -> list[dict[str, Any]]:
        """One entry per input column: the figures now and in training, and the flags."""
        return [self._column(info) for info in (*self._numeric, *self._categorical)]

    def _column(self, info: ColumnInfo) -> dict[str, Any]:
        counts = self._counts[info.name]
        present = counts.rows - counts.missing
        trained_present = info.n_rows - info.n_missing
        out: dict[str, Any] = {
            "column": info.name,
            "role": info.role,
            "rows": counts.rows,
            "missing_share": _share(counts.missing, counts.rows),
            "training_missing_share": _share(info.n_missing, info.n_rows) if info.n_rows else None,
        }
        reasons = []
        now, then = out["missing_share"], out["training_missing_share"]
        if now is not None and then is not None and abs(now - then) > MISSING_CHANGE:
            reasons.append(f"missing {then:.1%} in training, {now:.1%} now")
        if info.categorical_input:
            out |= {
                "unseen_share": _share(counts.other, present),
                "training_unseen_share": _share(info.n_other, trained_present),
                "unseen_examples": [
                    [level, count] for level, count in counts.levels.most_common(LISTED_LEVELS)
                ],
            }
            now, then = out["unseen_share"], out["training_unseen_share"]
            if now is not None and now - (then or 0.0) > UNSEEN_CHANGE:
                examples = ", ".join(repr(level) for level, _ in out["unseen_examples"][:3])
                reasons.append(
                    f"{now:.1%} of values outside the vocabulary ({(then or 0.0):.1%} in "
                    f"training), e.g. {examples}"
                )
        if info.role in ("numeric", "datetime") and info.low is not None and info.high is not None:
            out |= {
                "training_low": info.low,
                "training_high": info.high,
                "below_share": _share(counts.below, present),
                "above_share": _share(counts.above, present),
                "outside_share": _share(counts.below + counts.above, present),
            }
            limit = max(OUT_OF_RANGE_SHARE, 4 / (trained_present + 1))
            outside = out["outside_share"]
            if outside is not None and outside > limit:
                reasons.append(
                    f"{outside:.1%} of values outside the training range "
                    f"[{info.low:.6g}, {info.high:.6g}] ({out['below_share']:.1%} below, "
                    f"{out['above_share']:.1%} above)"
                )
        out["flagged"] = bool(reasons)
        out["reasons"] = reasons
        return out

    def flagged(self) -> list[dict[str, Any]]:
        """The columns with a flag."""
        return [c for c in self.columns() if c["flagged"]]

    def summary(self) -> str:
        """One line: how many columns are flagged, and which."""
        flagged = self.flagged()
        if not flagged:
            return f"no column drifted from the training data ({self.n_rows:,} rows checked)"
        parts = [f"{c['column']} ({'; '.join(c['reasons'])})" for c in flagged]
        return (
            f"{len(flagged)} of {len(self._counts)} columns differ from the training data "
            f"({self.n_rows:,} rows checked): " + "; ".join(parts)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: the rows checked, the thresholds and every column."""
        return {
            "rows": self.n_rows,
            "thresholds": {
                "missing_change": MISSING_CHANGE,
                "out_of_range_share": OUT_OF_RANGE_SHARE,
                "unseen_change": UNSEEN_CHANGE,
            },
            "flagged": [c["column"] for c in self.flagged()],
            "columns": self.columns(),
        }

    def to_markdown(self) -> str:
        """The report as a Markdown table."""
        lines = [
            "# Drift against the training data",
            "",
            markdown(_sentence(self.summary())),
            "",
            "| column | role | missing (training -> now) | outside range / vocabulary (training -> now) | flag |",
            "|---|---|---|---|---|",
        ]
        for c in self.columns():
            # Names and levels come from the data: escaped, a '|' or a newline in them
            # cannot move the figures to other columns.
            lines.append(
                f"| {markdown(str(c['column']))} | {c['role']} | "
                f"{_pct(c['training_missing_share'])} -> {_pct(c['missing_share'])} | "
                f"{_outside(c)} | {markdown('; '.join(c['reasons'])) if c['flagged'] else ''} |"
            )
        return "\n".join(lines) + "\n"

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the report to ``path`` (JSON, or Markdown for ``.md``), atomically."""
        if drift_format(path) == "markdown":
            text = self.to_markdown()
        else:
            text = json.dumps(to_jsonable(self.to_dict()), indent=2, allow_nan=False) + "\n"
        return atomic_write(path, text)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _outside(column: dict[str, Any]) -> str:
    parts = []
    if "outside_share" in column:
        parts.append(f"0.0% -> {_pct(column['outside_share'])} outside range")
    if "unseen_share" in column:
        parts.append(
            f"{_pct(column['training_unseen_share'])} -> {_pct(column['unseen_share'])} unseen levels"
        )
    return "; ".join(parts) or "-"

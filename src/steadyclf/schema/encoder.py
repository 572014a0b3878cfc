"""Tables -> the network's raw inputs, by the roles decided on the training data.

:class:`TabularEncoder` holds the column roles (:mod:`steadyclf.schema.roles`) and turns any
table with the same columns, a DataFrame or an Arrow record batch, into the two raw
inputs of the network:

- ``x_num``: float64, one column per numeric, boolean (0/1) or datetime (seconds since
  1970, UTC) feature, NaN where missing;
- ``x_cat``: int64 codes, one column per categorical feature, with code 0 for a missing
  value and code 1 for a level unseen in training (or too rare to keep); then one more
  column per categorical with more levels than one-hot keeps, coding every level counted
  in training (``target_levels``), whose target rate and frequency the network reads.
  A numeric column read as a category too (``ColumnInfo.read_as_category``: integer codes
  such as an hour or an id) is a categorical feature as well, coded from its numbers in
  ``x_num`` (:func:`~steadyclf.schema.values.encode_codes`).

Imputation, scaling and one-hot encoding happen inside the network
(:mod:`steadyclf.nn.modules`), so that everything fitted is saved with the weights.
Infinite values are refused with the column and row: there is no safe default for them,
and a silent clip or NaN would hide a data problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from ..exceptions import SchemaError
from ..io.tables import check_unique_columns, name_list
from .roles import (
    MAX_CATEGORIES,
    NUMERIC_ROLES,
    ColumnInfo,
    check_roles,
    column_info,
    read_as_category,
)
from .values import (
    MISSING_CODE,
    UNSEEN_CODE,
    blanks_as_missing,
    column_values,
    encode_categories,
    encode_codes,
    refuse_infinite,
)

if TYPE_CHECKING:
    from .summary import TableSummary

__all__ = ["UNSEEN_WARNING_SHARE", "TabularEncoder"]

#: Prediction warns when more than this share of a categorical column's present values
#: are levels outside the model's vocabulary (and more than in training): a half of the
#: rows read as 'unseen' is seldom new data, more often a column spelled or read
#: differently from training.
UNSEEN_WARNING_SHARE = 0.5


class TabularEncoder:
    """Column roles and vocabularies, and the encoding of tables for the network.

    Build it from a summary of the training data (:meth:`from_summary`), from a
    DataFrame (:meth:`fit`, which summarises it first) or from its saved form.

    Parameters
    ----------
    columns : list of ColumnInfo
        Every input column, with its role.
    max_categories : int
        Levels kept per categorical column.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"age": [30, 41, None], "city": ["Oslo", None, "Rome"]})
    >>> enc = TabularEncoder.fit(frame)
    >>> [c.describe() for c in enc.columns_]
    ['age: numeric (1 missing -> median + indicator)', 'city: categorical (2 levels, 1 missing -> own level)']
    """

    def __init__(self, columns: Sequence[ColumnInfo], max_categories: int = MAX_CATEGORIES):
        check_roles(columns)
        self.columns_ = list(columns)
        self.max_categories = max_categories

    # -- fitting -------------------------------------------------------------------------
    @classmethod
    def from_summary(
        cls, summary: TableSummary, max_categories: int = MAX_CATEGORIES
    ) -> TabularEncoder:
        """The roles of every column of ``summary``'s table."""
        plan = summary.plan
        columns = [column_info(plan, summary.columns[n], max_categories) for n in plan.features]
        return cls(columns, max_categories)

    def with_categories(self, summary: TableSummary, names: Sequence[str]) -> TabularEncoder:
        """This encoder with the numeric columns ``names`` read as categories too, their
        levels the values ``summary`` counted (see
        :func:`~steadyclf.schema.roles.code_candidates`)."""
        if not names:
            return self
        columns = [
            read_as_category(c, summary.columns[c.name], self.max_categories)
            if c.name in names
            else c
            for c in self.columns_
        ]
        return type(self)(columns, self.max_categories)

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        *,
        categorical: Sequence[str] = (),
        numeric: Sequence[str] = (),
        drop: Sequence[str] = (),
        max_categories: int = MAX_CATEGORIES,
    ) -> TabularEncoder:
        """The roles of ``frame``'s columns (summarised in memory, as training does)."""
        from ..io.sources import FrameSource
        from .columns import ColumnPlan
        from .split import SplitRule
        from .summary import summarise

        check_unique_columns(frame)
        source = FrameSource(frame)
        plan = ColumnPlan.create(
            source.columns,
            source.kinds,
            None,
            categorical=categorical,
            numeric=numeric,
            drop=drop,
        )
        summary = summarise(source, plan, SplitRule(0.0, 0), budget=1 << 40)
        return cls.from_summary(summary, max_categories)

    # -- layout --------------------------------------------------------------------------
    @property
    def numeric_columns(self) -> list[str]:
        """Names of the numeric inputs (numeric, boolean and datetime roles), in order."""
        return [c.name for c in self.columns_ if c.role in NUMERIC_ROLES]

    @property
    def numeric_infos(self) -> list[ColumnInfo]:
        """The numeric inputs, in order."""
        return [c for c in self.columns_ if c.role in NUMERIC_ROLES]

    @property
    def categorical_columns(self) -> list[ColumnInfo]:
        """Categorical inputs, in order (numeric columns read as a category too included)."""
        return [c for c in self.columns_ if c.categorical_input]

    @property
    def vocab_sizes(self) -> list[int]:
        """One-hot width per categorical column (levels + missing + unseen)."""
        return [len(c.levels) + 2 for c in self.categorical_columns]

    @property
    def target_columns(self) -> list[ColumnInfo]:
        """Categoricals with target statistics (more levels than one-hot keeps), in order."""
        return [c for c in self.categorical_columns if c.target_levels]

    @property
    def target_sizes(self) -> list[int]:
        """Vocabulary size per column of :attr:`target_columns` (levels + missing + unseen)."""
        return [len(c.target_levels) + 2 for c in self.target_columns]

    @property
    def input_columns(self) -> list[str]:
        """Every column the model reads (dropped ones excluded)."""
        return [c.name for c in self.columns_ if c.role != "dropped"]

    @property
    def has_missing(self) -> bool:
        """Whether a numeric input had a missing value in the data it was fitted on."""
        return any(c.n_missing for c in self.numeric_infos)

    # -- transforming --------------------------------------------------------------------
    def transform(
        self, table: pd.DataFrame | pa.RecordBatch | pa.Table, *, copy: bool = True
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Raw network inputs ``(x_num, x_cat)`` for a DataFrame or an Arrow batch.

        With ``copy=False``, ``x_num`` may be a read-only view of the frame's data (when
        every input is a numeric column of one float dtype, float32 staying float32): no
        per-column work and no copy. Float64 columns are taken as one block, Arrow strings
        are coded by Arrow.
        """
        frame = table.to_pandas() if isinstance(table, (pa.RecordBatch, pa.Table)) else table
        check_unique_columns(frame)
        self.check_columns(frame)
        # Blanks of numeric inputs (text columns read as numbers); categories spell a
        # blank as missing themselves (category_strings).
        frame = blanks_as_missing(frame, [c.name for c in self.numeric_infos])
        n = len(frame)
        numeric = self.numeric_infos
        block = self._float_block(frame, numeric)
        if block is not None:
            x_num = block.astype(np.float64) if copy else block  # astype always copies
            return x_num, np.empty((n, 0), dtype=np.int64)
        x_num = np.empty((n, len(numeric)), dtype=np.float64)
        floats = [
            j
            for j, c in enumerate(numeric)
            if c.role == "numeric" and frame[c.name].dtype == np.dtype(np.float64)
        ]
        if floats:
            names = [numeric[j].name for j in floats]
            values = frame[names].to_numpy(dtype=np.float64)
            refuse_infinite(values, names)
            x_num[:, floats] = values
        for j, info in enumerate(numeric):
            if j not in floats:
                x_num[:, j] = column_values(info.name, frame[info.name], info.role)
        cats = self.categorical_columns
        targets = self.target_columns
        x_cat = np.empty((n, len(cats) + len(targets)), dtype=np.int64)
        position = {c.name: j for j, c in enumerate(numeric)}
        for j, info in enumerate(cats):
            x_cat[:, j] = self._codes(frame, x_num, position, info, info.levels)
        for j, info in enumerate(targets, start=len(cats)):
            x_cat[:, j] = self._codes(frame, x_num, position, info, info.target_levels)
        return x_num, x_cat

    @staticmethod
    def _codes(
        frame: pd.DataFrame,
        x_num: NDArray[np.float64],
        position: dict[str, int],
        info: ColumnInfo,
        levels: Sequence[str],
    ) -> NDArray[np.int64]:
        """The codes of one categorical input: from the text of a categorical column, from
        the numbers of a numeric one read as a category too."""
        if info.read_as_category:
            return encode_codes(x_num[:, position[info.name]], levels)
        return encode_categories(frame[info.name], levels)

    def _float_block(
        self, frame: pd.DataFrame, numeric: list[ColumnInfo]
    ) -> NDArray[np.float64] | None:
        """``x_num`` in one step, when every input is a numeric column of one float dtype."""
        if self.categorical_columns or any(c.role != "numeric" for c in numeric):
            return None
        names = [c.name for c in numeric]
        selected = frame if [str(c) for c in frame.columns] == names else frame[names]
        dtypes = set(selected.dtypes)
        if dtypes != {np.dtype(np.float64)} and dtypes != {np.dtype(np.float32)}:
            return None
        block = selected.to_numpy(copy=False)
        refuse_infinite(block, names)
        return block

    def transform_array(
        self, x: NDArray[np.float64], names: Sequence[str]
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]] | None:
        """:meth:`transform` of a float64 array with columns ``names``, without pandas.

        ``x_num`` is ``x`` itself (or its numeric columns): no copy. Returns ``None`` when
        the data needs :meth:`transform` (categorical, boolean or datetime inputs, missing
        or duplicate names), which also gives the errors.
        """
        numeric = self.numeric_infos
        position = {str(name): j for j, name in enumerate(names)}
        if (
            self.categorical_columns
            or any(c.role != "numeric" or c.name not in position for c in numeric)
            or len(position) != len(names)
            or x.ndim != 2
            or x.shape[1] != len(names)
        ):
            return None
        columns = [position[c.name] for c in numeric]
        block = x if columns == list(range(x.shape[1])) else x[:, columns]
        refuse_infinite(block, [c.name for c in numeric])
        return block, np.empty((x.shape[0], 0), dtype=np.int64)

    def csv_types(self) -> dict[str, pa.DataType]:
        """Arrow types to read this model's columns from CSV text, block after block.

        Every input is read as text and converted as a DataFrame's would be (with the
        same messages), so a value that would change a block's inferred type cannot
        break a later block: text late in a column of numbers is an unseen level, with a
        budget or without. Categoricals are spelled as any reader's values are
        (:func:`~steadyclf.schema.values.category_key`): ``3``, ``3.0`` and ``'3'`` are
        the level ``'3'``.
        """
        return {info.name: pa.string() for info in self.columns_ if info.role != "dropped"}

    def check_columns(self, frame: pd.DataFrame) -> None:
        """Raise :class:`SchemaError` naming the input columns ``frame`` lacks."""
        missing = [c for c in self.input_columns if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"missing column{'s' if len(missing) > 1 else ''} {name_list(missing)}; the model was trained on {name_list(self.input_columns)}"
            )

    def out_of_range(self, x_num: NDArray[np.float64]) -> dict[str, int]:
        """Count, per numeric column, values far outside the training range.

        "Far" means beyond the training minimum or maximum by more than the width of the
        training range (or by more than ``max(1, |value|)`` for a column that was
        constant apart from missing values): the network extrapolates there.
        """
        counts: dict[str, int] = {}
        for j, info in enumerate(self.numeric_infos):
            if info.role == "boolean" or info.low is None or info.high is None:
                continue
            span = info.high - info.low or max(1.0, abs(info.high))
            column = x_num[:, j]
            with np.errstate(invalid="ignore"):
                far = (column < info.low - span) | (column > info.high + span)
            if far.any():
                counts[info.name] = int(far.sum())
        return counts

    def unexpected_missing(self, x_num: NDArray[np.float64]) -> dict[str, int]:
        """Count, per numeric column without a missing value in training, those in ``x_num``.

        The model fills them with the training median, a guess it never trained on.
        """
        counts: dict[str, int] = {}
        for j, info in enumerate(self.numeric_infos):
            if info.n_missing == 0:
                n = int(np.count_nonzero(np.isnan(x_num[:, j])))
                if n:
                    counts[info.name] = n
        return counts

    def unseen_levels(self, x_cat: NDArray[np.int64]) -> dict[str, tuple[int, int]]:
        """Per categorical column: its values outside the vocabulary (levels never seen in
        training, or too rare to count) and its present values, in ``x_cat``."""
        cats = self.categorical_columns
        column = {info.name: j for j, info in enumerate(cats)}
        # The target statistics' vocabulary holds every level counted: the finer one.
        column |= {info.name: len(cats) + k for k, info in enumerate(self.target_columns)}
        counts: dict[str, tuple[int, int]] = {}
        for info in cats:
            codes = x_cat[:, column[info.name]]
            present = int(np.count_nonzero(codes != MISSING_CODE))
            counts[info.name] = (int(np.count_nonzero(codes == UNSEEN_CODE)), present)
        return counts

    def unseen_warnings(self, counts: dict[str, tuple[int, int]]) -> list[str]:
        """One line per categorical column of which more than
        :data:`UNSEEN_WARNING_SHARE` of the present values (``counts`` as
        :meth:`unseen_levels` gives) are outside the vocabulary, and more than were in
        training: levels spelled differently from training (``'yes'`` for ``True``), a
        column of new identifiers, or another column under the same name."""
        messages = []
        for info in self.categorical_columns:
            if info.read_as_category:  # its number is an input too: out_of_range says more
                continue
            unseen, present = counts.get(info.name, (0, 0))
            share = unseen / present if present else 0.0
            if share > UNSEEN_WARNING_SHARE and share > _training_unseen_share(info):
                messages.append(
                    f"{unseen} of {present} values of {info.name!r} ({share:.0%}) are levels "
                    "the model did not learn in training (predicted as an unseen level); "
                    "check how the column is spelled"
                )
        return messages

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form of the fitted encoder."""
        return {
            "max_categories": self.max_categories,
            "columns": [c.to_dict() for c in self.columns_],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TabularEncoder:
        """Rebuild a fitted encoder from :meth:`to_dict` output."""
        columns = [ColumnInfo.from_dict(c) for c in data["columns"]]
        return cls(columns, max_categories=int(data.get("max_categories", MAX_CATEGORIES)))


def _training_unseen_share(info: ColumnInfo) -> float:
    """The share of a categorical's present training values outside its vocabulary."""
    present = info.n_rows - info.n_missing
    if present <= 0:
        return 0.0
    outside = present - sum(info.target_counts) if info.target_levels else info.n_other
    return max(0, outside) / present

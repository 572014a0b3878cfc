"""The columns a fit reads: the target, the weight column, the features and what the
user said of them (:class:`ColumnPlan`), checked against the table before any value is
read. The summary (:mod:`steadyclf.schema.summary`) tallies the columns it names and the
role rules (:mod:`steadyclf.schema.roles`) apply its overrides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..exceptions import DataError
from ..io.tables import name_list

__all__ = ["ColumnPlan"]


@dataclass
class ColumnPlan:
    """The columns to read, the target, the user's role overrides and each column's kind.

    ``kinds`` says what a column holds before any value is read ('bool', 'datetime',
    'int', 'float', 'category', 'text' or 'complex'), from the file schema or the pandas
    dtypes; ``untyped`` lists CSV columns without a value in the first block. ``weight``
    is the column of row weights, if any: like the target, never a feature.
    """

    features: list[str]
    target: str | None
    kinds: dict[str, str]
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    untyped: frozenset[str] = frozenset()
    weight: str | None = None

    @classmethod
    def create(
        cls,
        columns: Sequence[str],
        kinds: dict[str, str],
        target: str | None,
        *,
        categorical: Sequence[str] = (),
        numeric: Sequence[str] = (),
        drop: Sequence[str] = (),
        untyped: frozenset[str] = frozenset(),
        weight: str | None = None,
    ) -> ColumnPlan:
        """Check the target, the weight column and the overrides against ``columns``."""
        names = list(columns)
        if target is not None and target not in names:
            raise DataError(
                f"target column {target!r} is not in the data; columns: {name_list(names)}"
            )
        if weight is not None and (weight not in names or weight == target):
            why = "is the target" if weight == target else "is not in the data"
            raise DataError(f"weight column {weight!r} {why}; columns: {name_list(names)}")
        features = [n for n in names if n not in (target, weight)]
        for name in (*categorical, *numeric, *drop):
            if name not in features:
                raise DataError(
                    f"column {name!r} given as an override is not in the data; columns: {name_list(features)}"
                )
        lists = {"categorical": categorical, "numeric": numeric, "drop": drop}
        for a, b in (("categorical", "numeric"), ("categorical", "drop"), ("numeric", "drop")):
            both = sorted(set(lists[a]) & set(lists[b]))
            if both:
                raise DataError(f"column {both[0]!r} is listed both as {a} and as {b}")
        return cls(
            features,
            target,
            {n: kinds[n] for n in features},
            tuple(categorical),
            tuple(numeric),
            tuple(drop),
            untyped,
            weight,
        )

    @property
    def numeric_candidates(self) -> list[str]:
        """Columns that may get a numeric role (their values are tallied as numbers)."""
        return [
            n
            for n in self.features
            if n not in self.drop
            and n not in self.categorical
            and (n in self.numeric or self.kinds[n] != "category")
        ]

    def counts_levels(self, name: str) -> bool:
        """Whether the levels of ``name`` are counted (it may end up categorical)."""
        return name in self.categorical or (
            name not in self.drop
            and name not in self.numeric
            and self.kinds[name] in ("text", "category")
        )

"""The report of :func:`~steadyclf.doctor.diagnosis.diagnose` (:class:`Diagnosis`), as
data and as text: the column table, one entry per kind of finding, the verdict."""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any

from ..io.jsonable import to_jsonable
from .findings import FeatureSummary, Finding, plain, short_number
from .saturation import SaturationCheck

__all__ = ["Diagnosis", "render_diagnosis"]

#: Width the findings are wrapped to.
WIDTH = 100


@dataclass
class Diagnosis:
    """The report of :func:`diagnose`; ``str()`` renders it as text, ``to_dict`` as data."""

    n_rows: int
    classes: list[Any]
    positive_rate: float
    features: list[FeatureSummary]
    findings: list[Finding]
    saturation: SaturationCheck | None
    verdict: str
    headline: str = ""
    notes: list[str] = field(default_factory=list)
    normalize: str = "standardize"
    #: Rows were weighted: ``positive_rate`` is the positives' share of the weight.
    weighted: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Everything in the report as JSON-compatible data (NaN becomes ``None``)."""
        return to_jsonable(
            {
                "n_rows": self.n_rows,
                "classes": [plain(c) for c in self.classes],
                "positive_rate": self.positive_rate,
                "weighted": self.weighted,
                "normalize": self.normalize,
                "features": [asdict(f) for f in self.features],
                "findings": [f.to_dict() for f in self.findings],
                "saturation": None if self.saturation is None else self.saturation.to_dict(),
                "headline": self.headline,
                "verdict": self.verdict,
                "notes": list(self.notes),
            }
        )

    def __str__(self) -> str:
        return render_diagnosis(self)


def render_diagnosis(report: Diagnosis) -> str:
    """The report as plain text: table, findings, saturation contrast, verdict."""
    lines = [
        f"steadyclf doctor: {report.n_rows} rows, {len(report.features)} "
        f"feature{'s' if len(report.features) != 1 else ''}, "
        f"target classes {report.classes!r} ({report.positive_rate:.1%} positive"
        f"{' by weight' if report.weighted else ''})",
        "",
        _feature_table(report.features),
        "",
    ]
    if report.findings:
        lines.append("Findings")
        for i, f in enumerate(report.findings, 1):
            head = f"  {i}. [{f.kind}] "
            indent = " " * 5
            lines += textwrap.wrap(
                f.summary, WIDTH, initial_indent=head, subsequent_indent=indent + "  "
            )
            for label, text in (("why", f.why), ("fix", f.fix)):
                lines += textwrap.wrap(
                    text,
                    WIDTH,
                    initial_indent=f"{indent}{label}: ",
                    subsequent_indent=indent + "     ",
                )
    else:
        lines.append("Findings: none")
    sat = report.saturation
    if sat is not None:
        hidden = ", ".join(str(h) for h in sat.hidden)
        lines += [
            "",
            f"Why raw inputs stall a network: {sat.activation} network, hidden=({hidden},), "
            f"default initialisation (seed {sat.seed})",
            f"  {'':44}{'raw inputs':>14}{'standardised':>14}",
            f"  {f'pre-activations in the flat region ({sat.region})':44}"
            f"{sat.raw_share:>14.1%}{sat.standardized_share:>14.1%}",
            f"  {'initial gradient at the first layer |dL/dz|':44}"
            f"{sat.raw_grad_preact:>14.3g}{sat.standardized_grad_preact:>14.3g}",
            f"  {'initial gradient of all weights |dL/dw|':44}"
            f"{sat.raw_grad_total:>14.3g}{sat.standardized_grad_total:>14.3g}",
        ]
    lines += ["", *textwrap.wrap(f"Verdict: {report.verdict}", WIDTH, subsequent_indent="  ")]
    return "\n".join(lines)


def _feature_table(features: list[FeatureSummary]) -> str:
    header = [
        "feature",
        "role",
        "mean",
        "std",
        "min",
        "max",
        "|mean|/std",
        "missing",
        "distinct",
        "skew",
    ]
    rows = [
        [
            f.name,
            f.role,
            short_number(f.mean),
            short_number(f.std),
            short_number(f.min),
            short_number(f.max),
            short_number(f.offset_ratio),
            f"{f.missing_share:.1%}",
            str(f.n_distinct),
            short_number(f.skew),
        ]
        for f in features
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        )
        for row in [header, *rows]
    )

"""Figures users would rather look at than read (matplotlib, imported lazily).

matplotlib is an optional dependency (``pip install 'steadyclf[plot]'``); every function
here imports it through :func:`pyplot`, which raises a clear error when it is missing.
Figures are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .exceptions import SteadyclfError

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the non-interactive Agg backend."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise SteadyclfError("plots need matplotlib: pip install 'steadyclf[plot]'") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically and close it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".png", dir=target.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        pyplot().close(fig)
    return target

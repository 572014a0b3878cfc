"""The device a fit runs on."""

from __future__ import annotations

import torch

from ..exceptions import ParameterError

__all__ = ["check_device"]


def check_device(name: str) -> torch.device:
    """The device a fit runs on: ``'auto'`` is CUDA when available."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device='cuda' was requested but CUDA is not available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)

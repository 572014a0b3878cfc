"""Intra-op threads: one thread for the small matrix products of tabular networks.

PyTorch starts one OpenMP thread per physical core and splits every large enough operation
between them. For the networks steadyclf trains by default (20 inputs, 64 hidden units)
a training step or a prediction chunk is a few million multiply-adds: splitting them costs
more in synchronisation than it saves, and when the other cores are busy the waiting
threads spin. Measured on a 2-core machine shared with other jobs (``benchmarks/speed.py``
notes): a 1024-row step took 0.4 ms on one thread and 21 ms on two; an 8192-row step of a
256-unit network, 65 ms against 126 ms. So steadyclf computes on one thread unless a step
is large (``rows x weights`` above :data:`SINGLE_THREAD_WORK`), and then uses whatever
``torch.get_num_threads()`` allows; the setting is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .spec import SINGLE_THREAD_WORK

__all__ = ["SINGLE_THREAD_WORK", "intra_op_threads", "threads_for"]


def threads_for(rows: int, module: nn.Module) -> int:
    """Threads for passes of ``rows`` rows through ``module``: 1 unless the work is large."""
    weights = sum(p.numel() for p in module.parameters() if p.dim() > 1)
    if rows * weights < SINGLE_THREAD_WORK:
        return 1
    return torch.get_num_threads()


@contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run the block with at most ``n`` intra-op threads, then restore the setting.

    Never raises the count above the current one (a user's ``torch.set_num_threads``
    is an upper bound), and does nothing when it would not change it.
    """
    before = torch.get_num_threads()
    target = max(1, min(n, before))
    if target == before:
        yield
        return
    torch.set_num_threads(target)
    try:
        yield
    finally:
        torch.set_num_threads(before)

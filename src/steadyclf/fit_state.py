"""The state one fit carries through its stages (:mod:`steadyclf.pipeline`): what each
stage sets and the later ones read, in one object (:class:`FitState`). In a module of its
own, so that the pipeline and the choice among candidates (:mod:`steadyclf.choice`)
both read it without importing each other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from numpy.typing import NDArray

    from .io.sources import Source
    from .nn.modules import SteadyNet
    from .parallel import DistributedContext
    from .policy import Plan
    from .schema.encoder import TabularEncoder
    from .schema.scaling import NumericStatistics
    from .schema.summary import TableSummary
    from .train.batches import (
        BatchEncoder,
        EncodedRows,
        InMemoryBatches,
        RowWeighting,
        StreamedBatches,
    )
    from .train.lr_finder import LRFinderResult
    from .train.stall import StallDetector
    from .train.trainer import TrainConfig

__all__ = ["FitState"]


@dataclass
class FitState:
    """What the stages of one fit hand each other, in the order they set it.

    :func:`_summarise` creates it (the run's settings, the summary and the classes);
    :func:`_decide` adds the column roles, the :class:`~steadyclf.policy.Plan`, the row
    weighting and the scaling statistics; :func:`_build` the network and its encoding of
    rows; :func:`_train` the batches, the learning rate and the training settings. A field
    is read only by the stages after the one that sets it.
    """

    params: Mapping[str, Any]
    source: Source  # this process's rows (its shard under torchrun)
    target: str
    budget: int
    in_memory: bool  # a DataFrame: rows are never read in passes
    context: DistributedContext | None
    device: torch.device
    seed: int
    started: float
    summary: TableSummary
    label_values: list[Any]  # the target values meaning 0 and 1
    classes: NDArray[Any]
    # _decide
    encoder: TabularEncoder = field(init=False)
    plan: Plan = field(init=False)
    weighting: RowWeighting | None = field(init=False)
    counts: dict[int, tuple[float, float]] = field(init=False)  # each class's loss weight
    stats: NumericStatistics = field(init=False)
    # _build
    module: SteadyNet = field(init=False)
    #: The network of the plan's second numeric_embedding candidate, if it has two.
    plain: SteadyNet | None = field(init=False)
    encoding: BatchEncoder = field(init=False)
    #: This state, then the other readings of the columns the plan tries (integer codes
    #: read as categories too): each a copy with its own encoder, networks and rows.
    readings: list[FitState] = field(init=False)
    # _train
    batches: InMemoryBatches | StreamedBatches = field(init=False)
    valid: EncodedRows | None = field(init=False)
    info: dict[str, Any] = field(init=False)
    stall: StallDetector = field(init=False)
    lr: float = field(init=False)
    lr_finder: LRFinderResult | None = field(init=False)
    config: TrainConfig = field(init=False)

    @property
    def world_size(self) -> int:
        """Processes training together."""
        return self.context.world_size if self.context is not None else 1

"""Several processes or machines with PyTorch's own engine (``torchrun``).

``torchrun --nproc-per-node N -m steadyclf train ...`` starts N copies of the command with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment; steadyclf detects them
(no extra flag) and then:

- joins the process group with the ``gloo`` backend on CPU or ``nccl`` on GPU;
- reads only its share of the rows (:meth:`steadyclf.io.files.DataSource.shard`): with N
  processes on any number of machines, each reads 1/N of the data;
- merges the partial statistics of all processes in rank order, so that every process
  holds the same statistics as a single process reading every file;
- trains the network wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`,
  with the training and validation metrics summed over processes so that every process
  takes the same early-stopping decisions;
- lets only rank 0 write the model (atomically).

Every collective waits at most ``STEADYCLF_DISTRIBUTED_TIMEOUT`` seconds (default 600;
PyTorch's own default is 30 minutes): a process that stops answering (stopped, hung,
killed) ends the run with one line naming the rank that waited (:func:`peer_failure`),
not a hang and not a traceback.

Every stage that reads rows takes a :class:`DistributedContext` (or ``None``), so it
lives low in the stages, beside :mod:`steadyclf.io`; torch is imported when a collective
runs, not with the module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .exceptions import ParameterError, SteadyclfError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .io.sources import Source

__all__ = [
    "TIMEOUT_ENV",
    "DistributedContext",
    "PeerFailure",
    "collective_timeout",
    "init_from_env",
    "is_main_process",
    "peer_failure",
    "share_of",
    "shared_seed",
    "shutdown",
    "torchrun_environment",
]


#: Seconds a collective (and joining the group) may wait for the other processes.
TIMEOUT_ENV = "STEADYCLF_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0


class PeerFailure(SteadyclfError):
    """Another process of the group stopped answering or exited."""


def collective_timeout() -> float:
    """Seconds from ``STEADYCLF_DISTRIBUTED_TIMEOUT`` (default 600)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ParameterError(f"{TIMEOUT_ENV} must be a positive number of seconds; got {text!r}")
    return seconds


#: What gloo and NCCL say when a peer is gone or silent.
_PEER_SIGNS = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe")


def peer_failure(exc: BaseException, context: DistributedContext) -> PeerFailure | None:
    """The one-line error for ``exc`` if it is a collective that lost its peers, else None."""
    text = str(exc).strip()
    if not isinstance(exc, RuntimeError) or not any(s in text.lower() for s in _PEER_SIGNS):
        return None
    first = text.splitlines()[0] if text else type(exc).__name__
    return PeerFailure(
        f"rank {context.rank} of {context.world_size}: another process stopped answering or "
        f"exited (waited up to {collective_timeout():g} s, {TIMEOUT_ENV}); the run stopped "
        f"without writing a model ({first[:200]})"
    )


def torchrun_environment() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when started by torchrun with several processes."""
    try:
        rank = int(os.environ["RANK"])
        world_size = int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        return None
    return (rank, world_size, local_rank) if world_size > 1 else None


def is_main_process() -> bool:
    """True outside torchrun and on rank 0: the process that writes files."""
    env = torchrun_environment()
    return env is None or env[0] == 0


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the group, and the collectives steadyclf needs."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reports and writes."""
        return self.rank == 0

    def check_same_call(self, arguments: Mapping[str, Any]) -> None:
        """Refuse, on every process at once, ``arguments`` that differ from rank 0's.

        Every process must run the same call (torchrun starts one command): processes
        started by hand with other options trained on other splits without a word
        (``--random-state``), hung until the timeout (``--max-epochs``) or failed deep in
        DDP (``--hidden``).
        """
        calls = self.all_gather_object({k: repr(v) for k, v in arguments.items()})
        first = calls[0]
        for rank, call in enumerate(calls[1:], start=1):
            differ = [k for k in sorted(set(first) | set(call)) if first.get(k) != call.get(k)]
            if differ:
                key = differ[0]
                raise ParameterError(
                    f"rank {rank} of {self.world_size} was started with {key}={call.get(key)} "
                    f"but rank 0 with {key}={first.get(key)}; start every process with the "
                    "same command"
                )

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``obj`` from every process, in rank order."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_sum(self, array: NDArray[Any]) -> NDArray[Any]:
        """Element-wise sum of ``array`` over processes."""
        import torch
        import torch.distributed as dist

        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu().numpy()

    def all_reduce_min(self, value: int) -> int:
        """Smallest ``value`` over processes."""
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return int(tensor.item())

    def barrier(self) -> None:
        """Wait for every process."""
        import torch.distributed as dist

        dist.barrier()

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in :class:`DistributedDataParallel` (gradients averaged)."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)


def init_from_env(device: str = "auto") -> DistributedContext | None:
    """Join torchrun's process group, or return ``None`` when not under torchrun.

    ``device='auto'`` uses the GPU numbered ``LOCAL_RANK`` with ``nccl`` when CUDA is
    available, else the CPU with ``gloo``.
    """
    import torch
    import torch.distributed as dist

    env = torchrun_environment()
    if env is None:
        return None
    rank, world_size, local_rank = env
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        timeout = timedelta(seconds=collective_timeout())
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timeout)
    return DistributedContext(rank, world_size, local_rank, backend, where)


def shutdown() -> None:
    """Leave the process group (safe to call when not in one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shared_seed(random_state: int | None, context: DistributedContext | None) -> int:
    """``random_state``, or a random seed shared by every process."""
    if random_state is not None:
        return int(random_state)
    seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    return int(context.broadcast_object(seed)) if context is not None else seed


def share_of(source: Source, context: Any) -> Source:
    """This process's shard of ``source`` (``source`` itself outside a distributed run).

    CSV files are counted first, each by the process that will read it, so that every
    row keeps its global position.
    """
    if context is None:
        return source
    if not source.counted:
        mine = source.shard(context.rank, context.world_size)
        counts = [n for part in context.all_gather_object(mine.count_rows()) for n in part]
        source = source.with_row_counts(counts)  # type: ignore[union-attr]
    return source.shard(context.rank, context.world_size)

import pytest
import torch
from torch import nn

from steadyclf.nn.threads import SINGLE_THREAD_WORK, intra_op_threads, threads_for
from steadyclf.train.trainer import TrainConfig, Trainer


def test_small_work_runs_on_one_thread_and_large_work_on_all() -> None:
    torch.set_num_threads(2)
    small = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 1))
    assert threads_for(8192, small) == 1
    rows = SINGLE_THREAD_WORK // (100 * 100) + 1
    assert threads_for(rows, nn.Linear(100, 100)) == 2


def test_the_setting_is_restored_and_never_raised() -> None:
    torch.set_num_threads(2)
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), intra_op_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    with intra_op_threads(8):
        assert torch.get_num_threads() == 1


class _Threads:
    """Records the intra-op threads each epoch ran on."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
        self.seen.append(torch.get_num_threads())


def _threads_of_training(module: nn.Module, x: torch.Tensor, **config) -> list[int]:
    threads = _Threads()
    settings = TrainConfig(lr=0.01, callbacks=(threads,), **config)
    Trainer(module, settings).fit((x, (x[:, 0] > 0).float()))
    return threads.seen


def test_training_a_small_network_uses_one_thread() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    assert _threads_of_training(net, torch.randn(64, 3), max_epochs=2, batch_size=16) == [1, 1]
    assert torch.get_num_threads() == 2


def test_members_take_the_threads_of_one_member() -> None:
    # Four members whose stacked weights pass the threshold, each below it: they step one
    # member at a time, so one thread, as one of them alone would.
    from steadyclf.nn.modules import Members

    torch.set_num_threads(2)
    torch.manual_seed(0)
    width = 64
    rows = SINGLE_THREAD_WORK // (3 * width * width) + 1  # 4 members: over; 1: under
    bodies = [
        nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1)) for _ in "abcd"
    ]
    members = Members(nn.ModuleList(bodies))
    assert threads_for(rows, members) == 2 and threads_for(rows, members.bodies[0]) == 1
    x = torch.randn(rows, width)
    assert _threads_of_training(members, x, max_epochs=1, batch_size=rows) == [1]
    assert torch.get_num_threads() == 2

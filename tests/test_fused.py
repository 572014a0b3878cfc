import subprocess
import sys

import pytest
import torch
from torch import nn

from steadyclf.nn import optim as fused
from steadyclf.nn.optim import make_optimizer
from steadyclf.nn.step import SPARSE_MAX_DENSITY, SPARSE_MIN_INPUTS, FusedMLP, SparseRows
from steadyclf.train.trainer import TrainConfig, Trainer


def _data(n: int = 40, d: int = 5, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    return x, (x[:, 0] + 0.3 * torch.randn(n, generator=g, dtype=dtype) > 0).to(dtype)


def _autograd_grads(net: nn.Module, x, y, pos_weight):
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=x.dtype)
    loss = nn.BCEWithLogitsLoss(pos_weight=pw)(net(x).reshape(-1), y)
    grads = torch.autograd.grad(loss, list(net.parameters()))
    return net(x).reshape(-1).detach(), grads


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU])
@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_fused_gradients_match_autograd(activation, pos_weight) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(5, 7), activation(), nn.Linear(7, 4), activation(), nn.Linear(4, 1)
    ).double()
    x, y = _data()
    expected_logits, expected = _autograd_grads(net, x, y, pos_weight)
    fused_pass = FusedMLP.from_module(net, pos_weight)
    assert fused_pass is not None
    logits = fused_pass.forward_backward(x, y)
    torch.testing.assert_close(logits, expected_logits)
    for p, g in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sparse_rows_give_the_dense_gradients(dtype: torch.dtype) -> None:
    # Wide one-hot inputs (300 columns, one level of 30 in each of 10 blocks): the first
    # layer's products in CSR. float64 to rounding; float32 to float32 sums over the rows.
    g = torch.Generator().manual_seed(0)
    n, blocks, levels = 200, 10, 30
    codes = torch.randint(0, levels, (n, blocks), generator=g)
    x = torch.zeros(n, blocks * levels, dtype=dtype)
    x.scatter_(1, codes + torch.arange(blocks) * levels, 1.0)
    y = (codes[:, 0] % 2 == 0).to(dtype)
    net = nn.Sequential(nn.Linear(x.shape[1], 8), nn.ReLU(), nn.Linear(8, 1)).to(dtype)
    sparse = SparseRows.of(x)
    assert sparse is not None
    dense_pass = FusedMLP.from_module(net)
    assert dense_pass is not None
    expected_logits = dense_pass.forward_backward(x, y).clone()
    expected = [p.grad.clone() for p in net.parameters()]
    sparse_pass = FusedMLP.from_module(net)
    assert sparse_pass is not None
    logits = sparse_pass.forward_backward(sparse, y)
    tolerance = {"atol": 1e-12, "rtol": 1e-10} if dtype == torch.float64 else {}
    torch.testing.assert_close(logits, expected_logits, **tolerance)
    for p, g_dense in zip(net.parameters(), expected, strict=True):
        assert g_dense.abs().max() > 0
        torch.testing.assert_close(p.grad, g_dense, **tolerance)


def test_only_wide_sparse_rows_go_sparse() -> None:
    wide = torch.zeros(50, SPARSE_MIN_INPUTS)
    wide[:, 0] = 1.0
    assert SparseRows.of(wide) is not None
    assert SparseRows.of(torch.ones(50, SPARSE_MIN_INPUTS)) is None  # dense
    assert SparseRows.of(wide[:, : SPARSE_MIN_INPUTS - 1]) is None  # narrow
    half = torch.zeros(50, SPARSE_MIN_INPUTS)
    half[:, : int(SPARSE_MAX_DENSITY * SPARSE_MIN_INPUTS) + 1] = 1.0
    assert SparseRows.of(half) is None


def test_fused_pass_overwrites_gradients_instead_of_accumulating() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 1)).double()
    x, y = _data()
    fused_pass = FusedMLP.from_module(net)
    assert fused_pass is not None
    fused_pass.forward_backward(x, y)
    first = [p.grad.clone() for p in net.parameters()]
    fused_pass.forward_backward(x, y)
    for p, g in zip(net.parameters(), first, strict=True):
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize(
    "module",
    [
        nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)),
        nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1), nn.Linear(4, 1)),
        nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(), nn.Linear(4, 1)),
        nn.Sequential(nn.Linear(3, 4), nn.GELU(approximate="tanh"), nn.Linear(4, 1)),
        nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)),
        nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1)),
        nn.Linear(3, 1),
    ],
    ids=["batchnorm", "dropout", "leaky", "gelu-tanh", "two-outputs", "no-bias", "bare"],
)
def test_unsupported_modules_fall_back_to_autograd(module: nn.Module) -> None:
    assert FusedMLP.from_module(module) is None


def test_frozen_parameters_fall_back_to_autograd() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    net[0].weight.requires_grad_(False)
    assert FusedMLP.from_module(net) is None


def _train(use_fused: bool, **config) -> Trainer:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x, y = _data(n=90)
    settings = dict(lr=0.05, max_epochs=4, batch_size=16, early_stopping=False, seed=3)
    settings.update(config)
    return Trainer(net, TrainConfig(**settings, fused=use_fused)).fit((x, y))


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("schedule", ["none", "onecycle"])
def test_trainer_fused_path_matches_autograd_path(optimizer: str, schedule: str) -> None:
    a = _train(True, optimizer=optimizer, schedule=schedule, pos_weight=2.0)
    b = _train(False, optimizer=optimizer, schedule=schedule, pos_weight=2.0)
    assert a._fused is not None and b._fused is None
    for row_a, row_b in zip(a.history, b.history, strict=True):
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-9)
        assert row_a["train_accuracy"] == row_b["train_accuracy"]
    for p, q in zip(a.module.parameters(), b.module.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_full_batch_loss_is_the_loss_before_the_step() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1)).double()
    x, y = _data(n=50)
    with torch.no_grad():
        before = nn.functional.binary_cross_entropy_with_logits(net(x).reshape(-1), y)
    trainer = Trainer(
        net, TrainConfig(lr=0.1, max_epochs=1, batch_size=None, early_stopping=False)
    ).fit((x, y))
    assert trainer.history[0]["train_loss"] == pytest.approx(float(before), rel=1e-12)


def test_gradients_of_the_last_step_are_visible_to_callbacks() -> None:
    seen: list[float] = []

    class GradNorm:
        def on_epoch_end(self, trainer: Trainer, record: dict) -> None:
            grads = [p.grad for p in trainer.module.parameters()]
            assert all(g is not None for g in grads)
            seen.append(float(torch.cat([g.reshape(-1) for g in grads]).norm()))

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1)).double()
    Trainer(net, TrainConfig(lr=0.05, max_epochs=3, batch_size=None, callbacks=(GradNorm(),))).fit(
        _data()
    )
    assert len(seen) == 3 and all(g > 0 for g in seen)


def test_batchnorm_body_trains_through_autograd() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.BatchNorm1d(5), nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1)).double()
    trainer = Trainer(
        net, TrainConfig(lr=0.05, max_epochs=20, batch_size=None, early_stopping=False)
    ).fit(_data(n=80))
    assert trainer._fused is None
    assert trainer.history[-1]["train_loss"] < trainer.history[0]["train_loss"]


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizers_step_like_torch(name: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
    twin = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
    twin.load_state_dict(net.state_dict())
    ours = make_optimizer(name, net.parameters(), 0.01, 1e-3)
    reference_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(name)
    if reference_class is not None:
        reference = reference_class(twin.parameters(), lr=0.01, weight_decay=1e-3)
    else:
        reference = torch.optim.SGD(
            twin.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-3
        )
    assert isinstance(ours, type(reference))
    x, y = _data(dtype=torch.float32)
    for _ in range(5):
        for model, opt in ((net, ours), (twin, reference)):
            opt.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(model(x).reshape(-1), y).backward()
            opt.step()
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    # The state has torch's layout, so torch's own optimizer can continue from it.
    reference.load_state_dict(ours.state_dict())


def test_fused_kernels_only_for_supported_tensors() -> None:
    assert fused.supports_fused_step([torch.zeros(2)])
    assert not fused.supports_fused_step([torch.zeros(2, dtype=torch.int64)])
    assert not fused.supports_fused_step([])


def test_training_does_not_import_torch_dynamo() -> None:
    # torch.optim imports torch._dynamo (about a second) on first use; steadyclf avoids it.
    code = (
        "import sys\n"
        "from steadyclf import BinaryClassifier\n"
        "from steadyclf.datasets import heart_rate\n"
        "X, y = heart_rate(n=200, random_state=0)\n"
        "BinaryClassifier(random_state=0, max_epochs=3).fit(X, y).predict_proba(X)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU])
def test_forward_into_matches_the_module_and_reuses_its_buffers(activation) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(5, 7), activation(), nn.Linear(7, 3), activation(), nn.Linear(3, 1)
    )
    net = net.double()
    fused_pass = FusedMLP.from_module(net)
    assert fused_pass is not None
    x, _ = _data(n=33)
    out = torch.empty(33, dtype=torch.float64)
    with torch.inference_mode():
        fused_pass.forward_into(x, out)
        expected = net(x).reshape(-1)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        buffers = {k: b.data_ptr() for k, b in fused_pass._buffers.items()}
        fused_pass.forward_into(x[:10], out[:10])
        # 10 rows against 33: BLAS may round products of other shapes differently.
        torch.testing.assert_close(out[:10], expected[:10], rtol=1e-12, atol=1e-14)
    assert {k: b.data_ptr() for k, b in fused_pass._buffers.items()} == buffers


def _twins(name: str) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer, torch.optim.Optimizer]:
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
    b = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
    b.load_state_dict(a.state_dict())
    return (
        a,
        b,
        make_optimizer(name, a.parameters(), 0.01, 1e-3),
        make_optimizer(name, b.parameters(), 0.01, 1e-3),
    )


def _grads(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_lean_adam_step_is_optimizer_step(name: str) -> None:
    a, b, opt_a, opt_b = _twins(name)
    lean = fused.LeanAdamStep.for_optimizer(opt_a)
    assert lean is not None
    for step in range(6):
        if step == 3:  # a schedule changes the rate between steps
            for opt in (opt_a, opt_b):
                opt.param_groups[0]["lr"] = 0.003
        _grads(a, step)
        _grads(b, step)
        lean()
        opt_b.step()
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert opt_a.state_dict()["state"][0]["step"] == 6
    # State replaced (checkpoint) or cleared (divergence recovery): read again, same result.
    opt_a.load_state_dict(opt_b.state_dict())
    opt_a.state.clear()
    opt_b.state.clear()
    for step in range(6, 9):
        _grads(a, step)
        _grads(b, step)
        lean()
        opt_b.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_lean_step_only_for_plain_fused_adam() -> None:
    net = nn.Linear(3, 1)
    assert fused.LeanAdamStep.for_optimizer(make_optimizer("sgd", net.parameters(), 0.1, 0)) is None
    assert (
        fused.LeanAdamStep.for_optimizer(torch.optim.Adam(net.parameters(), amsgrad=True)) is None
    )
    assert fused.LeanAdamStep.for_optimizer(torch.optim.Adam(net.parameters())) is None
    assert fused.LeanAdamStep.for_optimizer(torch.optim.Adam(net.parameters(), fused=True))


# -- private torch kernels behind a fallback to the public optimizer.step() ------------------
def _fit_proba(**params):  # type: ignore[no-untyped-def]
    import numpy as np

    from steadyclf import BinaryClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    y = (X[:, 0] - X[:, 1] + 0.5 * rng.normal(size=400) > 0).astype(int)
    clf = BinaryClassifier(random_state=0, batch_size=64, max_epochs=15, **params).fit(X, y)
    return clf.predict_proba(X)[:, 1], y


@pytest.fixture
def fresh_checks():  # type: ignore[no-untyped-def]
    """The fused-kernel checks are cached per process: start and end with a clean cache."""
    fused._fused_works.cache_clear()
    fused.optimizer_class.cache_clear()
    yield
    fused._fused_works.cache_clear()
    fused.optimizer_class.cache_clear()


@pytest.mark.parametrize("kernel", ["_fused_adam_", "_fused_adamw_", "_foreach_add_"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_training_works_without_each_private_kernel(
    monkeypatch, fresh_checks, kernel, optimizer
) -> None:
    from sklearn.metrics import roc_auc_score

    reference, y = _fit_proba(optimizer=optimizer)
    monkeypatch.delattr(torch, kernel)
    fused._fused_works.cache_clear()  # as in a process that started without the kernel
    proba, _ = _fit_proba(optimizer=optimizer)
    # Without the kernel the fused optimizer is refused: torch's default (unfused) Adam
    # sums in another order, so the same model up to rounding, with the same quality.
    assert abs(roc_auc_score(y, proba) - roc_auc_score(y, reference)) < 1e-3


def test_a_failing_kernel_is_not_used(monkeypatch, fresh_checks) -> None:
    from sklearn.metrics import roc_auc_score

    reference, y = _fit_proba()

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("this torch's kernel takes other arguments")

    monkeypatch.setattr(torch, "_fused_adam_", broken)
    fused._fused_works.cache_clear()
    assert not make_optimizer("adam", [nn.Parameter(torch.zeros(2))], 0.1, 0.0).defaults["fused"]
    proba, _ = _fit_proba()
    assert abs(roc_auc_score(y, proba) - roc_auc_score(y, reference)) < 1e-3


def test_the_lean_step_falls_back_to_the_public_step_for_good() -> None:
    a, b = nn.Linear(3, 1), nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    opt_a = make_optimizer("adam", a.parameters(), 0.01, 0.0)
    opt_b = make_optimizer("adam", b.parameters(), 0.01, 0.0)
    calls: list[int] = []

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise TypeError("unexpected keyword argument 'maximize'")

    lean = fused.LeanAdamStep(opt_b, broken)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    for _ in range(4):
        for net, step in ((a, opt_a.step), (b, lean)):
            net.zero_grad()
            net(x).sum().backward()
            step()
    assert lean.broken and len(calls) == 1  # tried once, then the public step only
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert all(int(opt_b.state[p]["step"]) == 4 for p in b.parameters())


def test_optimizers_fall_back_to_torch_classes_and_unfused_steps(monkeypatch, fresh_checks) -> None:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    reference, y = _fit_proba()

    def refuse(cls):  # type: ignore[no-untyped-def]
        raise AttributeError("the wrappers changed")

    class NoFused(torch.optim.Adam):
        def __init__(self, params, **options):  # type: ignore[no-untyped-def]
            if options.get("fused"):
                raise RuntimeError("`fused=True` requires CUDA (torch < 2.4)")
            super().__init__(params, **options)

    monkeypatch.setattr(fused, "_without_lazy_dynamo", refuse)
    fused.optimizer_class.cache_clear()
    assert fused.optimizer_class("adam") is torch.optim.Adam
    monkeypatch.setitem(fused._PUBLIC, "adam", NoFused)
    fused.optimizer_class.cache_clear()
    fused._fused_works.cache_clear()
    opt = make_optimizer("adam", [nn.Parameter(torch.zeros(2))], 0.1, 0.0)
    assert type(opt) is NoFused and not opt.param_groups[0]["fused"]
    proba, _ = _fit_proba()
    # Unfused Adam sums in another order: the same model up to rounding, the same quality.
    assert abs(roc_auc_score(y, proba) - roc_auc_score(y, reference)) < 1e-3
    np.testing.assert_allclose(proba, reference, atol=1e-3)


def test_adamw_takes_the_weight_decay_it_is_given() -> None:
    params = [nn.Parameter(torch.zeros(2))]
    assert make_optimizer("adamw", params, 0.1, 0.0).param_groups[0]["weight_decay"] == 0.0
    assert make_optimizer("adamw", params, 0.1, 0.05).param_groups[0]["weight_decay"] == 0.05
    seen: list[float] = []

    class Look:
        def on_train_begin(self, trainer: Trainer) -> None:
            seen.append(trainer.optimizer.param_groups[0]["weight_decay"])

    import numpy as np

    from steadyclf import BinaryClassifier

    X = np.random.default_rng(0).normal(size=(100, 2))
    clf = BinaryClassifier(optimizer="adamw", weight_decay=0, max_epochs=2, random_state=0)
    clf.fit(X, (X[:, 0] > 0).astype(int), callbacks=[Look()])
    assert seen and set(seen) == {0.0} and clf.weight_decay_ == 0.0  # every member


def test_every_activation_has_hand_written_kernels() -> None:
    from steadyclf.nn.spec import ACTIVATIONS
    from steadyclf.nn.step import KERNELS

    assert {getattr(nn, a.module) for a in ACTIVATIONS.values()} == set(KERNELS)


def test_lean_adam_step_with_a_parameter_no_gradient_reached_yet() -> None:
    """An unused parameter has no optimizer state: the lean step falls back to
    ``optimizer.step()`` (it raised KeyError 'step' before) until every one has some."""
    a, b, opt_a, opt_b = _twins("adam")
    lean = fused.LeanAdamStep.for_optimizer(opt_a)
    assert lean is not None
    for step in range(5):
        _grads(a, step)
        _grads(b, step)
        if step < 2:  # the last parameter gets no gradient in the first two steps
            list(a.parameters())[-1].grad = None
            list(b.parameters())[-1].grad = None
        lean()
        opt_b.step()
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0)

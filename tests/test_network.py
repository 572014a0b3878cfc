import pytest
import torch

from steadyclf.nn.modules import SteadyNet
from steadyclf.nn.spec import Architecture, tensor_layout


def test_encoder_imputes_standardises_and_one_hots() -> None:
    net = SteadyNet(Architecture(2, 1, (4,), (5,), "tanh"))
    enc = net.encoder
    enc.impute.median.copy_(torch.tensor([10.0, 0.0], dtype=torch.float64))
    enc.impute.missing_columns.copy_(torch.tensor([0]))
    enc.normalize.center.copy_(torch.tensor([10.0, 1e6], dtype=torch.float64))
    enc.normalize.scale.copy_(torch.tensor([2.0, 1e-6], dtype=torch.float64))
    x = torch.tensor([[float("nan"), 1e6 + 1e-6], [12.0, 1e6 - 1e-6]], dtype=torch.float64)
    codes = torch.tensor([[0], [3]])
    out = enc(x, codes)
    assert out.dtype == torch.float32 and out.shape == (2, 2 + 1 + 4)
    torch.testing.assert_close(out[:, 0], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(out[:, 1], torch.tensor([1.0, -1.0]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out[:, 2], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(out[:, 3:], torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]))


def test_output_bias_and_logit_shape() -> None:
    net = SteadyNet(Architecture(3, 0, (), (4, 4), "relu"), prior_logit=-1.5)
    assert net.body[-1].bias.item() == -1.5
    assert net(torch.zeros(7, 3, dtype=torch.float64)).shape == (7,)


def test_batchnorm_option_adds_input_layer() -> None:
    net = SteadyNet(Architecture(3, 0, (), (4,), "relu", batchnorm=True))
    assert isinstance(net.body[0], torch.nn.BatchNorm1d)


def test_state_dict_names_are_recognisable() -> None:
    keys = SteadyNet(Architecture(2, 1, (3,), (4,), "relu")).state_dict().keys()
    assert {"encoder.normalize.center", "encoder.normalize.scale", "encoder.impute.median"} <= set(
        keys
    )


@pytest.mark.parametrize(
    "arch",
    [
        Architecture(3, 1, (4, 5), (8,), "relu"),
        Architecture(2, 0, (), (4, 4), "tanh", batchnorm=True),
        Architecture(0, 0, (3,), (6,), "gelu"),
        Architecture(4, 4, (2,), (), "sigmoid"),
    ],
)
def test_every_module_runs_on_the_meta_device(arch: Architecture) -> None:
    # A tensor made without device= lands on the CPU and fails here: the meta device
    # catches what a GPU would, without one.
    with torch.device("meta"):
        net = SteadyNet(arch).double()
        x = torch.empty(6, arch.n_numeric, dtype=torch.float64)
        codes = torch.zeros(6, len(arch.vocab_sizes), dtype=torch.int64)
        encoder = net.encoder
        values, indicators = encoder.impute(x)
        assert values.device.type == "meta"
        assert indicators is None or indicators.device.type == "meta"
        assert encoder.normalize(x).device.type == "meta"
        assert all(block.device.type == "meta" for block in encoder.categorical(codes))
        features = encoder(x, codes)
        assert features.device.type == "meta" and features.shape == (6, arch.n_features)
        logits = net(x, codes)
    assert logits.device.type == "meta" and logits.shape == (6,)


def test_the_layout_without_torch_matches_the_module() -> None:
    for arch in (
        Architecture(3, 1, (4, 5), (8, 3), "relu"),
        Architecture(2, 0, (), (4,), "tanh", batchnorm=True),
        Architecture(1, 0, (2,), (), "gelu"),
    ):
        state = SteadyNet(arch).double().state_dict()
        layout = tensor_layout(arch)
        assert set(layout) == set(state)
        for name, (shape, dtype) in layout.items():
            assert tuple(state[name].shape) == shape and str(state[name].dtype) == f"torch.{dtype}"
        assert arch.n_parameters == sum(p.numel() for p in SteadyNet(arch).parameters())

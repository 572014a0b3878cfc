import torch

from steadyclf.nn.modules import SteadyNet
from steadyclf.nn.spec import Architecture


def test_encoder_imputes_standardises_and_one_hots() -> None:
    net = SteadyNet(Architecture(2, 1, (4,), (5,), "tanh"))
    enc = net.encoder
    enc.impute.median.copy_(torch.tensor([10.0, 0.0], dtype=torch.float64))
    enc.impute.missing_columns.copy_(torch.tensor([0]))
    enc.normalize.mean.copy_(torch.tensor([10.0, 1e6], dtype=torch.float64))
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
    assert {"encoder.normalize.mean", "encoder.normalize.scale", "encoder.impute.median"} <= set(
        keys
    )

import pytest
import torch

from torchdiffusion.errors import ConfigError
from torchdiffusion.networks.unet import UNet, UNetConfig, count_parameters, timestep_embedding


@pytest.mark.parametrize("cfg", [
    dict(image_size=28, in_channels=1, base_channels=16, channel_mult=(1, 2, 2), attention_resolutions=(7,)),
    dict(image_size=32, in_channels=3, base_channels=16, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
         attention_resolutions=(16, 8)),
    dict(image_size=16, in_channels=4, out_channels=4, base_channels=8, channel_mult=(1,), attention_resolutions=()),
    dict(image_size=15, in_channels=1, base_channels=8, channel_mult=(1, 2, 2), attention_resolutions=(4,)),
    dict(image_size=8, in_channels=1, base_channels=8, channel_mult=(1, 2), attention_resolutions=(4,),
         num_classes=10),
    dict(image_size=8, in_channels=1, base_channels=8, channel_mult=(1, 2), attention_resolutions=(4,),
         context_dim=12, pooled_dim=12),
    dict(image_size=8, in_channels=3, base_channels=8, channel_mult=(1, 2), attention_resolutions=(),
         extra_in_channels=4),
])
def test_output_shape(cfg):
    config = UNetConfig(norm_groups=4, head_channels=8, **cfg)
    net = UNet(config)
    x = torch.randn(2, config.in_channels, config.image_size, config.image_size)
    kwargs = {}
    if config.num_classes:
        kwargs["class_labels"] = torch.tensor([3, 10])  # 10 = null class
    if config.context_dim:
        kwargs["context"] = torch.randn(2, 5, config.context_dim)
        kwargs["context_mask"] = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
        kwargs["pooled"] = torch.randn(2, config.pooled_dim)
    if config.extra_in_channels:
        kwargs["cond_image"] = torch.randn(2, config.extra_in_channels, config.image_size, config.image_size)
    out = net(x, torch.tensor([3.0, 500.5]), **kwargs)
    assert out.shape == (2, config.out_channels or config.in_channels, config.image_size, config.image_size)
    assert count_parameters(net) > 0


def test_output_depends_on_time_and_input():
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, base_channels=8, channel_mult=(1, 2), attention_resolutions=(4,),
                          norm_groups=4, head_channels=8))
    for p in net.parameters():  # zero-initialised output layers would hide the dependence
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(1, 1, 8, 8)
    a, b = net(x, torch.tensor([1.0])), net(x, torch.tensor([900.0]))
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, net(x + 0.1, torch.tensor([1.0])))


def test_timestep_embedding():
    e = timestep_embedding(torch.tensor([0.0, 10.0]), 16)
    assert e.shape == (2, 16)
    assert torch.allclose(e[0, :8], torch.ones(8)) and torch.allclose(e[0, 8:], torch.zeros(8))


def test_impossible_configs():
    with pytest.raises(ConfigError, match="attention resolution 5 is never reached"):
        UNet(UNetConfig(image_size=28, channel_mult=(1, 2, 2), attention_resolutions=(5,)))
    with pytest.raises(ConfigError, match="divisible"):
        UNet(UNetConfig(base_channels=12, norm_groups=8))
    with pytest.raises(ConfigError, match="channel_mult"):
        UNet(UNetConfig(channel_mult=()))
    with pytest.raises(ConfigError, match="unknown UNet config keys"):
        UNetConfig.from_dict({"image_size": 8, "widths": 3})


def test_wrong_input_channels():
    net = UNet(UNetConfig(image_size=8, base_channels=8, channel_mult=(1,), attention_resolutions=(),
                          norm_groups=4))
    with pytest.raises(ConfigError, match="expects 1 input channels, got 3"):
        net(torch.randn(1, 3, 8, 8), torch.tensor([1.0]))

import pytest
import torch

from torchdiffusion.denoiser.model import ModelConfig
from torchdiffusion.diffusion.schedules import ScheduleConfig
from torchdiffusion.networks.unet import UNetConfig


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_model_config(**unet_overrides) -> ModelConfig:
    """A U-Net small enough for a training step in a few milliseconds."""
    unet = dict(image_size=8, in_channels=1, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                attention_resolutions=(4,), head_channels=8, norm_groups=4)
    unet.update(unet_overrides)
    return ModelConfig(unet=UNetConfig(**unet), schedule=ScheduleConfig("cosine", 100), parameterization="v")


@pytest.fixture
def tiny_config():
    return tiny_model_config()


@pytest.fixture
def one_thread():
    """Tiny models: one thread is faster than two on a shared CPU (no OpenMP contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

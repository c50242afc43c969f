"""torchdiffusion: train, sample and edit with image diffusion models on PyTorch.

    from torchdiffusion import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("runs/mnist")
    images = pipe.generate(n=16, steps=50, seed=0)
"""

__version__ = "0.1.0"

from torchdiffusion.errors import CheckpointError, ConfigError, DataError, TorchDiffusionError  # noqa: E402
from torchdiffusion.denoiser.model import ModelConfig
from torchdiffusion.pipeline.folders import load_model, save_model
from torchdiffusion.diffusion.parameterization import Denoiser  # noqa: E402
from torchdiffusion.pipeline.pipeline import DiffusionPipeline  # noqa: E402
from torchdiffusion.diffusion.schedules import NoiseSchedule, ScheduleConfig  # noqa: E402
from torchdiffusion.networks.unet import UNet, UNetConfig  # noqa: E402

__all__ = ["DiffusionPipeline", "Denoiser", "ModelConfig", "NoiseSchedule", "ScheduleConfig", "UNet", "UNetConfig",
           "load_model", "save_model", "TorchDiffusionError", "ConfigError", "DataError", "CheckpointError"]

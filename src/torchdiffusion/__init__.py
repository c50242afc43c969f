"""torchdiffusion: train, sample and edit with image diffusion models on PyTorch.

    from torchdiffusion import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("runs/mnist")
    images = pipe.generate(n=16, steps=50, seed=0)
"""

__version__ = "0.1.0"

from torchdiffusion.errors import CheckpointError, ConfigError, DataError, TorchDiffusionError  # noqa: E402
from torchdiffusion.diffusion import NoiseSchedule, ScheduleConfig  # noqa: E402
from torchdiffusion.networks import Autoencoder, AutoencoderConfig, UNet, UNetConfig  # noqa: E402
from torchdiffusion.denoiser import CFGDenoiser, Denoiser, ModelConfig  # noqa: E402
from torchdiffusion.sampling import SAMPLER_REGISTRY, SamplingError, get_sampler, get_sigmas  # noqa: E402
from torchdiffusion.pipeline import DiffusionPipeline, load_model, save_model  # noqa: E402
from torchdiffusion.data import ImageDataset, load_dataset  # noqa: E402
from torchdiffusion.training import TrainConfig  # noqa: E402
from torchdiffusion import sampling, tasks  # noqa: E402,F401  module handles: td.sampling.sample_abm

__all__ = ["Autoencoder", "AutoencoderConfig", "CFGDenoiser", "CheckpointError", "ConfigError", "DataError",
           "Denoiser", "DiffusionPipeline", "ImageDataset", "ModelConfig", "NoiseSchedule", "SAMPLER_REGISTRY",
           "SamplingError", "ScheduleConfig", "TorchDiffusionError", "TrainConfig", "UNet", "UNetConfig",
           "get_sampler", "get_sigmas", "load_dataset", "load_model", "sampling", "save_model", "tasks"]

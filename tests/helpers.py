"""Builders shared by the tests (imported as ``from helpers import …``; ``tests/`` is on pytest's
``pythonpath``). Module-level helpers and parametrizations use them, so they are functions, not fixtures."""
import socket

import torch

from torchdiffusion.denoiser.model import ModelConfig, build_denoiser
from torchdiffusion.pipeline.folders import save_model
from torchdiffusion.diffusion.schedules import ScheduleConfig
from torchdiffusion.networks.unet import UNetConfig


def tiny_model_config(**unet_overrides) -> ModelConfig:
    """A U-Net small enough for a training step in a few milliseconds."""
    unet = dict(image_size=8, in_channels=1, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                attention_resolutions=(4,), head_channels=8, norm_groups=4)
    unet.update(unet_overrides)
    return ModelConfig(unet=UNetConfig(**unet), schedule=ScheduleConfig("cosine", 100), parameterization="v")


def make_models(root):
    """Two random tiny models: unconditional 'tiny' and class-conditional 'tiny-class'."""
    torch.manual_seed(0)
    cfg = tiny_model_config()
    save_model(root / "tiny", build_denoiser(cfg), cfg)
    cfg = tiny_model_config(num_classes=3)
    cfg.conditioning, cfg.class_names = "class", ["zero", "one", "two"]
    save_model(root / "tiny-class", build_denoiser(cfg), cfg)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

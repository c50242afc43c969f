"""The Python API for a trained model: load it, generate images.

    from torchdiffusion import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("runs/mnist")
    images = pipe.generate(n=16, steps=50, sampler="ddim", seed=0)      # (16, 1, 28, 28) in [-1, 1]
    pipe.to_pil(images)[0].save("digit.png")
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .errors import ConfigError
from .images import save_grid, to_pil
from .model import ModelConfig, load_model
from .parameterization import Denoiser
from . import samplers as sampling


def seeded_generators(seed: int, n: int) -> list[torch.Generator]:
    """One CPU generator per sample, seeded ``seed + i``: sample i is the same image whatever
    the batch size or the order it is generated in."""
    return [torch.Generator().manual_seed(int(seed) + i) for i in range(n)]


def initial_noise(shape: tuple[int, ...], generators: list[torch.Generator], sigma: float,
                  device="cpu") -> Tensor:
    """x_T = σ_max · z with z drawn per sample from its generator (on the CPU)."""
    z = torch.stack([torch.randn(shape, generator=g) for g in generators])
    return (z * sigma).to(device)


class DiffusionPipeline:
    """A denoiser with its config, ready to sample."""

    def __init__(self, denoiser: Denoiser, config: ModelConfig):
        self.denoiser = denoiser
        self.config = config

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> "DiffusionPipeline":
        denoiser, config = load_model(Path(path), device=device)
        return cls(denoiser, config)

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def image_shape(self) -> tuple[int, int, int]:
        u = self.config.unet
        return (u.in_channels, u.image_size, u.image_size)

    def sigmas(self, steps: int, sampler: str = "ddim") -> Tensor:
        return self.denoiser.schedule.sigmas_for_steps(steps)

    @torch.no_grad()
    def generate(self, n: int = 16, steps: int = 50, sampler: str = "ddim", seed: int = 0,
                 batch_size: int = 64, progress: bool = True, callback: Callable | None = None,
                 sampler_kwargs: dict | None = None) -> Tensor:
        """Generate ``n`` images in [-1, 1], shape (n, C, H, W)."""
        if n < 1:
            raise ConfigError(f"n must be ≥ 1, got {n}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be ≥ 1, got {batch_size}")
        fn = sampling.get_sampler(sampler)
        sigmas = self.sigmas(steps, sampler)
        gens = seeded_generators(seed, n)
        out = []
        bar = tqdm(total=n * (len(sigmas) - 1), desc=f"sampling ({sampler}, {steps} steps)", unit="step",
                   disable=not progress, leave=False)

        def on_step(info):
            bar.update(info["x"].shape[0])
            if callback is not None:
                callback(info)

        self.denoiser.eval()
        for start in range(0, n, batch_size):
            g = gens[start:start + batch_size]
            x = initial_noise(self.image_shape, g, float(sigmas[0]), self.device)
            out.append(fn(self.denoiser, x, sigmas, generator=g, callback=on_step, **(sampler_kwargs or {})).cpu())
        bar.close()
        return torch.cat(out).clamp(-1, 1)

    @staticmethod
    def to_pil(images: Tensor):
        return to_pil(images)

    @staticmethod
    def save_grid(images: Tensor, path: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
        return save_grid(images, Path(path), nrow=nrow, scale=scale)

"""Grids written during training, to watch it: sample grids, and (input, output, truth) rows of
image-conditioned models."""
from __future__ import annotations

import torch

from torchdiffusion.denoiser.image_conditions import downsample, random_masks
from torchdiffusion.io.images import save_grid
from torchdiffusion.pipeline import DiffusionPipeline
from torchdiffusion.tasks.inpaint import inpaint
from torchdiffusion.tasks.superres import upscale


@torch.no_grad()
def sample_grid(trainer, path, n: int, steps: int):
    """The training-time grid of an image-conditioned model: rows of (input, output, truth)
    for the first ``n // 3`` dataset images (fixed masks / low-res inputs, seeded)."""
    cfg = trainer.model_config.image_condition
    k = max(1, min(n // 3, 16))
    g = torch.Generator().manual_seed(trainer.cfg.seed)
    x = trainer.dataset.batch(torch.arange(k))
    pipe = DiffusionPipeline(trainer._ema_denoiser(), trainer.model_config)
    if cfg["kind"] == "inpaint":
        hole = random_masks(k, x.shape[-1], g)
        shown = x * (1 - hole)  # holes in mid-gray
        out = inpaint(pipe, x, hole, steps=steps, sampler=trainer.cfg.sampler, seed=trainer.cfg.seed).images
    else:
        f = int(cfg["factor"])
        low = downsample(x, f)
        shown = torch.nn.functional.interpolate(low, scale_factor=f, mode="nearest")
        out = upscale(pipe, low, steps=steps, sampler=trainer.cfg.sampler, seed=trainer.cfg.seed).images
    grid = torch.stack([shown, out, x], dim=1).flatten(0, 1)
    return save_grid(grid, path, nrow=6 if k >= 2 else 3, scale=2 if x.shape[-1] <= 32 else 1)

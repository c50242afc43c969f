"""The one seeding rule: image i of a call uses its own CPU generator seeded ``seed + i``, so an
image is the same whatever the batch size, the batch it falls in, or the device it runs on
(k-diffusion's ``torch.randn_like`` on the global RNG would make an image depend on its batch)."""
from __future__ import annotations

import torch
from torch import Tensor

from torchdiffusion.errors import ConfigError

__all__ = ["initial_noise", "noise_like", "seeded_generators"]


def seeded_generators(seed: int, n: int) -> list[torch.Generator]:
    """One CPU generator per sample, seeded ``seed + i``: sample i is the same image whatever
    the batch size or the order it is generated in."""
    return [torch.Generator().manual_seed(int(seed) + i) for i in range(n)]


def initial_noise(shape: tuple[int, ...], generators: list[torch.Generator], sigma: float = 1.0,
                  device="cpu") -> Tensor:
    """σ · z, z standard normal (N, *shape) drawn per sample from its generator (on the CPU), moved to ``device``."""
    z = torch.stack([torch.randn(shape, generator=g) for g in generators])
    return (z * sigma).to(device)


def noise_like(x: Tensor, generator) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn on the CPU from ``generator``: a
    ``torch.Generator`` or a list of one generator per sample (so that a seed gives the
    same image whatever the batch it is drawn in)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != x.shape[0]:
            raise ConfigError(f"got {len(generator)} generators for a batch of {x.shape[0]}")
        noise = torch.stack([torch.randn(x.shape[1:], generator=g, dtype=torch.float32) for g in generator])
    else:
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
    return noise.to(device=x.device, dtype=x.dtype)


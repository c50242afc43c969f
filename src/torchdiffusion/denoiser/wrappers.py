"""Denoiser wrappers: a wrapper is itself a denoiser D'(x, σ, **cond), so it runs under every sampler."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Bound", "CountingDenoiser", "DenoiserWrapper"]


class DenoiserWrapper(torch.nn.Module):
    """Base of denoiser wrappers: attributes it lacks (sigma_min, sigma_max, schedule, …) are
    those of the wrapped ``self.denoiser``."""

    def __init__(self, denoiser):
        super().__init__()
        self.denoiser = denoiser

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "denoiser":
                raise
            return getattr(self.denoiser, name)


class CountingDenoiser(DenoiserWrapper):
    """Wraps a denoiser and counts its calls (NFE, one per batched call) in ``nfe``."""

    def __init__(self, denoiser):
        super().__init__(denoiser)
        self.nfe = 0

    def forward(self, x, sigma, **cond):
        self.nfe += 1
        return self.denoiser(x, sigma, **cond)



class Bound(DenoiserWrapper):
    """D'(x, σ) = D(x, σ, **cond) with the condition fixed (per-sample tensors, batch first)."""

    def __init__(self, denoiser, **cond):
        super().__init__(denoiser)
        self.cond = {k: v for k, v in cond.items() if v is not None}

    def forward(self, x: Tensor, sigma, **cond) -> Tensor:
        return self.denoiser(x, sigma, **{**self.cond, **cond})

"""Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. 6).

With a network trained to also predict unconditionally (its condition dropped to a null
value during training), guidance extrapolates from the unconditional towards the
conditional prediction:

    ε̃ = ε_u + w (ε_c - ε_u),     equivalently  x̃₀ = x̂₀_u + w (x̂₀_c - x̂₀_u)

since x̂₀ = x - σ ε is affine in ε. w = 1 is plain conditional sampling, w = 0 unconditional.
Both predictions come from ONE batched forward pass over [x, x]. A negative prompt is simply
the "unconditional" branch's condition.

Guidance rescale (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
Flawed", eq. 15–16) pulls the guided ε̃ back to the per-sample standard deviation of ε_c:
ε_r = ε̃ · std(ε_c)/std(ε̃),  ε = φ ε_r + (1 - φ) ε̃, against over-saturation at large w.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .errors import ConfigError


def _cat_cond(cond: dict, uncond: dict) -> dict:
    if set(cond) != set(uncond):
        raise ConfigError(f"conditional and unconditional inputs differ in keys: {sorted(cond)} vs {sorted(uncond)}")
    out = {}
    for k in cond:
        a, b = cond[k], uncond[k]
        if a is None:
            out[k] = None
            continue
        if k in ("context", "context_mask") and a.shape[1] != b.shape[1]:  # pad token axes to one length
            length = max(a.shape[1], b.shape[1])
            a = torch.nn.functional.pad(a, (0, 0) * (a.ndim - 2) + (0, length - a.shape[1]))
            b = torch.nn.functional.pad(b, (0, 0) * (b.ndim - 2) + (0, length - b.shape[1]))
        out[k] = torch.cat([a, b])
    return out


class CFGDenoiser(nn.Module):
    """Wrap a denoiser D(x, σ, **cond) into the guided D̃(x, σ) (no condition arguments).

    ``cond``/``uncond`` are dicts of per-sample tensors (batch dim first) for the denoiser;
    ``guidance_scale`` w; ``guidance_rescale`` φ ∈ [0, 1].
    """

    def __init__(self, denoiser, cond: dict, uncond: dict, guidance_scale: float = 1.0,
                 guidance_rescale: float = 0.0):
        super().__init__()
        if not 0.0 <= guidance_rescale <= 1.0:
            raise ConfigError(f"guidance_rescale must be in [0, 1], got {guidance_rescale}")
        self.denoiser = denoiser
        self.cond, self.uncond = cond, uncond
        self.scale, self.rescale = float(guidance_scale), float(guidance_rescale)
        self.both = _cat_cond(cond, uncond)

    @property
    def sigma_min(self):
        return self.denoiser.sigma_min

    @property
    def sigma_max(self):
        return self.denoiser.sigma_max

    @property
    def schedule(self):
        return self.denoiser.schedule

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        if self.scale == 1.0:  # plain conditional: one forward of batch B
            return self.denoiser(x, sigma, **self.cond)
        if self.scale == 0.0:
            return self.denoiser(x, sigma, **self.uncond)
        b = x.shape[0]
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype).expand(b)
        d_c, d_u = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **self.both).split(b)
        guided = d_u + self.scale * (d_c - d_u)
        if self.rescale > 0:
            s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
            eps_c, eps_g = (x - d_c) / s, (x - guided) / s
            dims = tuple(range(1, x.ndim))
            eps_r = eps_g * eps_c.std(dim=dims, keepdim=True) / eps_g.std(dim=dims, keepdim=True).clamp(min=1e-8)
            eps = self.rescale * eps_r + (1 - self.rescale) * eps_g
            guided = x - s * eps
        return guided

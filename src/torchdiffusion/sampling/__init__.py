"""Samplers as plain functions ``sample_xxx(denoiser, x, sigmas, *, generator=None, callback=None, …)``
over the one contract D(x, σ, **cond) → x̂₀ (k-diffusion's), their σ-grids, and the registry of the
names users know ("DPM++ 2M Karras", "Euler a", …). This layer never imports a network, a
denoiser wrapper or a pipeline."""
from torchdiffusion.sampling.adams import sample_abm, sample_lms, sample_plms
from torchdiffusion.sampling.core import SamplingError
from torchdiffusion.sampling.exponential import (sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_3m,
                                                 sample_dpmpp_3m_sde, sample_unipc)
from torchdiffusion.sampling.grids import GRIDS, get_sigmas
from torchdiffusion.sampling.registry import (DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLER_REGISTRY,
                                              SAMPLERS, SamplerSpec, get_sampler, resolve_sampler, sampler_sigmas)
from torchdiffusion.sampling.runge_kutta import (sample_ddim, sample_ddpm, sample_euler, sample_euler_ancestral,
                                                 sample_heun)
from torchdiffusion.sampling.seeds import initial_noise, noise_like, seeded_generators

__all__ = ["DEFAULT_GUIDANCE", "DEFAULT_SAMPLER", "DEFAULT_STEPS", "GRIDS", "SAMPLERS", "SAMPLER_REGISTRY",
           "SamplerSpec", "SamplingError", "get_sampler", "get_sigmas", "initial_noise", "noise_like",
           "resolve_sampler", "sample_abm", "sample_ddim", "sample_ddpm", "sample_dpmpp_2m", "sample_dpmpp_2m_sde",
           "sample_dpmpp_3m", "sample_dpmpp_3m_sde", "sample_euler", "sample_euler_ancestral", "sample_heun",
           "sample_lms", "sample_plms", "sample_unipc", "sampler_sigmas", "seeded_generators"]

"""Samplers: plain functions ``sample_xxx(denoiser, x, sigmas, *, generator=None, callback=None, cond=None, ...)``.

Contract (k-diffusion's): ``denoiser(x, sigma, **cond)`` returns x̂₀ = D(x, σ) for
x = x₀ + σ ε, with ``sigma`` a (B,) tensor (EDM's σ-view; Karras et al. 2022, eq. 2);
``x`` starts as ``sigmas[0] * noise``; ``sigmas`` is a strictly decreasing 1-D tensor of
noise levels, usually from :func:`torchdiffusion.discretization.get_sigmas`, that ends
with 0. ``callback({"i", "x", "sigma", "sigma_next", "denoised"})`` is called after every
step (progress bars, live x̂₀ previews). ``generator`` is a ``torch.Generator`` or a list of
one per sample; noise is always drawn on the CPU, so per-sample generators give the same
image whatever the batch size and device.

Notation. h = λ_{i+1} - λ_i with λ = -log σ (for a VP model this is the half log-SNR
log(α/σ_vp) of DPM-Solver), φ_k are the exponential-integrator functions
φ_0(z) = e^z, φ_{k+1}(z) = (φ_k(z) - 1/k!)/z, and ε̂ = (x - D)/σ. In the σ-view the
probability-flow ODE (EDM eq. 4) reads

    dx/dσ = (x - D(x, σ))/σ,       equivalently     dx/dλ = D(x, λ) - x,

and its exact solution over one step is x_{i+1} = e^{-h} x_i + ∫_0^h e^{-(h-τ)} D(λ_i+τ) dτ
(DPM-Solver++, Lu et al. 2022b, eq. 8). The exponential integrators (DDIM, DPM++, UniPC)
differ in how they approximate D in that integral; LMS/PLMS/Euler/Heun integrate dx/dσ;
:func:`sample_abm` (the default) integrates the ODE in the angle φ = arctan(σ/σ_data).
Network evaluations (NFE) per grid of n steps (n+1 entries):

=====================  ======================================
sampler                NFE
=====================  ======================================
heun                   ≤ 2n - 1 (no correction on the step to 0, on steps
                       spanning > 10× in σ, nor into σ_min when n < 15)
all others             n
=====================  ======================================

Registry: :data:`SAMPLER_REGISTRY` maps the names users know from web UIs and diffusers
("DPM++ 2M Karras", "Euler a", "UniPC", …) to a :class:`SamplerSpec` (function, σ-grid,
keyword arguments, diffusers equivalent); :func:`resolve_sampler` accepts those names and
the function names, case-insensitively. docs/samplers.md has the table and the benchmark.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from torchdiffusion.diffusion.schedules import NoiseSchedule
from torchdiffusion.errors import ConfigError
from torchdiffusion.sampling.grids import grid_sigmas
from torchdiffusion.sampling.core import LOWER_ORDER_FINAL_STEPS
from torchdiffusion.sampling.runge_kutta import _heun_corrects, sample_ddim, sample_ddpm, sample_euler, sample_euler_ancestral, sample_heun
from torchdiffusion.sampling.exponential import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_3m, sample_dpmpp_3m_sde, sample_unipc
from torchdiffusion.sampling.adams import sample_abm, sample_lms, sample_plms


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplerSpec:
    """A named sampler: its function, its σ-grid and fixed keyword arguments.

    ``spec(denoiser, x, sigmas, **kw)`` runs it (``kw`` override ``kwargs``);
    ``spec.sigmas(model, steps)`` gives its grid; ``spec.nfe(steps)`` the network evaluations.
    ``diffusers`` names the equivalent diffusers scheduler configuration.
    """

    name: str
    fn: Callable
    grid: str
    kwargs: dict = field(default_factory=dict)
    diffusers: str = ""
    stochastic: bool = False

    def __call__(self, denoiser, x: Tensor, sigmas: Tensor, **kwargs) -> Tensor:
        k = getattr(denoiser, "distilled_steps", None)
        if k is not None and self.fn is not sample_ddim:
            raise ConfigError(f"this model is a {k}-step distilled student: it samples with the sampler 'Distilled' (DDIM, the "
                              f"sampler it was distilled for), not {self.name!r}")
        return self.fn(denoiser, x, sigmas, **{**self.kwargs, **kwargs})

    def sigmas(self, model, steps: int, **grid_kwargs) -> Tensor:
        """This sampler's σ-grid with ``steps`` noise levels for ``model`` (:func:`~torchdiffusion.sampling.grids.grid_sigmas`)."""
        return grid_sigmas(model, self.grid, steps, **grid_kwargs)

    def nfe(self, steps: int, sigmas: Tensor | None = None) -> int:
        """Network evaluations on ``sigmas`` (default: this sampler's grid for a generic VP
        model would differ only for Heun, so pass the grid you sample on to count Heun exactly).
        One per step; Heun adds one per corrected step (:func:`sample_heun`)."""
        if self.fn is not sample_heun:
            return steps
        if sigmas is None:  # without a grid: Heun's usual count, 2·steps - 1 less the short-grid final
            return 2 * steps - 1 - int(self.kwargs.get("lower_order_final", True) and 2 <= steps < LOWER_ORDER_FINAL_STEPS)
        lof = self.kwargs.get("lower_order_final", True)
        ratio = self.kwargs.get("max_step_ratio", 10.0)
        return steps + sum(_heun_corrects(sigmas, i, lof, ratio) for i in range(len(sigmas) - 1))


SAMPLERS: dict[str, Callable] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "lms": sample_lms,
    "plms": sample_plms,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_3m": sample_dpmpp_3m,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "unipc": sample_unipc,
    "abm": sample_abm,
}
"""Our samplers by snake name (each also in :data:`SAMPLER_REGISTRY`, on its default grid)."""

_DPM = "DPMSolverMultistepScheduler"
_REGISTRY_ROWS = [
    # familiar name, snake function, grid, kwargs, diffusers equivalent
    ("DDPM", "ddpm", "trailing", {}, "DDPMScheduler(timestep_spacing='trailing')"),
    ("DDIM", "ddim", "trailing", {}, "DDIMScheduler(timestep_spacing='trailing', set_alpha_to_one=True)"),
    ("Euler", "euler", "linspace", {}, "EulerDiscreteScheduler()"),
    ("Euler Karras", "euler", "karras", {}, "EulerDiscreteScheduler(use_karras_sigmas=True)"),
    ("Euler a", "euler_ancestral", "linspace", {}, "EulerAncestralDiscreteScheduler()"),
    ("Heun", "heun", "linspace", {}, "HeunDiscreteScheduler()"),
    ("Heun Karras", "heun", "karras", {}, "HeunDiscreteScheduler(use_karras_sigmas=True)  (EDM's sampler)"),
    ("LMS", "lms", "linspace", {}, "LMSDiscreteScheduler()"),
    ("LMS Karras", "lms", "karras", {}, "LMSDiscreteScheduler(use_karras_sigmas=True)"),
    ("PLMS", "plms", "linspace", {}, "PNDMScheduler(skip_prk_steps=True)"),
    ("DPM++ 2M", "dpmpp_2m", "linspace", {}, f"{_DPM}()"),
    ("DPM++ 2M Karras", "dpmpp_2m", "karras", {}, f"{_DPM}(use_karras_sigmas=True)"),
    ("DPM++ 2M Exponential", "dpmpp_2m", "exponential", {}, f"{_DPM}(use_exponential_sigmas=True)"),
    ("DPM++ 2M logSNR", "dpmpp_2m", "logsnr", {}, f"{_DPM}(use_lu_lambdas=True)"),
    ("DPM++ 2M SDE", "dpmpp_2m_sde", "linspace", {}, f"{_DPM}(algorithm_type='sde-dpmsolver++')"),
    ("DPM++ 2M SDE Karras", "dpmpp_2m_sde", "karras", {},
     f"{_DPM}(algorithm_type='sde-dpmsolver++', use_karras_sigmas=True)"),
    ("DPM++ 2M SDE Exponential", "dpmpp_2m_sde", "exponential", {},
     f"{_DPM}(algorithm_type='sde-dpmsolver++', use_exponential_sigmas=True)"),
    ("DPM++ 3M", "dpmpp_3m", "linspace", {}, f"{_DPM}(solver_order=3)"),
    ("DPM++ 3M Karras", "dpmpp_3m", "karras", {}, f"{_DPM}(solver_order=3, use_karras_sigmas=True)"),
    ("DPM++ 3M SDE", "dpmpp_3m_sde", "linspace", {}, f"{_DPM}(solver_order=3, algorithm_type='sde-dpmsolver++')"),
    ("DPM++ 3M SDE Karras", "dpmpp_3m_sde", "karras", {},
     f"{_DPM}(solver_order=3, algorithm_type='sde-dpmsolver++', use_karras_sigmas=True)"),
    ("DPM++ 3M SDE Exponential", "dpmpp_3m_sde", "exponential", {},
     f"{_DPM}(solver_order=3, algorithm_type='sde-dpmsolver++', use_exponential_sigmas=True)"),
    ("UniPC", "unipc", "linspace", {"variant": "bh2"}, "UniPCMultistepScheduler(solver_order=3, solver_type='bh2')"),
    ("UniPC bh1", "unipc", "linspace", {"variant": "bh1"},
     "UniPCMultistepScheduler(solver_order=3, solver_type='bh1')"),
    ("UniPC Karras", "unipc", "karras", {"variant": "bh2"},
     "UniPCMultistepScheduler(solver_order=3, use_karras_sigmas=True)"),
    ("ABM", "abm", "angle_clustered", {}, "none (closest: UniPCMultistepScheduler, DEISMultistepScheduler)"),
    # a distilled student's sampler (training/distill.py): DDIM on the trailing grid it was distilled on
    ("Distilled", "ddim", "trailing", {}, "DDIMScheduler(timestep_spacing='trailing') on the student"),
]

# Our snake names run on the grid that suits each sampler best on benchmarks/samplers.py.
_SNAKE_GRIDS = {"ddpm": "trailing", "ddim": "trailing", "euler_ancestral": "linspace", "abm": "angle_clustered",
                "dpmpp_2m": "logsnr", "dpmpp_3m": "logsnr", "unipc": "logsnr"}
_DEFAULT_SNAKE_GRID = "karras"
_STOCHASTIC = {"ddpm", "euler_ancestral", "dpmpp_2m_sde", "dpmpp_3m_sde"}


def _key(name: str) -> str:
    return " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())


def _build_registry() -> dict[str, SamplerSpec]:
    """Familiar names first; a snake name that reads the same (``'euler'`` ~ "Euler") is an
    alias of the familiar entry, the others run on their best grid."""
    registry: dict[str, SamplerSpec] = {}
    for name, snake, grid, kwargs, diffusers in _REGISTRY_ROWS:
        registry[name] = SamplerSpec(name, SAMPLERS[snake], grid, kwargs, diffusers, snake in _STOCHASTIC)
    by_key = {_key(name): spec for name, spec in registry.items()}
    for snake, fn in SAMPLERS.items():
        registry[snake] = by_key.get(_key(snake)) or SamplerSpec(
            snake, fn, _SNAKE_GRIDS.get(snake, _DEFAULT_SNAKE_GRID), {}, "", snake in _STOCHASTIC)
    return registry


SAMPLER_REGISTRY: dict[str, SamplerSpec] = _build_registry()
"""Familiar names ("DPM++ 2M Karras", "Euler a", …) and snake names ('dpmpp_2m') → :class:`SamplerSpec`."""

# The defaults of generation at every entry point (Python API, CLI, web UI, the trainer's grids
# and evaluation), written once here and chosen by measurement on the default quickstart model
# (benchmarks/fast_generation.py, docs/samplers.md "On a trained model"): ABM at 10 steps has the
# FID of DDIM at 50 (MNIST-classifier features, N = 500: 2.41 against 2.42) and the best FID at
# 8–10 NFE of every registered sampler; guiding only for σ > 1 (4 of its 10 steps) lowers FID
# further (2.19) at the same class accuracy (99.0 %) and costs 1.7× less than guiding every step.
DEFAULT_SAMPLER = "ABM"
DEFAULT_STEPS = 10
DEFAULT_GUIDANCE = 2.0  # classifier-free guidance scale w of generation (1 = plain conditional, 0 = unconditional)
DEFAULT_GUIDANCE_INTERVAL = (1.0, float("inf"))  # guide only for σ_lo < σ ≤ σ_hi (Kynkäänniemi et al. 2024)
# The editing tasks (inpaint, img2img, upscale, seed/class walks) replace or project their image
# once per step, so they want more steps than generation; they were measured (docs/editing.md,
# benchmarks/editing_defaults.py) with DDIM at 50 steps, and keep it.
EDIT_SAMPLER = "DDIM"
EDIT_STEPS = 50
# Zero-shot super-resolution samples with DDPM: its ancestral steps keep the projected samples on
# the data manifold better than a deterministic ODE (quickstart MNIST model, ×4 from 7×7, the true
# class, w = 2, N = 100 test digits: DDPM 50 steps 15.70 dB PSNR, DDIM 14.45 dB, bicubic 14.59 dB).
UPSCALE_SAMPLER = "DDPM"


# Other tools' spellings of the same samplers (ComfyUI's KSampler names, k-diffusion's sample_*,
# InvokeAI's k_*, short forms people type); each maps to the registry entry that computes the same thing.
SAMPLER_ALIASES = {
    "euler a": "Euler a", "euler ancestral": "Euler a", "k euler a": "Euler a", "k euler": "Euler",
    "k heun": "Heun", "k lms": "LMS", "pndm": "PLMS", "k dpmpp 2m": "DPM++ 2M", "dpm++ 2m sde": "DPM++ 2M SDE",
    "dpmpp 2m karras": "DPM++ 2M Karras", "dpmpp 2m sde karras": "DPM++ 2M SDE Karras",
    "dpmpp sde": "DPM++ 2M SDE", "dpm++ sde": "DPM++ 2M SDE", "dpmpp sde karras": "DPM++ 2M SDE Karras",
    "dpm++ sde karras": "DPM++ 2M SDE Karras", "dpmpp 3m sde karras": "DPM++ 3M SDE Karras",
    "uni pc": "UniPC bh1", "uni pc bh2": "UniPC", "unipc bh2": "UniPC", "dpm solver++": "DPM++ 2M",
    "dpmsolver++": "DPM++ 2M", "dpm solver": "DPM++ 2M", "adams": "ABM", "adams bashforth moulton": "ABM",
}
# Names of samplers other tools have and torchdiffusion does not, with the nearest one we have.
_NOT_HERE = {"dpm2": "Heun", "dpm2 a": "Euler a", "dpm 2": "Heun", "dpm 2 ancestral": "Euler a",
             "dpm2 karras": "Heun Karras", "dpm2 a karras": "Euler a", "dpm fast": "DPM++ 2M",
             "dpm adaptive": "DPM++ 2M", "restart": "Heun Karras", "deis": "UniPC", "lcm": "DDIM",
             "dpmpp 2s ancestral": "Euler a", "dpm++ 2s a": "Euler a", "dpm++ 2s a karras": "Euler a",
             "ipndm": "PLMS", "res multistep": "DPM++ 2M"}


def _lookup_key(name) -> str:
    key = _key(name)
    for prefix in ("sample ", "k "):  # k-diffusion's sample_euler, InvokeAI's k_euler
        if key.startswith(prefix) and key not in SAMPLER_ALIASES and key[len(prefix):] in _LOOKUP:
            return key[len(prefix):]
    return _key(SAMPLER_ALIASES.get(key, key))


_LOOKUP = {_key(name): spec for name, spec in SAMPLER_REGISTRY.items()}


def resolve_sampler(name: str) -> SamplerSpec:
    """The :class:`SamplerSpec` for a familiar name ("DPM++ 2M Karras", "euler a") or a snake
    name ('dpmpp_2m'); case, '_' and '-' do not matter. Unknown names raise
    :class:`ConfigError` listing the valid ones."""
    if isinstance(name, SamplerSpec):
        return name
    if not isinstance(name, str):
        raise ConfigError(f"a sampler is given by name (a string), got {name!r}")
    spec = _LOOKUP.get(_lookup_key(name))
    if spec is None and _key(name) in _NOT_HERE:
        raise ConfigError(f"sampler {name!r} (of other tools) is not in torchdiffusion; the nearest we have is "
                          f"{_NOT_HERE[_key(name)]!r} (`torchdiffusion samplers` lists them all)")
    if spec is None:
        familiar = [row[0] for row in _REGISTRY_ROWS]
        raise ConfigError(f"unknown sampler {name!r}; valid samplers: {', '.join(familiar)} "
                          f"(or the function names {', '.join(SAMPLERS)})")
    return spec


def get_sampler(name: str) -> SamplerSpec:
    """The sampler callable for ``name`` (see :func:`resolve_sampler`):
    ``get_sampler(name)(denoiser, x, sigmas, generator=…, callback=…, cond=…)``."""
    return resolve_sampler(name)


def sampler_sigmas(name: str, model, steps: int, **grid_kwargs) -> Tensor:
    """The σ-grid the sampler ``name`` is registered with, for ``model`` and ``steps``."""
    return resolve_sampler(name).sigmas(model, steps, **grid_kwargs)

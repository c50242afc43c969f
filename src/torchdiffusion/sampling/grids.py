"""σ-grids ("discretizations"): at which noise levels a sampler evaluates the denoiser.

Every grid here is a descending float64 tensor ``[σ_0 = σ_hi, …, σ_{n-1} = σ_lo, 0]`` of
``steps + 1`` entries: ``steps`` noise levels inside the network's trained range
[σ_min, σ_max], then a final 0. Because the last noise level is the smallest the network
knows (σ_min; for a linear VP schedule 0.01, about 1/100 of the data range), the final
step σ_lo → 0 is tiny: it removes the last bit of noise instead of replacing a noisy image
by a blurry posterior mean (the failure of grids whose last step starts from a large σ).
Exceptions: the 'trailing' and 'leading' t-spacings are kept as their papers define them
('trailing' ends at t = T/n - 1, so at low n its last step is large).

Grids (names for :func:`get_sigmas`):

* ``karras``: EDM's ρ-spacing (Karras et al. 2022, eq. 5),
  σ_i = (σ_max^{1/ρ} + i/(n-1) (σ_min^{1/ρ} - σ_max^{1/ρ}))^ρ, ρ = 7.
* ``exponential``: uniform in log σ (k-diffusion's ``get_sigmas_exponential``).
* ``logsnr``: uniform in the half log-SNR λ = log(α/σ_vp) (Lu et al. 2022, "DPM-Solver", §3.3,
  the grid DPM-Solver recommends; diffusers' ``use_lu_lambdas``). For a VP model in EDM's
  σ-view λ = -log σ exactly, so this is the same grid as ``exponential``; both names are kept
  because users know both.
* ``polyexponential``: log σ on a ρ-warped ramp (k-diffusion's ``get_sigmas_polyexponential``);
  ρ = 1 is ``exponential``, ρ > 1 puts more steps at low noise.
* ``angle``: uniform in φ = arctan(σ/σ_data), the angle of the v-parameterization (Salimans &
  Ho 2022); short steps where σ is near the data scale, few where σ ≫ σ_data.
* ``angle_clustered``: the angle grid with its nodes moved towards both ends of the φ interval,
  a blend of uniform and Chebyshev–Gauss–Lobatto nodes (see :func:`clustered_angle_sigmas`);
  the grid of :func:`~torchdiffusion.samplers.sample_abm`.
* ``linspace``, ``trailing``, ``leading``: uniform in the discrete timestep t of a VP schedule
  (DDIM, Song et al. 2021; Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps
  are Flawed", Table 2), via :meth:`NoiseSchedule.timesteps_for_steps`; these need a model
  with a ``schedule``.

All grids are computed in continuous σ: a σ between two table entries is evaluated at a
fractional timestep (``NoiseSchedule.t``), never rounded, so no grid can collapse two steps
onto one timestep (diffusers' failure with Karras σ on a cosine schedule).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from torchdiffusion.errors import ConfigError
from torchdiffusion.diffusion.schedules import NoiseSchedule

T_SPACINGS = ("linspace", "trailing", "leading")
GRIDS = ("karras", "exponential", "logsnr", "polyexponential", "angle", "angle_clustered") + T_SPACINGS
_RANGE_TOLERANCE = 1e-4  # relative slack for σ values that went through float32


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) and not (hasattr(steps, "__index__")):
        raise ConfigError(f"steps must be an integer ≥ 1, got {steps!r}")
    steps = int(steps)
    if steps < 1:
        raise ConfigError(f"steps must be ≥ 1, got {steps}")
    return steps


def _check_range(sigma_min: float, sigma_max: float) -> tuple[float, float]:
    sigma_min, sigma_max = float(sigma_min), float(sigma_max)
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max)) or not 0 < sigma_min <= sigma_max:
        raise ConfigError(f"need 0 < sigma_min ≤ sigma_max (finite), got sigma_min={sigma_min}, sigma_max={sigma_max}")
    return sigma_min, sigma_max


def _with_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas.to(torch.float64), sigmas.new_zeros(1, dtype=torch.float64)])


def _exact_ends(sigmas: Tensor, sigma_min: float, sigma_max: float) -> Tensor:
    """Pin the ends to σ_max and σ_min exactly (the formulas round by an ulp or so)."""
    sigmas[0], sigmas[-1] = sigma_max, sigma_min
    return sigmas


def _single(sigma_max: float) -> Tensor:
    """One step: straight from σ_max to 0 (the only grid with steps = 1)."""
    return _with_zero(torch.tensor([sigma_max], dtype=torch.float64))


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """EDM ρ-spacing (Karras et al. 2022, eq. 5): uniform in σ^{1/ρ} from σ_max to σ_min, then 0."""
    steps = _check_steps(steps)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    if rho <= 0:
        raise ConfigError(f"rho must be > 0, got {rho}")
    if steps == 1:
        return _single(sigma_max)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _with_zero(_exact_ends((hi + ramp * (lo - hi)) ** rho, sigma_min, sigma_max))


def exponential_sigmas(steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Uniform in log σ from σ_max to σ_min, then 0."""
    return polyexponential_sigmas(steps, sigma_min, sigma_max, rho=1.0)


def logsnr_sigmas(steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Uniform in λ = log(α/σ_vp) = -log σ (DPM-Solver, Lu et al. 2022, §3.3), then 0."""
    steps = _check_steps(steps)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    if steps == 1:
        return _single(sigma_max)
    lambdas = torch.linspace(-math.log(sigma_max), -math.log(sigma_min), steps, dtype=torch.float64)
    return _with_zero(_exact_ends(torch.exp(-lambdas), sigma_min, sigma_max))


def polyexponential_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> Tensor:
    """log σ = log σ_min + (1 - u)^ρ (log σ_max - log σ_min), u uniform in [0, 1]; then 0."""
    steps = _check_steps(steps)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    if rho <= 0:
        raise ConfigError(f"rho must be > 0, got {rho}")
    if steps == 1:
        return _single(sigma_max)
    ramp = torch.linspace(1, 0, steps, dtype=torch.float64) ** rho
    sigmas = torch.exp(math.log(sigma_min) + ramp * (math.log(sigma_max) - math.log(sigma_min)))
    return _with_zero(_exact_ends(sigmas, sigma_min, sigma_max))


def angle_sigmas(steps: int, sigma_min: float, sigma_max: float, sigma_data: float = 0.5, rho: float = 1.0) -> Tensor:
    """Uniform in the angle φ = arctan(σ/σ_data) of the v-parameterization (Salimans & Ho
    2022, §4), from σ_max to σ_min, then 0: σ_i = σ_data tan(φ_max + u_i^ρ (φ_min - φ_max)),
    u uniform in [0, 1] (ρ > 1: more steps at low noise). For a cosine VP schedule and
    σ_data = 1 this is uniform in t. Steps are short where σ is comparable to the data scale
    σ_data, where the denoiser changes fastest, and few are spent at σ ≫ σ_data."""
    steps = _check_steps(steps)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    if sigma_data <= 0 or rho <= 0:
        raise ConfigError(f"sigma_data and rho must be > 0, got {sigma_data}, {rho}")
    if steps == 1:
        return _single(sigma_max)
    hi, lo = math.atan(sigma_max / sigma_data), math.atan(sigma_min / sigma_data)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64) ** rho
    return _with_zero(_exact_ends(sigma_data * torch.tan(hi + ramp * (lo - hi)), sigma_min, sigma_max))


ANGLE_CLUSTER_MAX = 0.5
"""Clustering :func:`clustered_angle_sigmas` reaches from 10 steps on (``cluster=None``)."""


def default_angle_cluster(steps: int) -> float:
    """The clustering of the 'angle_clustered' grid for ``steps`` steps: 0 (uniform) up to 5
    steps, rising linearly to :data:`ANGLE_CLUSTER_MAX` at 10 steps and staying there. Moving
    nodes to the ends pays once the end steps become shorter than the layers they resolve; with
    very few steps the longer middle steps cost more than the ends gain."""
    return min(ANGLE_CLUSTER_MAX, max(0.0, (steps - 5) / 10))


def clustered_angle_sigmas(steps: int, sigma_min: float, sigma_max: float, sigma_data: float = 0.5,
                           cluster: float | None = None) -> Tensor:
    """The angle grid with nodes clustered at both ends of [φ_min, φ_max], φ = arctan(σ/σ_data):

        φ_i = φ_max + r(t_i) (φ_min - φ_max),   t_i = i/(n-1),
        r(t) = (1 - c) t + c (1 - cos πt)/2,

    a blend, with weight c = ``cluster`` ∈ [0, 1], of uniform nodes (c = 0, the 'angle' grid)
    and the Chebyshev–Gauss–Lobatto nodes of the interval (c = 1; Trefethen, "Approximation
    Theory and Approximation Practice", ch. 2). r is strictly increasing; for c < 1 and many
    steps the middle steps are (1 - c + cπ/2)/(1 - c) times the end ones (2.6 at c = 1/2,
    2.1 with 12 steps). ``cluster=None`` takes
    :func:`default_angle_cluster` (1/2 from 10 steps on).

    Why the ends: the angle is a finite interval with a boundary layer at each end. At φ → π/2
    (σ ≫ σ_data) the posterior over the coarse structure of the data (which mode, which class)
    is decided, in a window of 1/σ set by the distances between modes; at φ → 0 the per-direction
    solution x = μ + c sqrt(s² + σ²) bends on the scale σ ≈ s of the data's small variances.
    Between them the slope of :func:`~torchdiffusion.samplers.sample_abm` is nearly constant
    (exactly so for Gaussian data of std σ_data). Measured along probability-flow trajectories
    of Gaussian mixtures (docs/samplers.md), the 4th φ-derivative of that slope is 10²–10³ times
    larger in the two end windows than in the middle. Chebyshev points are the classical
    node family that clusters at both ends of an interval; halfway to them (c = 1/2) is the
    default, not a value fitted to one problem (0.4–0.6 perform alike on every mixture tried).
    """
    steps = _check_steps(steps)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    if sigma_data <= 0:
        raise ConfigError(f"sigma_data must be > 0, got {sigma_data}")
    c = default_angle_cluster(steps) if cluster is None else float(cluster)
    if not 0.0 <= c <= 1.0:
        raise ConfigError(f"cluster must be in [0, 1] (0: uniform in the angle, 1: Chebyshev nodes), got {cluster}")
    if steps == 1:
        return _single(sigma_max)
    hi, lo = math.atan(sigma_max / sigma_data), math.atan(sigma_min / sigma_data)
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    ramp = (1 - c) * t + c * (1 - torch.cos(math.pi * t)) / 2
    return _with_zero(_exact_ends(sigma_data * torch.tan(hi + ramp * (lo - hi)), sigma_min, sigma_max))


def schedule_sigmas(schedule: NoiseSchedule, steps: int, spacing: str = "linspace") -> Tensor:
    """σ of the discrete timesteps of ``schedule`` chosen by ``spacing``, then 0."""
    steps = _check_steps(steps)
    if spacing not in T_SPACINGS:
        raise ConfigError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(T_SPACINGS)}")
    if steps == 1 and spacing != "leading":  # one step: from the top (linspace would pick t = 0)
        return _single(schedule.sigma_max)
    ts = schedule.timesteps_for_steps(steps, spacing)
    return _with_zero(schedule.sigmas[ts])


def _model_range(model) -> tuple[float, float]:
    if isinstance(model, NoiseSchedule):
        return model.sigma_min, model.sigma_max
    try:
        return float(model.sigma_min), float(model.sigma_max)
    except AttributeError:
        raise ConfigError(f"{type(model).__name__} has no sigma_min/sigma_max: pass sigma_min= and sigma_max= "
                          "to get_sigmas, or a NoiseSchedule") from None


def _model_schedule(model) -> NoiseSchedule | None:
    return model if isinstance(model, NoiseSchedule) else getattr(model, "schedule", None)


def get_sigmas(model, grid: str, steps: int, *, sigma_min: float | None = None, sigma_max: float | None = None,
               rho: float | None = None, sigma_data: float | None = None, cluster: float | None = None) -> Tensor:
    """The σ-grid ``grid`` with ``steps`` noise levels for ``model`` (a denoiser with
    ``sigma_min``/``sigma_max``, or a :class:`NoiseSchedule`), ending in 0.

    ``sigma_min``/``sigma_max`` narrow the range (e.g. σ_max < the model's for img2img);
    they must lie inside the model's trained range, else :class:`ConfigError`. ``rho`` is
    the ρ of 'karras' (default 7), 'polyexponential' (default 1) and 'angle' (default 1);
    ``sigma_data`` the data scale of 'angle' and 'angle_clustered' (default 0.5, EDM's for
    images in [-1, 1]); ``cluster`` the clustering of 'angle_clustered' (default by steps, see
    :func:`default_angle_cluster`).
    """
    steps = _check_steps(steps)
    name = str(grid).lower()
    if name not in GRIDS:
        raise ConfigError(f"unknown σ-grid {grid!r}; valid grids: {', '.join(GRIDS)}")
    lo_model, hi_model = _model_range(model) if model is not None else (None, None)
    lo = lo_model if sigma_min is None else float(sigma_min)
    hi = hi_model if sigma_max is None else float(sigma_max)
    if lo is None or hi is None:
        raise ConfigError("no σ range: pass a model with sigma_min/sigma_max, or sigma_min= and sigma_max=")
    lo, hi = _check_range(lo, hi)
    if lo_model is not None and (lo < lo_model * (1 - _RANGE_TOLERANCE) or hi > hi_model * (1 + _RANGE_TOLERANCE)):
        raise ConfigError(f"σ range [{lo:.4g}, {hi:.4g}] is outside the model's trained range "
                          f"[{lo_model:.4g}, {hi_model:.4g}]")
    if name in T_SPACINGS:
        schedule = _model_schedule(model)
        if schedule is None:
            raise ConfigError(f"grid {name!r} is uniform in the timesteps of a discrete VP schedule; this model "
                              f"has none (use karras, exponential or logsnr)")
        if sigma_min is not None or sigma_max is not None:
            raise ConfigError(f"grid {name!r} uses the schedule's own timesteps; sigma_min/sigma_max only apply to "
                              "the grids defined in σ (karras, exponential, logsnr, polyexponential, angle, "
                              "angle_clustered)")
        return schedule_sigmas(schedule, steps, name)
    if name == "karras":
        return karras_sigmas(steps, lo, hi, 7.0 if rho is None else rho)
    if name == "polyexponential":
        return polyexponential_sigmas(steps, lo, hi, 1.0 if rho is None else rho)
    if name == "exponential":
        return exponential_sigmas(steps, lo, hi)
    if name == "angle_clustered":
        return clustered_angle_sigmas(steps, lo, hi, 0.5 if sigma_data is None else sigma_data, cluster)
    if name == "angle":
        return angle_sigmas(steps, lo, hi, 0.5 if sigma_data is None else sigma_data, 1.0 if rho is None else rho)
    return logsnr_sigmas(steps, lo, hi)


def check_sigmas(sigmas, model=None) -> Tensor:
    """Validate a σ-grid for sampling and return it as float64 on the CPU.

    It must be 1-D with at least 2 entries (one step), finite, strictly decreasing, positive
    except a final 0; with a ``model`` that has ``sigma_min``/``sigma_max``, its positive
    entries must lie in that trained range (up to float32 rounding).
    """
    sigmas = torch.as_tensor(sigmas)
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ConfigError(f"a σ-grid is a 1-D tensor of at least 2 noise levels (steps ≥ 1), got shape "
                          f"{tuple(sigmas.shape)}")
    sigmas = sigmas.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(sigmas).all()):
        raise ConfigError(f"σ-grid contains NaN or inf: {sigmas.tolist()}")
    if not bool((sigmas[:-1] > 0).all()) or float(sigmas[-1]) < 0:
        raise ConfigError("σ-grid must be positive, except a final 0")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ConfigError(f"σ-grid must be strictly decreasing (no repeated noise levels), got {sigmas.tolist()}")
    if model is not None:
        try:
            lo, hi = float(model.sigma_min), float(model.sigma_max)
        except (AttributeError, TypeError):
            return sigmas
        positive = sigmas[sigmas > 0]
        if float(positive.max()) > hi * (1 + _RANGE_TOLERANCE) or float(positive.min()) < lo * (1 - _RANGE_TOLERANCE):
            raise ConfigError(f"σ-grid [{float(positive.max()):.4g} … {float(positive.min()):.4g}] leaves the model's "
                              f"trained range [{lo:.4g}, {hi:.4g}]; build grids with torchdiffusion.discretization."
                              "get_sigmas, which clips them to the model's range")
    return sigmas


def _schedule(denoiser) -> NoiseSchedule | None:
    s = getattr(denoiser, "schedule", None)
    return s if isinstance(s, NoiseSchedule) else None


def check_sigma(denoiser, sigma: float, name: str = "sigma") -> float:
    """σ must be finite, > 0 and inside the model's trained range [σ_min, σ_max]."""
    sigma = float(sigma)
    lo, hi = float(denoiser.sigma_min), float(denoiser.sigma_max)
    if not math.isfinite(sigma) or sigma <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {sigma}")
    if not lo * (1 - 1e-4) <= sigma <= hi * (1 + 1e-4):
        raise ConfigError(f"{name} = {sigma:.4g} is outside the model's trained noise range [{lo:.4g}, {hi:.4g}]")
    return min(max(sigma, lo), hi)


def strength_to_sigma(denoiser, strength: float) -> float:
    """The noise level of SDEdit strength s ∈ (0, 1]: σ(s · t_max) on the model's VP
    schedule (diffusers' convention: strength is the fraction of the diffusion time), or
    log-linear between σ_min and σ_max for a denoiser without a schedule."""
    schedule = _schedule(denoiser)
    if schedule is not None:
        return float(schedule.sigma(torch.tensor(strength * (schedule.num_timesteps - 1), dtype=torch.float64)))
    lo, hi = float(denoiser.sigma_min), float(denoiser.sigma_max)
    return math.exp(math.log(lo) + strength * (math.log(hi) - math.log(lo)))


def check_student_grid(model, grid: str, steps: int) -> None:
    """A step-distilled student (``model.distilled_steps`` = K) samples on the trailing grid it
    was distilled on, with at most K steps; anything else is a :class:`ConfigError`."""
    k = getattr(model, "distilled_steps", None)
    if k is None:
        return
    if grid != "trailing":
        raise ConfigError(f"this model is a {k}-step distilled student: it samples with the sampler 'Distilled' "
                          f"(DDIM on the trailing grid it was distilled on), not on the {grid!r} grid")
    if isinstance(steps, int) and not isinstance(steps, bool) and steps > k:
        raise ConfigError(f"this model is a distilled student for {k} steps: {steps} steps are more than it was "
                          f"distilled for (use --steps {k} or fewer)")


def grid_sigmas(model, grid: str, steps: int, **grid_kwargs) -> Tensor:
    """:func:`get_sigmas` for a sampler registered on ``grid``: a model without a discrete
    schedule (EDM-style) gets the Karras grid where ``grid`` is uniform in the timestep."""
    check_student_grid(model, grid, steps)
    if grid in T_SPACINGS and not isinstance(model, NoiseSchedule) and \
            not isinstance(getattr(model, "schedule", None), NoiseSchedule):
        grid = "karras"
    return get_sigmas(model, grid, steps, **grid_kwargs)


def task_sigmas(denoiser, grid: str, steps: int, sigma_start: float | None = None) -> Tensor:
    """The σ-grid of ``steps`` steps from ``sigma_start`` (default σ_max) down to 0, for a sampler
    registered on ``grid`` (its ``SamplerSpec.grid``).

    From σ_max it is the grid plain generation uses (:func:`grid_sigmas`), so a task starting from pure noise reproduces
    :meth:`DiffusionPipeline.generate` exactly. From a lower σ it is the sampler's own grid
    narrowed to [σ_min, sigma_start] where that grid is defined in σ (karras, logsnr, angle, …),
    and for the grids uniform in the timestep (DDIM's trailing, DDPM's, Euler's linspace) the
    timesteps uniform in [t(sigma_start), 0] of the model's schedule. Always ``steps`` steps:
    a lower start does not silently cut the number of network evaluations.
    """
    check_student_grid(denoiser, grid, steps)
    hi = float(denoiser.sigma_max)
    if sigma_start is None or sigma_start >= hi * (1 - 1e-6):
        return grid_sigmas(denoiser, grid, steps).to(torch.float64)
    sigma_start = check_sigma(denoiser, sigma_start, "starting noise level")
    schedule = _schedule(denoiser)
    if grid in T_SPACINGS and schedule is not None:
        if isinstance(steps, bool) or int(steps) < 1:
            raise ConfigError(f"steps must be an integer ≥ 1, got {steps!r}")
        t0 = float(schedule.t(torch.tensor(sigma_start, dtype=torch.float64)))
        ts = torch.linspace(t0, 0.0, int(steps), dtype=torch.float64) if steps > 1 else torch.tensor([t0])
        sig = schedule.sigma(ts).to(torch.float64)
        sig[0] = sigma_start
        keep = torch.cat([torch.tensor([True]), sig[1:] < sig[:-1]])  # a near-zero t0 can repeat σ_min
        return torch.cat([sig[keep], torch.zeros(1, dtype=torch.float64)])
    grid = "karras" if grid in T_SPACINGS else grid
    if sigma_start <= float(denoiser.sigma_min) * (1 + 1e-6):
        return torch.tensor([sigma_start, 0.0], dtype=torch.float64)
    return get_sigmas(denoiser, grid, steps, sigma_max=sigma_start)

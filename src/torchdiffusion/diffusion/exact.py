"""Data distributions whose denoiser is known in closed form, for tests and benchmarks.

For data x₀ ~ p and the noisy sample x = x₀ + σ ε (EDM's σ-view), the ideal denoiser is the
posterior mean D(x, σ) = E[x₀ | x] (Tweedie's formula; Karras et al. 2022, "Elucidating the
Design Space of Diffusion-Based Generative Models", eq. 3 and Appendix B.3). For a Gaussian
mixture it is closed form, because every noisy marginal is again a mixture:

    p_σ(x) = Σ_k w_k N(x; μ_k, diag(s_k² + σ²)),
    r_k(x, σ) = w_k N(x; μ_k, diag(s_k² + σ²)) / p_σ(x)                       (responsibilities)
    D(x, σ)  = Σ_k r_k(x, σ) [ μ_k + s_k²/(s_k² + σ²) (x - μ_k) ].

A single Gaussian (K = 1) also has a closed-form probability-flow ODE solution, per dimension

    x(σ') - μ = (x(σ) - μ) · sqrt(s² + σ'²) / sqrt(s² + σ²),

which the convergence tests use as the exact answer. For mixtures, :func:`solve_ode` gives a
near-exact reference by integrating dx/dlog σ = x - D(x, σ) with many classical RK4 steps.

The objects here are denoisers in the samplers' contract (``D(x, sigma, **cond) -> x̂₀`` with
``sigma_min``/``sigma_max``), and :meth:`GaussianMixture.as_network` turns one into a VP
ε/x₀/v network for :class:`~torchdiffusion.parameterization.Denoiser` or for driving
diffusers' schedulers.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from torchdiffusion.errors import ConfigError
from torchdiffusion.diffusion.schedules import NoiseSchedule


def _per_sample_sigma(sigma, x: Tensor) -> Tensor:
    """σ as a float64 (B, 1) column for a batch of flattened samples."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    return sigma.reshape(-1, 1)


class GaussianMixture:
    """p(x₀) = Σ_k w_k N(μ_k, diag(s_k²)) over vectors of ``dim`` numbers.

    ``means`` (K, d); ``stds`` a number, (K,) (isotropic per component) or (K, d) (diagonal);
    ``weights`` (K,) (uniform if omitted). Samples may have any shape (B, *shape) with
    prod(shape) = d. ``sigma_min``/``sigma_max`` give the noise range a sampler should use
    (EDM's defaults), or that of a schedule via :meth:`with_range`/:meth:`as_network`.
    All arithmetic is float64; outputs have the dtype of the input.
    """

    def __init__(self, means, stds, weights=None, sigma_min: float = 0.002, sigma_max: float = 80.0):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim == 1:
            means = means[None]
        if means.ndim != 2:
            raise ConfigError(f"means must be (K, d), got shape {tuple(means.shape)}")
        k, d = means.shape
        stds = torch.as_tensor(stds, dtype=torch.float64)
        if stds.ndim == 0:
            stds = stds.expand(k, d)
        elif stds.ndim == 1 and stds.numel() == k:
            stds = stds.reshape(k, 1).expand(k, d)
        elif stds.ndim == 2 and stds.shape[0] == 1:
            stds = stds.expand(k, d)
        if stds.shape != (k, d):
            raise ConfigError(f"stds must be a number, (K,) or (K, d) = ({k}, {d}), got {tuple(stds.shape)}")
        if not bool((stds > 0).all()):
            raise ConfigError("component standard deviations must be > 0")
        weights = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else \
            torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (k,) or not bool((weights > 0).all()):
            raise ConfigError(f"weights must be {k} positive numbers")
        if not 0 < sigma_min < sigma_max:
            raise ConfigError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.means = means
        self.stds = stds.contiguous()
        self.weights = weights / weights.sum()
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def random(cls, num_components: int = 8, dim: int = 64, seed: int = 0, mean_scale: float = 0.5,
               std_range: tuple[float, float] = (0.05, 0.5), **range_kwargs) -> "GaussianMixture":
        """A random mixture: means ~ N(0, mean_scale²), per-dimension stds log-uniform in
        ``std_range``, Dirichlet(2) weights. Deterministic in ``seed``."""
        g = torch.Generator().manual_seed(seed)
        means = mean_scale * torch.randn(num_components, dim, generator=g, dtype=torch.float64)
        lo, hi = math.log(std_range[0]), math.log(std_range[1])
        stds = torch.exp(lo + (hi - lo) * torch.rand(num_components, dim, generator=g, dtype=torch.float64))
        # Dirichlet(2, …, 2) weights: normalized Gamma(2) draws, each a sum of two Exp(1).
        weights = -torch.log(torch.rand(num_components, 2, generator=g, dtype=torch.float64)).sum(1)
        return cls(means, stds, weights, **range_kwargs)

    def with_range(self, sigma_min: float, sigma_max: float) -> "GaussianMixture":
        """The same distribution with another σ range (e.g. a VP schedule's)."""
        return type(self)(self.means, self.stds, self.weights, sigma_min, sigma_max)

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    # -- the noisy marginals and the denoiser ----------------------------------------------

    def _flat(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1).to(torch.float64)
        if flat.shape[1] != self.dim:
            raise ConfigError(f"samples have {flat.shape[1]} numbers each, this distribution has dim {self.dim}")
        return flat

    def _groups(self, x: Tensor, sigma):
        """Yield (rows, σ) for the distinct noise levels of a batch (usually just one), so
        that the per-component variances s_k² + σ² are shared by all rows of a group."""
        sig = _per_sample_sigma(sigma, x)[:, 0]
        if bool((sig == sig[0]).all()):
            yield slice(None), float(sig[0])
            return
        for value in sig.unique():
            yield (sig == value).nonzero()[:, 0], float(value)

    def _log_gaussians(self, flat: Tensor, sigma2: float) -> Tensor:
        """log N(x; μ_k, diag(s_k² + σ²)) for every row and component, (B, K), with the
        quadratic form expanded into matrix products."""
        var = self.stds**2 + sigma2  # (K, d)
        inv = 1.0 / var
        quad = (flat**2) @ inv.T - 2 * flat @ (self.means * inv).T + (self.means**2 * inv).sum(1)[None]
        return -0.5 * (quad + var.log().sum(1)[None] + self.dim * math.log(2 * math.pi))

    def _by_sigma(self, x: Tensor, sigma, fn) -> Tensor:
        flat = self._flat(x)
        out = None
        for rows, value in self._groups(flat, sigma):
            part = fn(flat[rows], value)
            if out is None:
                out = part if isinstance(rows, slice) else flat.new_empty((flat.shape[0],) + part.shape[1:])
            if not isinstance(rows, slice):
                out[rows] = part
        return out

    def log_responsibilities(self, x: Tensor, sigma) -> Tensor:
        """log r_k(x, σ), shape (B, K): the posterior over components given the noisy x."""
        def fn(flat, sigma_value):
            logits = self.weights.log()[None] + self._log_gaussians(flat, sigma_value**2)
            return logits - logits.logsumexp(dim=1, keepdim=True)
        return self._by_sigma(x, sigma, fn)

    def log_prob(self, x: Tensor, sigma=0.0) -> Tensor:
        """log p_σ(x) per sample (the density of x = x₀ + σ ε)."""
        def fn(flat, sigma_value):
            return (self.weights.log()[None] + self._log_gaussians(flat, sigma_value**2)).logsumexp(dim=1)
        return self._by_sigma(x, sigma, fn)

    def denoise(self, x: Tensor, sigma, **cond) -> Tensor:
        """D(x, σ) = E[x₀ | x₀ + σ ε = x], exactly."""
        def fn(flat, sigma_value):
            var = self.stds**2
            shrink = var / (var + sigma_value**2)  # (K, d): s_k²/(s_k² + σ²)
            if self.num_components == 1:
                return self.means + shrink * (flat - self.means)
            logits = self.weights.log()[None] + self._log_gaussians(flat, sigma_value**2)
            r = (logits - logits.logsumexp(dim=1, keepdim=True)).exp()  # (B, K)
            return r @ (self.means * (1 - shrink)) + flat * (r @ shrink)
        return self._by_sigma(x, sigma, fn).reshape(x.shape).to(x.dtype)

    __call__ = denoise

    def classify(self, x: Tensor, sigma=0.0) -> Tensor:
        """The most probable component of each sample, (B,) long."""
        return self.log_responsibilities(x, sigma).argmax(dim=1)

    # -- exact samples ---------------------------------------------------------------------

    def sample(self, n: int, generator: torch.Generator | None = None, shape: tuple[int, ...] | None = None,
               return_labels: bool = False):
        """``n`` exact samples x₀ ~ p (float32, CPU), optionally with their component labels."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = (self.means[labels] + self.stds[labels] * z).float()
        if shape is not None:
            x = x.reshape(n, *shape)
        return (x, labels) if return_labels else x

    # -- as a VP network -------------------------------------------------------------------

    def as_network(self, schedule: NoiseSchedule, parameterization: str = "eps") -> "ExactNetwork":
        """A network ``net(x_t, t)`` predicting ε, x₀ or v exactly for a VP schedule."""
        return ExactNetwork(self, schedule, parameterization)


class Gaussian(GaussianMixture):
    """N(μ, diag(s²)): one component; its probability-flow ODE is solvable in closed form."""

    def __init__(self, mean, std, sigma_min: float = 0.002, sigma_max: float = 80.0):
        mean = torch.as_tensor(mean, dtype=torch.float64).reshape(1, -1)
        std = torch.as_tensor(std, dtype=torch.float64)
        std = std.reshape(1, -1) if std.ndim > 0 else std
        super().__init__(mean, std, None, sigma_min, sigma_max)

    def with_range(self, sigma_min: float, sigma_max: float) -> "Gaussian":
        return Gaussian(self.means[0], self.stds[0], sigma_min, sigma_max)

    def ode_solution(self, x: Tensor, sigma_from, sigma_to) -> Tensor:
        """Follow the probability-flow ODE dx/dσ = (x - D(x, σ))/σ (EDM eq. 4) from σ to σ':
        x(σ') = μ + (x(σ) - μ) sqrt(s² + σ'²)/sqrt(s² + σ²), exactly."""
        flat = self._flat(x)
        s2 = self.stds[0] ** 2
        a = _per_sample_sigma(sigma_from, flat) ** 2
        b = _per_sample_sigma(sigma_to, flat) ** 2
        out = self.means[0] + (flat - self.means[0]) * ((s2 + b) / (s2 + a)).sqrt()
        return out.reshape(x.shape).to(x.dtype)


class ExactNetwork(torch.nn.Module):
    """``net(x_t, t) -> ε | x₀ | v`` of a VP model for a :class:`GaussianMixture`.

    The network sees the VP input x_t = x/sqrt(1+σ²) and the (possibly fractional) timestep
    t, whose noise level σ(t) comes from ``schedule`` (log-linear between table entries, the
    same interpolation as :class:`~torchdiffusion.schedules.NoiseSchedule`). Counts its calls
    in ``nfe``.
    """

    def __init__(self, data: GaussianMixture, schedule: NoiseSchedule, parameterization: str = "eps"):
        super().__init__()
        if parameterization not in ("eps", "x0", "v"):
            raise ConfigError(f"unknown parameterization {parameterization!r}; choose eps, x0 or v")
        self.data = data.with_range(schedule.sigma_min, schedule.sigma_max)
        self.schedule = schedule
        self.parameterization = parameterization
        self.nfe = 0

    def forward(self, x_t: Tensor, t, **cond) -> Tensor:
        self.nfe += 1
        t = torch.as_tensor(t, dtype=torch.float64)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        sigma = self.schedule.sigma(t).to(torch.float64).to(x_t.device)  # (B,)
        s = sigma.reshape((-1,) + (1,) * (x_t.ndim - 1))
        x = x_t.to(torch.float64) * (1 + s**2).sqrt()
        x0 = self.data.denoise(x, sigma).to(torch.float64)
        if self.parameterization == "x0":
            out = x0
        else:
            eps = (x - x0) / s
            if self.parameterization == "eps":
                out = eps
            else:
                alpha, sigma_vp = (1 + s**2).rsqrt(), s * (1 + s**2).rsqrt()
                out = alpha * eps - sigma_vp * x0
        return out.to(x_t.dtype)


@torch.no_grad()
def solve_ode(denoiser, x: Tensor, sigma_from: float, sigma_to: float = 0.0, steps: int = 1000,
              sigma_floor: float = 1e-6) -> Tensor:
    """A near-exact solution of the probability-flow ODE (EDM eq. 4) from σ_from to σ_to.

    Integrates dx/dρ = x - D(x, e^ρ) in ρ = log σ with ``steps`` classical Runge–Kutta (RK4)
    steps in float64, down to max(σ_to, ``sigma_floor``); reaching σ_to = 0 from the floor
    is one step x = D(x, σ_floor), whose error is O(σ_floor²) (D is the ODE's limit as σ→0).
    The error of RK4 falls as steps⁻⁴: compare two step counts to check a reference.
    """
    if sigma_from <= 0 or sigma_to < 0 or sigma_to >= sigma_from:
        raise ConfigError(f"need sigma_from > sigma_to ≥ 0, got {sigma_from}, {sigma_to}")
    end = max(sigma_to, sigma_floor)
    rhos = torch.linspace(math.log(sigma_from), math.log(end), steps + 1, dtype=torch.float64)
    y = x.to(torch.float64)

    def f(y, rho):
        return y - denoiser(y, torch.full((y.shape[0],), math.exp(rho), dtype=torch.float64)).to(torch.float64)

    for i in range(steps):
        r0, r1 = float(rhos[i]), float(rhos[i + 1])
        h = r1 - r0
        k1 = f(y, r0)
        k2 = f(y + 0.5 * h * k1, r0 + 0.5 * h)
        k3 = f(y + 0.5 * h * k2, r0 + 0.5 * h)
        k4 = f(y + h * k3, r1)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    if sigma_to == 0:
        y = denoiser(y, torch.full((y.shape[0],), end, dtype=torch.float64)).to(torch.float64)
    return y.to(x.dtype)


def _sorted_projections(x: Tensor, theta: Tensor) -> Tensor:
    """Projections of the samples onto each direction, sorted: (projections, n)."""
    return (theta.T @ x.reshape(x.shape[0], -1).to(torch.float64).T).sort(dim=1).values


def sliced_wasserstein(a: Tensor, b: Tensor, projections: int = 256, generator: torch.Generator | None = None) -> float:
    """Sliced 2-Wasserstein distance between two equally sized sample sets (Rabin et al.
    2011; Bonneel et al. 2015): sqrt of the mean over random unit directions θ of W₂²
    between the 1-D projections ⟨a, θ⟩ and ⟨b, θ⟩ (sorted-sample matching)."""
    if a.shape[0] != b.shape[0] or a[0].numel() != b[0].numel():
        raise ConfigError(f"sliced_wasserstein needs equal sample sets, got {tuple(a.shape)} and {tuple(b.shape)}")
    theta = torch.randn(a[0].numel(), projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    return float((_sorted_projections(a, theta) - _sorted_projections(b, theta)).pow(2).mean().sqrt())

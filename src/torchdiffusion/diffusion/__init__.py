"""The forward process: noise schedules in the σ-view, the ε/x₀/v parameterizations, and exact
denoisers of Gaussian mixtures (closed forms the samplers and objectives are tested against)."""
from torchdiffusion.diffusion.parameterization import PARAMETERIZATIONS, Denoiser
from torchdiffusion.diffusion.schedules import NoiseSchedule, ScheduleConfig

__all__ = ["Denoiser", "NoiseSchedule", "PARAMETERIZATIONS", "ScheduleConfig"]

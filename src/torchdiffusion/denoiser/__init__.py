"""The denoiser D(x, σ, cond) → x̂₀ (the EDM σ-view) and everything that wraps it: the model config
that builds it (networks chosen by name), classifier-free guidance and the conditions of a model,
text and image conditions, the pixel/latent space it samples in, and wrappers any sampler runs."""
from torchdiffusion.denoiser.guidance import CFGDenoiser, class_conditions, class_index, conditions, guided
from torchdiffusion.denoiser.model import NETWORKS, ModelConfig, build_denoiser
from torchdiffusion.denoiser.space import LatentSpace, PixelSpace
from torchdiffusion.denoiser.wrappers import Bound, CountingDenoiser, DenoiserWrapper
from torchdiffusion.diffusion.parameterization import Denoiser

__all__ = ["Bound", "CFGDenoiser", "CountingDenoiser", "Denoiser", "DenoiserWrapper", "LatentSpace", "ModelConfig",
           "NETWORKS", "PixelSpace", "build_denoiser", "class_conditions", "class_index", "conditions", "guided"]

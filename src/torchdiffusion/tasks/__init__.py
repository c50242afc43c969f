"""Image editing with a trained model: denoise, inpaint, super-resolve, img2img, latent walks.

Each task composes one of our samplers (:mod:`torchdiffusion.samplers`) with a denoiser
wrapper that conditions or projects the prediction, so each works with every sampler:

    from torchdiffusion import DiffusionPipeline
    from torchdiffusion.tasks import denoise, inpaint, upscale, img2img, interpolate_seeds

    pipe = DiffusionPipeline.from_pretrained("runs/mnist")
    clean = denoise(pipe, noisy, sigma=0.2).images              # posterior mean, 1 network call
    filled = inpaint(pipe, image, mask, resample=5).images      # RePaint; mask 1 = fill
    big = upscale(pipe, small).images                           # DDNM projection (or an SR3 model)
    edited = img2img(pipe, image, strength=0.6).images          # SDEdit; .nfe = network calls

Every function returns a :class:`TaskResult` (images in [-1, 1], the exact NFE, info).
docs/editing.md describes the methods, their limits and the measured quality.
"""
from torchdiffusion.tasks.common import TaskResult, strength_to_sigma, task_sigmas
from torchdiffusion.io.images import as_images, as_mask
from torchdiffusion.tasks.denoise import TiledDenoiser, denoise, estimate_sigma
from torchdiffusion.tasks.img2img import img2img
from torchdiffusion.tasks.inpaint import ReplacementDenoiser, inpaint
from torchdiffusion.tasks.interpolate import (MixedDenoiser, interpolate_conditions, interpolate_images, interpolate_seeds, save_frames,
                          slerp)
from torchdiffusion.tasks.inversion import invert, reconstruct
from torchdiffusion.tasks.superres import ProjectionDenoiser, downsample, upscale, upsample_bicubic

__all__ = ["TaskResult", "as_images", "as_mask", "strength_to_sigma", "task_sigmas", "denoise", "estimate_sigma",
           "TiledDenoiser", "inpaint", "ReplacementDenoiser", "upscale", "ProjectionDenoiser", "downsample",
           "upsample_bicubic", "img2img", "invert", "reconstruct", "slerp", "interpolate_seeds",
           "interpolate_images", "interpolate_conditions", "MixedDenoiser", "save_frames"]

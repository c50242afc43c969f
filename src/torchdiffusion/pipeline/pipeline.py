"""The Python API for a trained model: load it, generate images.

    from torchdiffusion import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("runs/mnist")
    images = pipe.generate(n=16, steps=50, sampler="ddim", seed=0)      # (16, 1, 28, 28) in [-1, 1]
    pipe.to_pil(images)[0].save("digit.png")

One class for pixel and latent models: the pipeline holds a denoiser, its config and a *space*
(:class:`~torchdiffusion.denoiser.space.PixelSpace`, or
:class:`~torchdiffusion.denoiser.space.LatentSpace` around a VAE for latent diffusion, Rombach et
al. 2022). :meth:`DiffusionPipeline.sample` is the one sampling primitive: ``generate`` is initial
noise followed by ``sample``, and every editing task calls it too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from torchdiffusion.denoiser.guidance import check_guidance, check_guidance_interval, class_index, conditions, guided
from torchdiffusion.denoiser.model import ModelConfig
from torchdiffusion.denoiser.space import LatentSpace, PixelSpace, check_unet_matches_vae
from torchdiffusion.denoiser.wrappers import CountingDenoiser
from torchdiffusion.diffusion.parameterization import Denoiser
from torchdiffusion.errors import ConfigError
from torchdiffusion.io.images import save_grid, to_pil
from torchdiffusion.networks.precision import check_precision, precision_name, resolve_precision
from torchdiffusion.pipeline.folders import load_components, save_model, save_pipeline
from torchdiffusion.sampling.registry import (DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_INTERVAL, DEFAULT_SAMPLER, DEFAULT_STEPS,
                                              resolve_sampler)
from torchdiffusion.sampling.seeds import initial_noise, seeded_generators
from torchdiffusion.denoiser import text as text_conditioning  # looked up at call time: tests swap the encoder


def check_generate_args(n, steps, seed, batch_size, sampler, guidance_scale, guidance_rescale) -> None:
    """Types and ranges of :meth:`DiffusionPipeline.generate`'s arguments, as ConfigErrors."""
    def integer(name, value, lo, hi=None):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if value < lo or (hi is not None and value > hi):
            raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value}" if hi is not None
                              else f"{name} must be ≥ {lo}, got {value}")

    integer("n", n, 1)
    integer("steps", steps, 1)
    integer("batch_size", batch_size, 1)
    integer("seed", seed, 0, 2**64 - n)  # image i uses seed + i, a 64-bit generator seed
    if not isinstance(sampler, str):
        raise ConfigError(f"sampler must be a name (a string), got {sampler!r}")
    check_guidance(guidance_scale)
    if isinstance(guidance_rescale, bool) or not isinstance(guidance_rescale, (int, float)) \
            or not 0.0 <= guidance_rescale <= 1.0:
        raise ConfigError(f"guidance_rescale must be a number in [0, 1], got {guidance_rescale!r}")


class DiffusionPipeline:
    """A denoiser with its config and its space, ready to sample.

    ``space``: a :class:`PixelSpace` (default), a :class:`LatentSpace`, or an autoencoder (wrapped
    into a :class:`LatentSpace`). ``text_encoder`` is loaded on first use for text models.
    ``precision``: see :meth:`set_precision`; None leaves the denoiser as it is
    (:meth:`from_pretrained` defaults to ``"auto"``).
    """
    def __init__(self, denoiser: Denoiser, config: ModelConfig, space=None, text_encoder=None,
                 precision: str | None = None):
        if space is None:
            space = PixelSpace()
        elif not isinstance(space, (PixelSpace, LatentSpace)):
            space = LatentSpace(space)  # an Autoencoder
        if space.latent:
            check_unet_matches_vae(config.unet, space.vae.config)
        self.denoiser = denoiser
        self.config = config
        self.space = space
        self.text_encoder = text_encoder
        self.precision_setting = precision
        if precision is not None:  # None: the denoiser runs as it is set (a trainer's EMA model follows --precision)
            self.set_precision(precision)

    def _encoder(self):
        if self.text_encoder is None:

            self.text_encoder = text_conditioning.build_text_encoder(self.config.text_encoder)
        return self.text_encoder

    # --- folders -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", precision: str = "auto") -> "DiffusionPipeline":
        """Load a model, run, checkpoint or latent pipeline folder (:func:`pipeline.folders.load_components`);
        ``precision`` as in :meth:`set_precision`."""
        check_precision(precision, str(device))
        denoiser, config, vae = load_components(Path(path), device=device)
        return cls(denoiser, config, None if vae is None else LatentSpace(vae), precision=precision)

    # --- precision -----------------------------------------------------------------------
    def set_precision(self, precision: str = "auto", channels_last: bool = False) -> "DiffusionPipeline":
        """The number format the denoiser network runs in: ``"auto"`` (bf16 autocast where the CPU
        has native bf16 or on a CUDA GPU with bf16, else fp32; said once when a CPU lacks it),
        ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA). The network's weights stay fp32 and every
        sampler keeps its state in fp32: only the network's convolutions and matrix products run in
        the low-precision type (docs/performance.md measures speed and quality: on a 2-core AMD
        EPYC with AVX512-BF16, bf16 runs the default U-Net's forward 2.7× faster than fp32 with the
        same FID and class accuracy). ``channels_last`` also runs the network in channels-last
        layout; it is off by default because it measured slower there (2.1× instead of 2.7×)."""
        dtype = resolve_precision(precision, str(self.device), say=True)
        self.precision_setting = precision
        self.denoiser.set_precision(dtype, channels_last=channels_last)
        return self

    @property
    def precision(self) -> str:
        """What the network runs in now: 'fp32', 'bf16' or 'fp16'."""
        return precision_name(self.denoiser.autocast_dtype)

    def save_pretrained(self, folder: str | Path) -> Path:
        """A model folder for a pixel model, a pipeline folder (vae/ unet/ …) for a latent one."""
        if self.space.latent:
            return save_pipeline(folder, self.denoiser, self.config, self.space.vae)
        return save_model(Path(folder), self.denoiser, self.config)

    # --- shapes and spaces -----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def is_latent(self) -> bool:
        return self.space.latent

    @property
    def vae(self):
        """The latent space's autoencoder (AttributeError for a pixel model, so ``hasattr(pipe, "vae")`` tells)."""
        if not self.space.latent:
            raise AttributeError("a pixel-space pipeline has no VAE")
        return self.space.vae

    @property
    def scale_factor(self) -> float:
        return self.vae.config.scale_factor if self.space.latent else 1.0

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """The shape the sampler works in (C, H, W): the image shape, or the VAE latent shape."""
        u = self.config.unet
        return (u.in_channels, u.image_size, u.image_size)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The shape of the images it makes (pixels, also for a latent model)."""
        return self.space.image_shape(self.latent_shape)

    def encode(self, images: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Images in [-1, 1] → the sampler's space (the identity, or scaled VAE latents s · E(x))."""
        return self.space.encode(images, sample=sample, generator=generator)

    def decode(self, x: Tensor) -> Tensor:
        """The sampler's output → images in [-1, 1] (a clamp, or the VAE decoder D(z / s))."""
        return self.space.decode(x)

    def to(self, device) -> "DiffusionPipeline":
        """Move the pipeline to ``device``; an ``"auto"`` precision is chosen again for it."""
        self.denoiser.to(device)
        self.space.to(device)
        return self if self.precision_setting is None else self.set_precision(self.precision_setting)

    @property
    def distilled_steps(self) -> int | None:
        """K for a step-distilled student (``torchdiffusion distill``), None for an ordinary model."""
        return (self.config.distilled or {}).get("steps")

    def default_sampling(self, sampler: str | None = None, steps: int | None = None) -> tuple[str, int]:
        """``sampler`` and ``steps`` with None replaced by this model's defaults: ``DEFAULT_SAMPLER``
        and ``DEFAULT_STEPS``, or for a distilled student its sampler 'Distilled' and its K steps."""
        k = self.distilled_steps
        if sampler is None:
            sampler = "Distilled" if k else DEFAULT_SAMPLER
        if steps is None:
            steps = k or DEFAULT_STEPS
        return sampler, steps

    def sigmas(self, steps: int | None = None, sampler: str | None = None) -> Tensor:
        """The σ-grid that ``sampler`` is registered with ("DDIM": trailing timesteps, "DPM++ 2M
        Karras": Karras ρ = 7, "ABM": the end-clustered angle grid, …), inside this model's trained range."""
        sampler, steps = self.default_sampling(sampler, steps)
        if steps < 1:
            raise ConfigError(f"steps must be ≥ 1, got {steps}")
        return resolve_sampler(sampler).sigmas(self.denoiser, steps)

    # --- conditions ------------------------------------------------------------------------
    def class_index(self, label: int | str) -> int:
        """A class label given as an index or a class name → its index, checked against the model."""
        return class_index(self.config, label)

    def conditions(self, n: int, class_labels=None, prompt=None, negative_prompt=None,
                   default_class: bool = True) -> tuple[dict | None, dict | None]:
        """(cond, uncond) denoiser inputs for ``n`` images (:func:`denoiser.guidance.conditions`)."""
        return conditions(self.config, n, class_labels, prompt, negative_prompt, self._encoder, self.device,
                          default_class=default_class)

    # --- sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, x: Tensor, sigmas: Tensor, *, sampler: str | None = None, cond: dict | None = None,
               uncond: dict | None = None, guidance_scale: float = DEFAULT_GUIDANCE, guidance_rescale: float = 0.0,
               extra: dict | None = None, generators=None, callback: Callable | None = None,
               sampler_kwargs: dict | None = None, denoiser=None,
               guidance_interval: tuple[float, float] | None = None) -> tuple[Tensor, int]:
        """Run ``sampler`` from ``x`` (in the model's space, at σ = ``sigmas[0]``) down ``sigmas``
        with the conditions bound (CFG when ``uncond`` is given; ``extra`` goes to both branches);
        returns (x at ``sigmas[-1]``, network evaluations). ``denoiser`` replaces the pipeline's own
        (a task's wrapper around it)."""
        sampler = self.default_sampling(sampler)[0]
        counted = CountingDenoiser(guided(denoiser if denoiser is not None else self.denoiser, cond, uncond,
                                          guidance_scale, guidance_rescale, extra, guidance_interval))
        out = resolve_sampler(sampler)(counted, x, sigmas, generator=generators, callback=callback,
                                       **(sampler_kwargs or {}))
        return out, counted.nfe

    @torch.no_grad()
    def generate(self, n: int = 16, steps: int | None = None, sampler: str | None = None, seed: int = 0,
                 batch_size: int = 64, progress: bool = True, callback: Callable | None = None,
                 sampler_kwargs: dict | None = None, class_labels=None, prompt=None, negative_prompt=None,
                 guidance_scale: float = DEFAULT_GUIDANCE, guidance_rescale: float = 0.0,
                 decode: bool = True, output: str | None = None,
                 guidance_interval: tuple[float, float] | str | None = DEFAULT_GUIDANCE_INTERVAL) -> Tensor:
        """Generate ``n`` images in [-1, 1], shape (n, C, H, W).

        ``steps``/``sampler`` None: ``DEFAULT_STEPS``/``DEFAULT_SAMPLER`` (a distilled student: its
        own steps and sampler, :meth:`default_sampling`).

        ``class_labels``: one label (index or name) for all images or one per image, for a
        class-conditional model (None: every class in turn, image i of class i mod K);
        ``guidance_scale`` w of classifier-free guidance (1 = plain
        conditional, 0 = unconditional), computed in one batched forward per step.
        ``prompt`` (a string or one per image) and ``negative_prompt`` for a text model.
        ``guidance_interval`` (σ_lo, σ_hi): guide only for σ_lo < σ ≤ σ_hi, plain conditional
        (one forward of half the batch) elsewhere (Kynkäänniemi et al. 2024); default
        ``DEFAULT_GUIDANCE_INTERVAL`` (σ > 1), None or "all" guides at every σ.
        ``decode=False`` (or ``output="latents"``) returns the sampler's output itself (a latent
        model's scaled latents).
        """
        if output is not None:
            if output not in ("images", "latents"):
                raise ConfigError(f"output must be 'images' or 'latents', got {output!r}")
            decode = output == "images"
        sampler, steps = self.default_sampling(sampler, steps)
        check_generate_args(n=n, steps=steps, seed=seed, batch_size=batch_size, sampler=sampler,
                            guidance_scale=guidance_scale, guidance_rescale=guidance_rescale)
        guidance_interval = check_guidance_interval(guidance_interval)
        cond, uncond = self.conditions(n, class_labels, prompt, negative_prompt)
        sigmas = self.sigmas(steps, sampler)
        gens = seeded_generators(seed, n)
        out = []
        bar = tqdm(total=n * (len(sigmas) - 1), desc=f"sampling ({sampler}, {steps} steps)", unit="step",
                   disable=not progress, leave=False)

        def on_step(info):
            bar.update(info["x"].shape[0])
            if callback is not None:
                callback(info)

        self.denoiser.eval()
        for start in range(0, n, batch_size):
            g = gens[start:start + batch_size]
            sl = slice(start, start + len(g))
            x = initial_noise(self.latent_shape, g, float(sigmas[0]), self.device)
            c = None if cond is None else {k: v[sl] for k, v in cond.items()}
            u = None if uncond is None else {k: v[sl] for k, v in uncond.items()}
            x, _ = self.sample(x, sigmas, sampler=sampler, cond=c, uncond=u, guidance_scale=guidance_scale,
                               guidance_rescale=guidance_rescale, generators=g, callback=on_step,
                               sampler_kwargs=sampler_kwargs, guidance_interval=guidance_interval)
            out.append(x.cpu())
        bar.close()
        x = torch.cat(out)
        return self.decode(x) if decode else x

    @staticmethod
    def to_pil(images: Tensor):
        return to_pil(images)

    @staticmethod
    def save_grid(images: Tensor, path: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
        return save_grid(images, Path(path), nrow=nrow, scale=scale)

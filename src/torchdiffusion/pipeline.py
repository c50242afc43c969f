"""The Python API for a trained model: load it, generate images.

    from torchdiffusion import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("runs/mnist")
    images = pipe.generate(n=16, steps=50, sampler="ddim", seed=0)      # (16, 1, 28, 28) in [-1, 1]
    pipe.to_pil(images)[0].save("digit.png")
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .errors import ConfigError
from .guidance import CFGDenoiser
from .images import save_grid, to_pil
from .model import ModelConfig, load_model
from .parameterization import Denoiser
from . import samplers as sampling


def seeded_generators(seed: int, n: int) -> list[torch.Generator]:
    """One CPU generator per sample, seeded ``seed + i``: sample i is the same image whatever
    the batch size or the order it is generated in."""
    return [torch.Generator().manual_seed(int(seed) + i) for i in range(n)]


def initial_noise(shape: tuple[int, ...], generators: list[torch.Generator], sigma: float,
                  device="cpu") -> Tensor:
    """x_T = σ_max · z with z drawn per sample from its generator (on the CPU)."""
    z = torch.stack([torch.randn(shape, generator=g) for g in generators])
    return (z * sigma).to(device)


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
    for name, value in (("guidance_scale", guidance_scale), ("guidance_rescale", guidance_rescale)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")


class DiffusionPipeline:
    """A denoiser with its config, ready to sample."""

    def __init__(self, denoiser: Denoiser, config: ModelConfig, text_encoder=None):
        self.denoiser = denoiser
        self.config = config
        self.text_encoder = text_encoder  # loaded on first use for text models

    def _encoder(self):
        if self.text_encoder is None:
            from .text_conditioning import build_text_encoder

            self.text_encoder = build_text_encoder(self.config.text_encoder)
        return self.text_encoder

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> "DiffusionPipeline":
        """Load a model, run or checkpoint folder; a latent diffusion pipeline folder (or a run
        whose ``model/`` is one) gives a :class:`latent.LatentDiffusionPipeline`."""
        from .latent import LatentDiffusionPipeline, find_latent_pipeline

        if find_latent_pipeline(Path(path)) is not None:
            return LatentDiffusionPipeline.from_pretrained(path, device=device)
        denoiser, config = load_model(Path(path), device=device)
        return cls(denoiser, config)

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def image_shape(self) -> tuple[int, int, int]:
        u = self.config.unet
        return (u.in_channels, u.image_size, u.image_size)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """The shape the sampler works in: the image shape here, the VAE latent shape in a
        :class:`latent.LatentDiffusionPipeline`."""
        return self.image_shape

    def encode(self, images: Tensor) -> Tensor:
        """Images in [-1, 1] → the sampler's space (the identity here; VAE latents in a latent pipeline)."""
        return images

    def decode(self, x: Tensor) -> Tensor:
        """The sampler's output → images in [-1, 1] (a clamp here; the VAE decoder in a latent pipeline)."""
        return x.clamp(-1, 1)

    def sigmas(self, steps: int, sampler: str = "ddim") -> Tensor:
        """The σ-grid that ``sampler`` is registered with ("DDIM": trailing timesteps, "DPM++ 2M
        Karras": Karras ρ = 7, "ABM": the end-clustered angle grid, …), inside this model's trained range."""
        if steps < 1:
            raise ConfigError(f"steps must be ≥ 1, got {steps}")
        return sampling.sampler_sigmas(sampler, self.denoiser, steps)

    def class_index(self, label: int | str) -> int:
        """A class label given as an index or a class name → its index, checked against the model."""
        cfg = self.config
        if cfg.conditioning != "class":
            raise ConfigError(f"this model is not class-conditional (conditioning: {cfg.conditioning}); "
                              "drop the class label")
        names = cfg.class_names or []
        if isinstance(label, str) and not label.lstrip("-").isdigit():
            if label not in names:
                raise ConfigError(f"unknown class {label!r}; this model's classes are {names}")
            return names.index(label)
        idx = int(label)
        if not 0 <= idx < cfg.unet.num_classes:
            raise ConfigError(f"class index {idx} is out of range: this model has classes 0..{cfg.unet.num_classes - 1}")
        return idx

    def _prompt_conditions(self, n: int, prompt, negative_prompt) -> tuple[dict, dict]:
        if self.config.conditioning != "text":
            raise ConfigError(f"this model is not text-conditional (conditioning: {self.config.conditioning}); "
                              "drop the prompt" + (" and give a class label" if self.config.conditioning == "class"
                                                   else ""))
        from .text_conditioning import prompt_conditions

        prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
        negs = [negative_prompt or ""] * n if negative_prompt is None or isinstance(negative_prompt, str) \
            else list(negative_prompt)
        if len(prompts) != n or len(negs) != n:
            raise ConfigError(f"got {len(prompts)} prompts and {len(negs)} negative prompts for n={n} images")
        enc = self._encoder()
        return prompt_conditions(enc, prompts, self.device), prompt_conditions(enc, negs, self.device)

    def _conditions(self, n: int, class_labels) -> tuple[Tensor | None, Tensor | None]:
        """Per-sample (cond, uncond) class tensors, or (None, None) for an unconditional model."""
        cfg = self.config
        if class_labels is None:
            if cfg.conditioning != "class":
                return None, None
            class_labels = torch.arange(n) % cfg.unet.num_classes  # every class in turn

        if isinstance(class_labels, (int, str)):
            class_labels = [class_labels] * n
        labels = torch.tensor([self.class_index(c) for c in (class_labels.tolist() if isinstance(class_labels, Tensor)
                                                              else class_labels)], dtype=torch.long)
        if len(labels) != n:
            raise ConfigError(f"got {len(labels)} class labels for n={n} images")
        return labels, torch.full((n,), cfg.unet.num_classes, dtype=torch.long)

    @torch.no_grad()
    def generate(self, n: int = 16, steps: int = 50, sampler: str = "ddim", seed: int = 0,
                 batch_size: int = 64, progress: bool = True, callback: Callable | None = None,
                 sampler_kwargs: dict | None = None, class_labels=None, prompt=None, negative_prompt=None,
                 guidance_scale: float = 1.0, guidance_rescale: float = 0.0) -> Tensor:
        """Generate ``n`` images in [-1, 1], shape (n, C, H, W).

        ``class_labels``: one label (index or name) for all images or one per image, for a
        class-conditional model (None: every class in turn, image i of class i mod K);
        ``guidance_scale`` w of classifier-free guidance (1 = plain
        conditional, 0 = unconditional), computed in one batched forward per step.
        ``prompt`` (a string or one per image) and ``negative_prompt`` for a text model.
        """
        check_generate_args(n=n, steps=steps, seed=seed, batch_size=batch_size, sampler=sampler,
                            guidance_scale=guidance_scale, guidance_rescale=guidance_rescale)
        if prompt is not None and class_labels is not None:
            raise ConfigError("give a class label or a prompt, not both")
        text_cond = text_uncond = None
        if prompt is not None:
            text_cond, text_uncond = self._prompt_conditions(n, prompt, negative_prompt)
            labels = None
        else:
            if self.config.conditioning == "text" and class_labels is None:
                raise ConfigError("this model is text-conditional: give a prompt (--prompt)")
            labels, null = self._conditions(n, class_labels)
        fn = sampling.get_sampler(sampler)
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
            x = initial_noise(self.latent_shape, g, float(sigmas[0]), self.device)
            denoiser = self.denoiser
            sl = slice(start, start + len(g))
            if text_cond is not None:
                denoiser = CFGDenoiser(self.denoiser, {k: v[sl] for k, v in text_cond.items()},
                                       {k: v[sl] for k, v in text_uncond.items()}, guidance_scale, guidance_rescale)
            elif labels is not None:
                denoiser = CFGDenoiser(self.denoiser, {"class_labels": labels[sl].to(self.device)},
                                       {"class_labels": null[sl].to(self.device)}, guidance_scale, guidance_rescale)
            out.append(fn(denoiser, x, sigmas, generator=g, callback=on_step, **(sampler_kwargs or {})).cpu())
        bar.close()
        return self._finish(torch.cat(out))

    def _finish(self, x: Tensor) -> Tensor:
        return self.decode(x)

    @staticmethod
    def to_pil(images: Tensor):
        return to_pil(images)

    @staticmethod
    def save_grid(images: Tensor, path: str | Path, nrow: int | None = None, scale: int = 1) -> Path:
        return save_grid(images, Path(path), nrow=nrow, scale=scale)

"""Latent walks: frames between two seeds, two real images, or two conditions.

* seeds: the initial noises z_a, z_b of two seeds are joined by spherical linear
  interpolation (Shoemake 1985; used for diffusion noise by Song et al. 2021, "DDIM", §5.3),

      slerp(z_a, z_b; t) = sin((1-t)θ)/sin θ · z_a + sin(tθ)/sin θ · z_b,   cos θ = ⟨z_a, z_b⟩/(|z_a||z_b|),

  which keeps the norm a Gaussian sample of that dimension has (|z| ≈ sqrt(d)); a linear
  mix would shrink it by up to √2 halfway and decode to washed-out images. Each frame is
  then sampled with a deterministic sampler (default DDIM) from σ_max slerp(z_a, z_b; t).
* images: both images are DDIM-inverted to their latents (:mod:`.inversion`), the latents
  slerped, and decoded with DDIM on the same grid; t = 0 and t = 1 reconstruct the images.
* classes: the same noise, decoded with the class *embedding* interpolated,
  e_t = (1 - t) e(c_a) + t e(c_b) (the network takes class weights, :class:`~torchdiffusion.networks.unet.UNet`),
  guided against the null class as usual — so every frame is a guided sample of one condition
  and looks like a digit, where mixing two guided predictions gives a double exposure halfway.
  A seed walk on a class model takes one class or one per end, interpolated the same way
  (default: one class, the one the model sees in seed A's unconditional sample, :mod:`.classify`).
* prompts: the same noise, decoded with the mixed denoiser D_t = (1 - t) D(·| c_a) + t D(·| c_b)
  (the guided predictions interpolated; prompts of different token lengths have no common embedding).

:func:`save_frames` writes a frame strip (PNG) and an animation (GIF or WebP by suffix).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from torchdiffusion.denoiser.guidance import CFGDenoiser, class_index
from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE, EDIT_SAMPLER, EDIT_STEPS
from torchdiffusion.errors import ConfigError
from torchdiffusion.denoiser.wrappers import CountingDenoiser
from torchdiffusion.sampling.seeds import initial_noise, seeded_generators
from torchdiffusion.tasks.common import (TaskResult, Wrapper, conditioned, image_condition, model_channels, resolve, run_sampler, space_of, task_sigmas)
from torchdiffusion.io.images import as_images
from torchdiffusion.tasks.inversion import invert, reconstruct
from torchdiffusion.io.images import save_grid, to_pil


def slerp(a: Tensor, b: Tensor, t: float | Tensor) -> Tensor:
    """Spherical interpolation per sample (rows of a, b flattened); linear when a ∥ b."""
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
    cos = (fa * fb).sum(1, keepdim=True) / (fa.norm(dim=1, keepdim=True) * fb.norm(dim=1, keepdim=True))
    theta = cos.clamp(-1, 1).acos()
    sin = theta.sin()
    small = sin.abs() < 1e-6
    wa = torch.where(small, 1 - t, ((1 - t) * theta).sin() / sin.clamp(min=1e-12))
    wb = torch.where(small, t, (t * theta).sin() / sin.clamp(min=1e-12))
    return (wa * fa + wb * fb).reshape(a.shape).to(a.dtype)


def _ts(frames: int) -> Tensor:
    if isinstance(frames, bool) or int(frames) < 2:
        raise ConfigError(f"frames must be an integer ≥ 2 (the two ends included), got {frames!r}")
    return torch.linspace(0, 1, int(frames), dtype=torch.float64)


class MixedDenoiser(Wrapper):
    """D_t(x, σ) = (1 - t) D_a(x, σ) + t D_b(x, σ), t per sample."""
    def __init__(self, d_a, d_b, t: Tensor):
        super().__init__(d_a)
        self.d_b, self.t = d_b, t

    def forward(self, x: Tensor, sigma, **cond) -> Tensor:
        t = self.t.to(x.device, x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return (1 - t) * self.denoiser(x, sigma, **cond) + t * self.d_b(x, sigma, **cond)


def _check_plain(pipe) -> None:
    if image_condition(pipe):
        raise ConfigError(f"interpolation needs a model without an image condition; this is a "
                          f"{image_condition(pipe)['kind']} model")


def class_walk_weights(pipe, a, b, ts: Tensor) -> Tensor:
    """(T, K + 1) class weights s_t ((1 - t) onehot(a) + t onehot(b)) (the null class last, weight
    0), with s_t ≥ 1 keeping the mixed embedding's norm at (1 - t)|e_a| + t|e_b|: two class
    embeddings are nearly orthogonal, so a plain linear mix would shrink the condition by up to
    √2 halfway and the middle frames would be weakly conditioned blurs (the same reason seeds are
    slerped, not mixed linearly)."""
    k = int(pipe.config.unet.num_classes)
    ia, ib = class_index(pipe.config, a), class_index(pipe.config, b)
    w = torch.zeros(len(ts), k + 1, dtype=torch.float64)
    w[:, ia] += 1 - ts
    w[:, ib] += ts
    table = getattr(getattr(pipe.denoiser, "network", None), "class_emb", None)
    if table is not None and ia != ib:
        e = table.weight.detach().double().cpu()
        mixed = (w @ e).norm(dim=1)
        target = (1 - ts) * e[ia].norm() + ts * e[ib].norm()
        w = w * (target / mixed.clamp(min=1e-12)).unsqueeze(1)
    return w.float()


def _class_walk_denoiser(denoiser, pipe, weights: Tensor, guidance_scale: float):
    null = torch.zeros_like(weights)
    null[:, -1] = 1
    dev = pipe.device
    return CFGDenoiser(denoiser, {"class_labels": weights.to(dev)}, {"class_labels": null.to(dev)}, guidance_scale)


def _pair(value):
    """One condition for both ends, or (a, b)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"give one class for both ends or one per end (two), got {len(value)}")
        return tuple(value)
    return value, value


@torch.no_grad()
def interpolate_seeds(model, seed_a: int, seed_b: int, frames: int = 8, *, steps: int = EDIT_STEPS, sampler: str = EDIT_SAMPLER,
                      class_labels=None, prompt=None, guidance_scale: float = DEFAULT_GUIDANCE) -> TaskResult:
    """``frames`` images along the slerp from seed_a's noise to seed_b's (ends are the
    images :meth:`DiffusionPipeline.generate` gives for those seeds with a deterministic sampler).

    On a class model, ``class_labels`` is one class or a pair (one per end, the embedding
    interpolated along the walk); None: one class for the whole walk, the one the model sees in
    seed A's unconditional sample (``info['class_inferred']``), so every frame is a guided sample
    of one digit (a walk across classes is ``class_labels=(a, b)`` or :func:`interpolate_conditions`)."""
    denoiser, pipe = resolve(model)
    _check_plain(pipe)
    if pipe is None:
        raise ConfigError("interpolate_seeds needs a DiffusionPipeline (it needs the model's image shape)")
    ts = _ts(frames)
    space = space_of(pipe)
    shape = pipe.latent_shape  # latents for a latent model
    za = initial_noise(shape, seeded_generators(seed_a, 1)).expand(len(ts), *shape)
    zb = initial_noise(shape, seeded_generators(seed_b, 1)).expand(len(ts), *shape)
    sigmas = task_sigmas(denoiser, pipe, sampler, steps)
    x = slerp(za, zb, ts) * float(sigmas[0])
    info = {"t": ts}
    ends_nfe = 0
    if pipe.config.conditioning == "class" and prompt is None and guidance_scale != 0:
        if class_labels is None:  # one class for the walk: the one seed A's noise leans to unconditioned
            from torchdiffusion.tasks.classify import describe_classes, infer_class

            d_u = CountingDenoiser(conditioned(denoiser, pipe, 1, None, None, guidance_scale=1.0))
            end = run_sampler(sampler, d_u, x[:1].to(pipe.device), sigmas, seeded_generators(seed_a, 1))
            labels, _ = infer_class(pipe, space.to_pixels(end).clamp(-1, 1))
            ends_nfe = d_u.nfe
            class_labels = int(labels[0])
            info["class_inferred"] = [class_labels, class_labels]
            info["class_described"] = describe_classes(labels[:1], pipe.config.class_names)
        a, b = _pair(class_labels)
        d = CountingDenoiser(_class_walk_denoiser(denoiser, pipe, class_walk_weights(pipe, a, b, ts), guidance_scale))
    else:
        d = CountingDenoiser(conditioned(denoiser, pipe, len(ts), class_labels, prompt, guidance_scale=guidance_scale))
    out = space.to_pixels(run_sampler(sampler, d, x.to(pipe.device), sigmas, seeded_generators(seed_a, len(ts))))
    return TaskResult(out.cpu().clamp(-1, 1), d.nfe + ends_nfe, info)


@torch.no_grad()
def interpolate_images(model, image_a, image_b, frames: int = 8, *, steps: int = EDIT_STEPS,
                       fixed_point_iters: int = 2) -> TaskResult:
    """``frames`` images between two real images through their DDIM latents."""
    denoiser, pipe = resolve(model)
    _check_plain(pipe)
    channels = model_channels(denoiser, pipe)
    a, b = as_images(image_a, channels, "first image"), as_images(image_b, channels, "second image")
    if a.shape[1:] != b.shape[1:]:
        raise ConfigError(f"the two images differ in size ({tuple(a.shape[1:])} and {tuple(b.shape[1:])}): "
                          "give two images of the same size")
    pair = torch.cat([a, b])
    if pair.shape[0] != 2:
        raise ConfigError("interpolate_images takes one image at each end")
    inv = invert(model, pair, steps=steps, fixed_point_iters=fixed_point_iters)
    ts = _ts(frames)
    shape = inv.images.shape[1:]  # the model's space (latents for a latent model)
    lat = slerp(inv.images[:1].expand(len(ts), *shape), inv.images[1:].expand(len(ts), *shape), ts)
    rec = reconstruct(model, lat, inv.info["sigmas"])
    return TaskResult(rec.images, inv.nfe + rec.nfe, {"t": ts, "sigmas": inv.info["sigmas"]})


@torch.no_grad()
def interpolate_conditions(model, cond_a: dict, cond_b: dict, frames: int = 8, *, seed: int = 0, steps: int = EDIT_STEPS,
                           sampler: str = EDIT_SAMPLER, guidance_scale: float = DEFAULT_GUIDANCE) -> TaskResult:
    """``frames`` images from one seed's noise between two conditions, each a dict with
    ``class_labels`` (one class: the embedding is interpolated) or ``prompt`` (and optionally
    ``negative_prompt``; the guided predictions are mixed)."""
    denoiser, pipe = resolve(model)
    _check_plain(pipe)
    if pipe is None:
        raise ConfigError("interpolate_conditions needs a DiffusionPipeline")
    ts = _ts(frames)
    n = len(ts)
    ca, cb = cond_a.get("class_labels"), cond_b.get("class_labels")
    if ca is not None and cb is not None and pipe.config.conditioning == "class" \
            and not isinstance(ca, (list, tuple, Tensor)) and not isinstance(cb, (list, tuple, Tensor)):
        d = CountingDenoiser(_class_walk_denoiser(denoiser, pipe, class_walk_weights(pipe, ca, cb, ts),
                                                  guidance_scale))
    else:
        d_a = conditioned(denoiser, pipe, n, ca, cond_a.get("prompt"), cond_a.get("negative_prompt"), guidance_scale)
        d_b = conditioned(denoiser, pipe, n, cb, cond_b.get("prompt"), cond_b.get("negative_prompt"), guidance_scale)
        d = CountingDenoiser(MixedDenoiser(d_a, d_b, ts))
    sigmas = task_sigmas(denoiser, pipe, sampler, steps)
    space = space_of(pipe)
    x = initial_noise(pipe.latent_shape, seeded_generators(seed, 1)).expand(n, *pipe.latent_shape) * float(sigmas[0])
    out = space.to_pixels(run_sampler(sampler, d, x.to(pipe.device), sigmas, seeded_generators(seed, n)))
    return TaskResult(out.cpu().clamp(-1, 1), d.nfe, {"t": ts})


def save_frames(frames: Tensor, path: str | Path, *, strip: str | Path | None = None, scale: int = 4,
                duration_ms: int = 120, boomerang: bool = True) -> Path:
    """Write ``frames`` (T, C, H, W in [-1, 1]) as an animation (``.gif`` or ``.webp``) and,
    with ``strip``, as a one-row PNG strip. ``boomerang`` plays forth and back."""
    from PIL import Image


    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".webp"):
        raise ConfigError(f"{path}: the animation must be a .gif or .webp file")
    images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in to_pil(frames)]
    if boomerang and len(images) > 2:
        images = images + images[-2:0:-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"loop": 0, "duration": duration_ms, "save_all": True, "append_images": images[1:]}
    if suffix == ".webp":
        kwargs["lossless"] = True
    images[0].save(path, **kwargs)
    if strip is not None:
        save_grid(frames, Path(strip), nrow=len(frames), scale=scale)
    return path

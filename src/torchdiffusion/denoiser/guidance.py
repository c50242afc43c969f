"""Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. 6).

With a network trained to also predict unconditionally (its condition dropped to a null
value during training), guidance extrapolates from the unconditional towards the
conditional prediction:

    ε̃ = ε_u + w (ε_c - ε_u),     equivalently  x̃₀ = x̂₀_u + w (x̂₀_c - x̂₀_u)

since x̂₀ = x - σ ε is affine in ε. The one meaning of w everywhere in torchdiffusion (API, CLI,
tasks, web UI): w = 0 is unconditional (the condition is ignored), w = 1 plain conditional
sampling (one forward, no guidance), w > 1 guided (the default, ``DEFAULT_GUIDANCE`` = 2); a
negative or non-finite w is refused (:func:`check_guidance`: w < 0 steers *away* from the
condition, which no entry point offers).
Both predictions come from ONE batched forward pass over [x, x]. A negative prompt is simply
the "unconditional" branch's condition.

Guidance interval (Kynkäänniemi et al. 2024, "Applying Guidance in a Limited Interval Improves
Sample and Distribution Quality in Diffusion Models"): guidance applied only for σ in
(σ_lo, σ_hi], plain conditional prediction (w = 1, one forward of batch B instead of 2B)
outside it. At high σ guidance mostly pushes samples towards a few modes and at low σ it does
little, so the interval keeps the benefit at a fraction of the cost.

Guidance rescale (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
Flawed", eq. 15–16) pulls the guided ε̃ back to the per-sample standard deviation of ε_c:
ε_r = ε̃ · std(ε_c)/std(ε̃),  ε = φ ε_r + (1 - φ) ε̃, against over-saturation at large w.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from torchdiffusion.diffusion.parameterization import append_dims
from torchdiffusion.errors import ConfigError
from torchdiffusion.denoiser.text import prompt_conditions as encode
from torchdiffusion.denoiser.wrappers import Bound


MAX_GUIDANCE = 30.0  # beyond it every model saturates; the web UI's slider ends here too


def check_guidance(guidance_scale, name: str = "guidance scale") -> float:
    """``guidance_scale`` as a float in [0, MAX_GUIDANCE], or a :class:`ConfigError` with the one
    message every entry point (API, CLI, tasks, UI) gives: 0 = unconditional, 1 = conditional
    without guidance, > 1 guided."""
    try:
        w = float(guidance_scale)
        ok = not isinstance(guidance_scale, bool) and guidance_scale is not None and w == w
    except (TypeError, ValueError):
        ok = False
    if not ok or not 0.0 <= w <= MAX_GUIDANCE:
        raise ConfigError(f"{name} must be a number from 0 to {MAX_GUIDANCE:g} (0 = unconditional, 1 = conditional "
                          f"without guidance, > 1 = guided), got {guidance_scale!r}")
    return w


def check_guidance_interval(interval, name: str = "guidance interval") -> tuple[float, float] | None:
    """``interval`` as (σ_lo, σ_hi) with 0 ≤ σ_lo < σ_hi (σ_hi may be ``inf``), or None for
    guidance at every σ; a :class:`ConfigError` otherwise. A string "LO,HI" is accepted (the CLI's
    form), and "all" (or "none") for every σ."""
    if interval is None or (isinstance(interval, str) and interval.strip().lower() in ("all", "none")):
        return None
    try:
        if isinstance(interval, str):
            interval = [v for v in interval.replace(" ", "").split(",")]
        lo, hi = (float(v) for v in interval)
        ok = lo == lo and hi == hi and 0.0 <= lo < hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{name} must be two noise levels LO,HI with 0 ≤ LO < HI (guidance only for LO < σ ≤ HI; "
                          f"HI may be inf), got {interval!r}")
    return lo, hi


def interval_text(interval) -> str:
    """The text form of a guidance interval: "LO,HI" (e.g. "1,inf"), or "all" for every σ."""
    iv = check_guidance_interval(interval)
    return "all" if iv is None else ",".join(f"{v:g}" for v in iv)


def _cat_cond(cond: dict, uncond: dict) -> dict:
    if set(cond) != set(uncond):
        raise ConfigError(f"conditional and unconditional inputs differ in keys: {sorted(cond)} vs {sorted(uncond)}")
    out = {}
    for k in cond:
        a, b = cond[k], uncond[k]
        if a is None:
            out[k] = None
            continue
        if k in ("context", "context_mask") and a.shape[1] != b.shape[1]:  # pad token axes to one length
            length = max(a.shape[1], b.shape[1])
            a = torch.nn.functional.pad(a, (0, 0) * (a.ndim - 2) + (0, length - a.shape[1]))
            b = torch.nn.functional.pad(b, (0, 0) * (b.ndim - 2) + (0, length - b.shape[1]))
        out[k] = torch.cat([a, b])
    return out


class CFGDenoiser(nn.Module):
    """Wrap a denoiser D(x, σ, **cond) into the guided D̃(x, σ) (no condition arguments).

    ``cond``/``uncond`` are dicts of per-sample tensors (batch dim first) for the denoiser;
    ``guidance_scale`` w; ``guidance_rescale`` φ ∈ [0, 1].
    """

    def __init__(self, denoiser, cond: dict, uncond: dict, guidance_scale: float = 1.0,
                 guidance_rescale: float = 0.0, guidance_interval: tuple[float, float] | None = None):
        super().__init__()
        if not 0.0 <= guidance_rescale <= 1.0:
            raise ConfigError(f"guidance_rescale must be in [0, 1], got {guidance_rescale}")
        self.denoiser = denoiser
        self.cond, self.uncond = cond, uncond
        self.scale, self.rescale = check_guidance(guidance_scale), float(guidance_rescale)
        self.interval = check_guidance_interval(guidance_interval)
        self.both = _cat_cond(cond, uncond)

    @property
    def sigma_min(self):
        return self.denoiser.sigma_min

    @property
    def sigma_max(self):
        return self.denoiser.sigma_max

    @property
    def schedule(self):
        return self.denoiser.schedule

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        if self.scale == 1.0:  # plain conditional: one forward of batch B
            return self.denoiser(x, sigma, **self.cond)
        if self.scale == 0.0:
            return self.denoiser(x, sigma, **self.uncond)
        b = x.shape[0]
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype).expand(b)
        if self.interval is not None:
            lo, hi = self.interval
            inside = (sigma > lo) & (sigma <= hi)
            if not bool(inside.any()):  # outside the interval: the conditional prediction alone
                return self.denoiser(x, sigma, **self.cond)
            if not bool(inside.all()):  # per-sample σ straddling an edge: guide only those inside
                plain = self.denoiser(x, sigma, **self.cond)
                full = self._guided(x, sigma, b)
                return torch.where(append_dims(inside, x.ndim), full, plain)
        return self._guided(x, sigma, b)

    def _guided(self, x: Tensor, sigma: Tensor, b: int) -> Tensor:
        d_c, d_u = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), **self.both).split(b)
        guided = d_u + self.scale * (d_c - d_u)
        if self.rescale > 0:
            s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
            eps_c, eps_g = (x - d_c) / s, (x - guided) / s
            dims = tuple(range(1, x.ndim))
            eps_r = eps_g * eps_c.std(dim=dims, keepdim=True) / eps_g.std(dim=dims, keepdim=True).clamp(min=1e-8)
            eps = self.rescale * eps_r + (1 - self.rescale) * eps_g
            guided = x - s * eps
        return guided


# --- conditions of a model config ------------------------------------------------------
def class_index(config, label: int | str) -> int:
    """A class label given as an index or a class name → its index, checked against ``config`` (a ModelConfig)."""
    if config.conditioning != "class":
        raise ConfigError(f"this model is not class-conditional (conditioning: {config.conditioning}); "
                          "drop the class label")
    names = config.class_names or []
    if isinstance(label, str) and not label.lstrip("-").isdigit():
        if label not in names:
            raise ConfigError(f"unknown class {label!r}; this model's classes are {names}")
        return names.index(label)
    idx = int(label)
    if not 0 <= idx < config.unet.num_classes:
        raise ConfigError(f"class index {idx} is out of range: this model has classes 0..{config.unet.num_classes - 1}")
    return idx


def class_conditions(config, n: int, class_labels) -> tuple[Tensor | None, Tensor | None]:
    """Per-sample (cond, uncond) class tensors, or (None, None) for a model without class labels.
    ``class_labels`` None: every class in turn (image i of class i mod K); one label for all, or one per image."""
    if class_labels is None:
        if config.conditioning != "class":
            return None, None
        class_labels = torch.arange(n) % config.unet.num_classes
    if isinstance(class_labels, (int, str)):
        class_labels = [class_labels] * n
    labels = torch.tensor([class_index(config, c) for c in (class_labels.tolist() if isinstance(class_labels, Tensor)
                                                             else class_labels)], dtype=torch.long)
    if len(labels) != n:
        raise ConfigError(f"got {len(labels)} class labels for n={n} images")
    return labels, torch.full((n,), config.unet.num_classes, dtype=torch.long)


def prompt_conditions(config, encoder, n: int, prompt, negative_prompt, device) -> tuple[dict, dict]:
    """(cond, uncond) text inputs of ``n`` images: the prompt(s) and the negative prompt(s) (default "")."""
    if config.conditioning != "text":
        raise ConfigError(f"this model is not text-conditional (conditioning: {config.conditioning}); "
                          "drop the prompt" + (" and give a class label" if config.conditioning == "class" else ""))
    prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
    negs = [negative_prompt or ""] * n if negative_prompt is None or isinstance(negative_prompt, str) \
        else list(negative_prompt)
    if len(prompts) != n or len(negs) != n:
        raise ConfigError(f"got {len(prompts)} prompts and {len(negs)} negative prompts for n={n} images")
    return encode(encoder, prompts, device), encode(encoder, negs, device)


def conditions(config, n: int, class_labels=None, prompt=None, negative_prompt=None, encoder=None,
               device="cpu", default_class: bool = True) -> tuple[dict | None, dict | None]:
    """The (cond, uncond) keyword inputs of the denoiser for ``n`` images of model ``config``:
    a class label or a prompt, or (None, None) when the model takes neither. ``encoder`` is the
    text encoder (text models; a callable returning it is also accepted, called only when needed).

    ``default_class``: a class model without a label samples every class in turn (generation);
    False gives (None, None) there, so editing tasks predict with the null class (unconditional).
    A text model without a prompt is an error when ``default_class`` (generation), else it gets the
    empty prompt as its only condition.
    """
    if prompt is not None and class_labels is not None:
        raise ConfigError("give a class label or a prompt, not both")
    def enc():
        return encoder() if callable(encoder) and not hasattr(encoder, "encode") else encoder

    if prompt is not None:
        return prompt_conditions(config, enc(), n, prompt, negative_prompt, device)
    if config.conditioning == "text" and class_labels is None:
        if default_class:
            raise ConfigError("this model is text-conditional: give a prompt (--prompt)")
        c, _ = prompt_conditions(config, enc(), n, "", None, device)
        return c, None
    if class_labels is None and not default_class:
        return None, None
    labels, null = class_conditions(config, n, class_labels)
    if labels is None:
        return None, None
    return {"class_labels": labels.to(device)}, {"class_labels": null.to(device)}


def guided(denoiser, cond: dict | None, uncond: dict | None, guidance_scale: float = 1.0,
           guidance_rescale: float = 0.0, extra: dict | None = None,
           guidance_interval: tuple[float, float] | None = None):
    """D̃(x, σ): ``denoiser`` with its conditions bound — guided by CFG (:class:`CFGDenoiser`)
    when there is an unconditional branch, bound as is when there is only ``cond``, the
    denoiser itself when there is neither. ``extra`` (e.g. an image condition) goes to both branches."""

    w = check_guidance(guidance_scale)
    extra = {k: v for k, v in (extra or {}).items() if v is not None}
    distilled = getattr(denoiser, "guidance_range", None)
    if distilled is not None:  # a guidance-distilled student: w is its input, one forward, no CFG pair
        lo, hi = distilled
        if cond is None:  # no condition to guide towards (w does not matter): any scale it was trained for
            w = min(max(w, lo), hi)
        elif not lo <= w <= hi:
            raise ConfigError(f"this model is a guidance-distilled student for guidance scales {lo:g} to {hi:g} "
                              f"(the scale is its input); got {w:g}")
        return Bound(denoiser, **(cond or {}), **extra, guidance=torch.tensor(w))
    if cond is None:
        return Bound(denoiser, **extra) if extra else denoiser
    if uncond is None:
        return Bound(denoiser, **cond, **extra)
    return CFGDenoiser(denoiser, {**cond, **extra}, {**uncond, **extra}, guidance_scale, guidance_rescale,
                       guidance_interval)

"""What the web UI does, without the web: validated requests → images with their parameters.

Every entry point checks its input against :class:`~.limits.UILimits` and raises our own
errors with a readable message (the app shows it; it never shows a traceback), runs inside
the :class:`~.jobs.RequestQueue` (one at a time), reports progress through ``on_progress(step,
total, preview)`` with an x̂₀ preview every ``limits.preview_every`` steps, stops when its
:class:`~.jobs.CancelToken` is cancelled, and writes each output as a PNG carrying its
:class:`~.png_info.GenerationParams`.

Reproducibility: image ``i`` of a generate request with seed ``s`` and ``n`` images has
``Seed: s+i, Batch size: n, Batch pos: i``; :meth:`Backend.reproduce` reruns exactly that
request (same batch, so even batch-dependent float rounding is the same) and returns image
``i`` — the same pixels.
"""
from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image

from .. import __version__
from ..errors import ConfigError
from ..images import to_pil
from .jobs import CancelToken, RequestQueue
from .limits import UILimits
from .models import ModelLibrary
from .png_info import GenerationParams, read_parameters, save_png

MAX_SEED = 2**32 - 1
PREVIEW_SIDE = 256  # previews and shown images are enlarged (nearest) to about this size


def familiar_sampler_names() -> list[str]:
    """The sampler names users know from web UIs, in the registry's order."""
    from ..samplers import SAMPLER_REGISTRY, SAMPLERS

    return [k for k, spec in SAMPLER_REGISTRY.items() if k == spec.name and k not in SAMPLERS]


def random_seed() -> int:
    return random.SystemRandom().randrange(0, MAX_SEED)


@dataclass
class GenerateRequest:
    model: str
    prompt: str = ""
    negative_prompt: str = ""
    class_label: str | None = None
    sampler: str = "DPM++ 2M Karras"
    steps: int = 30
    guidance_scale: float = 2.0
    guidance_rescale: float = 0.0
    seed: int = -1  # -1: a random seed (recorded in the PNGs)
    batch_size: int = 1


@dataclass
class Result:
    images: list[Image.Image]
    params: list[GenerationParams]
    paths: list[Path]
    seconds: float
    info: dict = field(default_factory=dict)


def enlarge(img: Image.Image, side: int = PREVIEW_SIDE) -> Image.Image:
    """Nearest-neighbour enlargement by an integer factor so small images are visible."""
    k = max(1, side // max(img.width, img.height))
    return img if k == 1 else img.resize((img.width * k, img.height * k), Image.NEAREST)


def preview_image(denoised: torch.Tensor) -> Image.Image:
    """x̂₀ of a batch as one row, enlarged for display."""
    from ..images import make_grid

    x = denoised.detach().float().cpu().clamp(-1, 1)
    return enlarge(to_pil(make_grid(x, nrow=x.shape[0])[None])[0], PREVIEW_SIDE * min(x.shape[0], 4))


class Backend:
    def __init__(self, library: ModelLibrary, limits: UILimits | None = None, outputs: str | Path = "outputs"):
        self.library = library
        self.limits = limits or UILimits()
        self.limits.validate()
        self.outputs = Path(outputs)
        self.queue = RequestQueue(self.limits.max_queue)
        self._tokens: dict[str, CancelToken] = {}
        self._tokens_lock = threading.Lock()
        self._counter = itertools.count()

    # ---------------------------------------------------------------- models

    def model_info(self, name: str) -> dict:
        """What the UI needs to show the right controls for model ``name``."""
        pipe = self.library.get(name)
        cfg = pipe.config
        c, h, w = pipe.image_shape
        classes = None
        if cfg.conditioning == "class":
            classes = list(cfg.class_names) if cfg.class_names else [str(i) for i in range(cfg.unet.num_classes)]
        return {"name": name, "conditioning": cfg.conditioning, "classes": classes, "channels": c,
                "size": (w, h), "parameters": sum(p.numel() for p in pipe.denoiser.parameters())}

    # ---------------------------------------------------------------- cancellation

    def token_for(self, session: str) -> CancelToken:
        """A fresh token for ``session``'s next job (a new job replaces the old token)."""
        tok = CancelToken()
        with self._tokens_lock:
            self._tokens[session] = tok
        return tok

    def cancel(self, session: str) -> bool:
        """Cancel ``session``'s current job; False when it has none."""
        with self._tokens_lock:
            tok = self._tokens.get(session)
        if tok is None:
            return False
        tok.cancel()
        return True

    # ---------------------------------------------------------------- generate

    def check(self, req: GenerateRequest) -> tuple[GenerateRequest, dict]:
        """Validate ``req`` against the limits and the model; resolve a random seed."""
        info = self.model_info(req.model)
        steps = self.limits.check_steps(req.steps)
        n = self.limits.check_batch(req.batch_size)
        from ..samplers import resolve_sampler

        spec = resolve_sampler(req.sampler)
        try:
            seed = int(float(req.seed)) if req.seed not in (None, "") else -1
            cfg, rescale = float(req.guidance_scale), float(req.guidance_rescale)
        except (TypeError, ValueError):
            raise ConfigError(f"seed and guidance must be numbers, got seed={req.seed!r}, "
                              f"guidance={req.guidance_scale!r}") from None
        if seed < -1 or seed > MAX_SEED:
            raise ConfigError(f"seed must be between 0 and {MAX_SEED} (or -1 for a random one), got {seed}")
        if seed == -1:
            seed = random_seed()
        if not 0 <= cfg <= 30:
            raise ConfigError(f"guidance scale must be between 0 and 30, got {cfg}")
        if not 0 <= rescale <= 1:
            raise ConfigError(f"guidance rescale must be between 0 and 1, got {rescale}")
        label = req.class_label if req.class_label not in ("", None) else None
        prompt = (req.prompt or "").strip()
        if info["conditioning"] == "class":
            if label is None:
                raise ConfigError(f"this model is class-conditional: choose a class ({', '.join(info['classes'])})")
            if label not in info["classes"]:
                raise ConfigError(f"unknown class {label!r}; this model's classes are {', '.join(info['classes'])}")
        else:
            label = None
        if info["conditioning"] == "text" and not prompt:
            raise ConfigError("this model is text-conditional: write a prompt")
        if len(prompt) > 1000 or len(req.negative_prompt or "") > 1000:
            raise ConfigError("prompts are limited to 1000 characters")
        return replace(req, steps=steps, batch_size=n, sampler=spec.name, seed=seed, guidance_scale=cfg,
                       guidance_rescale=rescale, class_label=label, prompt=prompt,
                       negative_prompt=(req.negative_prompt or "").strip()), info

    def _pipeline_kwargs(self, req: GenerateRequest, info: dict) -> dict:
        kw = dict(n=req.batch_size, steps=req.steps, sampler=req.sampler, seed=req.seed, batch_size=req.batch_size,
                  progress=False, guidance_scale=req.guidance_scale, guidance_rescale=req.guidance_rescale)
        if info["conditioning"] == "class":
            kw["class_labels"] = info["classes"].index(req.class_label)
        elif info["conditioning"] == "text":
            kw["prompt"], kw["negative_prompt"] = req.prompt, req.negative_prompt or None
        return kw

    def _progress_callback(self, total: int, on_progress, token: CancelToken | None):
        every = self.limits.preview_every
        state = {"step": 0}

        def cb(info):
            state["step"] += 1
            s = state["step"]
            if token is not None:
                token.check()
            if on_progress is not None:
                show = s % every == 0 and s < total
                on_progress(s, total, preview_image(info["denoised"]) if show else None)

        return cb

    def generate(self, req: GenerateRequest, on_progress=None, token: CancelToken | None = None,
                 save: bool = True) -> Result:
        """Run a generate request; ``on_progress(step, total, preview or None)`` after each step."""
        req, info = self.check(req)
        pipe = self.library.get(req.model)
        with self.queue.slot(token):
            t0 = time.perf_counter()
            cb = self._progress_callback(req.steps, on_progress, token)
            images = pipe.generate(callback=cb, **self._pipeline_kwargs(req, info))
            dt = time.perf_counter() - t0
        pils = to_pil(images)
        w, h = info["size"]
        model_name = req.model if req.model != "." else self.library.root.name
        base = GenerationParams(prompt=req.prompt, negative_prompt=req.negative_prompt, steps=req.steps,
                                sampler=req.sampler, guidance_scale=req.guidance_scale, seed=req.seed,
                                size=f"{w}x{h}", model=model_name, model_hash=self.library.model_hash(req.model),
                                class_label=req.class_label, guidance_rescale=req.guidance_rescale,
                                batch_size=req.batch_size, version=f"torchdiffusion {__version__}")
        params = [replace(base, seed=req.seed + i, batch_pos=i) for i in range(len(pils))]
        paths = [self._save(img, p, "txt2img") for img, p in zip(pils, params)] if save else []
        return Result(pils, params, paths, dt, {"model": req.model, "seed": req.seed})

    def _save(self, img: Image.Image, p: GenerationParams, task: str) -> Path:
        i = next(self._counter)
        return save_png(img, self.outputs / task / f"{int(time.time())}-{i:05d}-{p.seed}.png", p)

    # ---------------------------------------------------------------- read back / reproduce

    def request_from_params(self, p: GenerationParams) -> tuple[GenerateRequest, int]:
        """The generate request that made the image with parameters ``p``, and its index."""
        if p.task != "txt2img":
            raise ConfigError(f"only generated images can be reproduced from their parameters; this one is "
                              f"from {p.task} (its input image is not stored in the PNG)")
        model = self._find_model(p)
        first = p.seed - p.batch_pos
        req = GenerateRequest(model=model, prompt=p.prompt, negative_prompt=p.negative_prompt,
                              class_label=p.class_label, sampler=p.sampler, steps=p.steps,
                              guidance_scale=p.guidance_scale, guidance_rescale=p.guidance_rescale,
                              seed=first, batch_size=p.batch_size)
        return req, p.batch_pos

    def _find_model(self, p: GenerationParams) -> str:
        names = self.library.names()
        candidates = [p.model] if p.model in names else []
        if self.library.root.name == p.model and "." in names:
            candidates.append(".")
        for name in candidates:
            if not p.model_hash or self.library.model_hash(name) == p.model_hash:
                return name
        if p.model_hash:
            for name in names:
                if self.library.model_hash(name) == p.model_hash:
                    return name
        raise ConfigError(f"the model of this image ({p.model or '?'}, hash {p.model_hash or '?'}) is not in the "
                          "models folder")

    def reproduce(self, source, on_progress=None, token: CancelToken | None = None) -> tuple[Image.Image,
                                                                                            GenerationParams]:
        """Regenerate the image whose PNG is ``source`` (path or PIL image)."""
        p = source if isinstance(source, GenerationParams) else read_parameters(source)
        req, pos = self.request_from_params(p)
        res = self.generate(req, on_progress, token, save=False)
        return res.images[pos], res.params[pos]

    # ---------------------------------------------------------------- uploads

    def load_upload(self, source, name: str = "upload", channels: int = 3) -> Image.Image:
        """An uploaded image (path or PIL image), refused with a message when it is not an image
        or too large; RGBA is composited on white."""
        lim = self.limits
        if source is None:
            raise ConfigError(f"{name}: upload an image first")
        if isinstance(source, Image.Image):
            img = source
            lim.check_upload_size(*img.size, name=name)
        else:
            path = Path(source)
            label = f"{name} ({path.name})"
            try:
                size = path.stat().st_size
            except OSError:
                raise ConfigError(f"{label}: the upload is missing") from None
            if size > lim.max_upload_mb * 1e6:
                raise ConfigError(f"{label}: file of {size / 1e6:.1f} MB is over the {lim.max_upload_mb:g} MB limit")
            try:
                with Image.open(path) as im:
                    lim.check_upload_size(*im.size, name=label)
                    im.load()
                    img = im.copy()
            except ConfigError:
                raise
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise ConfigError(f"{label}: not an image PIL can read ({type(exc).__name__})") from None
        if img.mode in ("RGBA", "LA", "P"):
            img = img.convert("RGBA")
            bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(bg, img)
        return img.convert("L" if channels == 1 else "RGB")

    @staticmethod
    def fit(img: Image.Image, size: tuple[int, int], resample=Image.LANCZOS) -> Image.Image:
        """Resize on the short side and centre-crop to ``size`` (W, H), like the data loader."""
        w, h = size
        s = max(w / img.width, h / img.height)
        nw, nh = max(w, round(img.width * s)), max(h, round(img.height * s))
        img = img.resize((nw, nh), resample)
        left, top = (nw - w) // 2, (nh - h) // 2
        return img.crop((left, top, left + w, top + h))

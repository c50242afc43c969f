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

from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_INTERVAL, DEFAULT_SAMPLER, DEFAULT_STEPS
from torchdiffusion import __version__
from torchdiffusion.errors import ConfigError
from torchdiffusion.denoiser.guidance import check_guidance, check_guidance_interval, interval_text
from torchdiffusion.io.images import to_pil
from torchdiffusion.ui.jobs import CancelToken, RequestQueue
from torchdiffusion.ui.limits import UILimits
from torchdiffusion.ui.models import ModelLibrary
from torchdiffusion.ui.png_info import GenerationParams, read_parameters, save_png
from torchdiffusion.sampling.registry import SAMPLER_REGISTRY, SAMPLERS
from torchdiffusion.io.images import make_grid
from torchdiffusion.sampling.registry import resolve_sampler
from torchdiffusion.io.images import from_pil
from torchdiffusion.tasks import img2img
from torchdiffusion.tasks import inpaint
from torchdiffusion.tasks import upscale
from torchdiffusion.tasks import upsample_bicubic
from torchdiffusion.tasks import denoise
from torchdiffusion.tasks import interpolate_seeds, save_frames

MAX_SEED = 2**32 - 1
PREVIEW_SIDE = 256  # previews and shown images are enlarged (nearest) to about this size


def familiar_sampler_names() -> list[str]:
    """The sampler names users know from web UIs, in the registry's order."""
    return [k for k, spec in SAMPLER_REGISTRY.items() if k == spec.name and k not in SAMPLERS]


def random_seed() -> int:
    return random.SystemRandom().randrange(0, MAX_SEED)


@dataclass
class GenerateRequest:
    model: str
    prompt: str = ""
    negative_prompt: str = ""
    class_label: str | None = None
    sampler: str = DEFAULT_SAMPLER
    steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    guidance_rescale: float = 0.0
    guidance_interval: str = interval_text(DEFAULT_GUIDANCE_INTERVAL)  # "LO,HI" or "all" (every step)
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

    def check(self, req: GenerateRequest, class_optional: bool = False) -> tuple[GenerateRequest, dict]:
        """Validate ``req`` against the limits and the model; resolve a random seed.
        ``class_optional``: an editing task on a class model may leave the class empty (the task
        then uses the class the model sees in the input image and reports it)."""
        info = self.model_info(req.model)
        steps = self.limits.check_steps(req.steps)
        n = self.limits.check_batch(req.batch_size)

        spec = resolve_sampler(req.sampler)
        try:
            seed = int(float(req.seed)) if req.seed not in (None, "") else -1
        except (TypeError, ValueError, OverflowError):  # text, NaN, ±Inf
            raise ConfigError(f"seed must be a whole number from 0 to {MAX_SEED} (or -1 for a random one), "
                              f"got {req.seed!r}") from None
        try:
            cfg, rescale = float(req.guidance_scale), float(req.guidance_rescale)
        except (TypeError, ValueError):
            raise ConfigError(f"guidance scale must be a number from 0 to 30 (0 = unconditional, 1 = conditional "
                              f"without guidance, > 1 = guided), got {req.guidance_scale!r}") from None
        if seed < -1 or seed > MAX_SEED:
            raise ConfigError(f"seed must be between 0 and {MAX_SEED} (or -1 for a random one), got {seed}")
        if seed == -1:
            seed = random_seed()
        cfg = check_guidance(cfg)
        interval = interval_text(req.guidance_interval)
        if not 0 <= rescale <= 1:
            raise ConfigError(f"guidance rescale must be between 0 and 1, got {rescale}")
        label = req.class_label if req.class_label not in ("", None) else None
        prompt = (req.prompt or "").strip()
        if info["conditioning"] == "class":
            if label is None and not class_optional:
                raise ConfigError(f"this model is class-conditional: choose a class ({', '.join(info['classes'])})")
            if label is not None and label not in info["classes"]:
                raise ConfigError(f"unknown class {label!r}; this model's classes are {', '.join(info['classes'])}")
        else:
            label = None
        if info["conditioning"] == "text" and not prompt:
            raise ConfigError("this model is text-conditional: write a prompt")
        if len(prompt) > 1000 or len(req.negative_prompt or "") > 1000:
            raise ConfigError("prompts are limited to 1000 characters")
        return replace(req, steps=steps, batch_size=n, sampler=spec.name, seed=seed, guidance_scale=cfg,
                       guidance_rescale=rescale, guidance_interval=interval, class_label=label, prompt=prompt,
                       negative_prompt=(req.negative_prompt or "").strip()), info

    def _pipeline_kwargs(self, req: GenerateRequest, info: dict) -> dict:
        kw = dict(n=req.batch_size, steps=req.steps, sampler=req.sampler, seed=req.seed, batch_size=req.batch_size,
                  progress=False, guidance_scale=req.guidance_scale, guidance_rescale=req.guidance_rescale,
                  guidance_interval=check_guidance_interval(req.guidance_interval))
        if info["conditioning"] == "class" and req.class_label is not None:
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
                                guidance_interval=req.guidance_interval,
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
                              guidance_interval=p.guidance_interval, seed=first, batch_size=p.batch_size)
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

    # ---------------------------------------------------------------- editing tasks

    @staticmethod
    def available_tasks() -> dict[str, str | None]:
        """Editing task → None if :mod:`torchdiffusion.tasks` provides it, else why not."""
        out = {}
        for task, attr in [("img2img", "img2img"), ("inpaint", "inpaint"), ("upscale", "upscale"),
                           ("denoise", "denoise"), ("interpolate", "interpolate_seeds")]:
            try:
                import torchdiffusion.tasks as tasks

                out[task] = None if hasattr(tasks, attr) else f"torchdiffusion.tasks has no {attr} yet"
            except ImportError as exc:
                out[task] = f"torchdiffusion.tasks is not available ({exc})"
        return out

    def _task_request(self, req: GenerateRequest) -> tuple[GenerateRequest, dict, dict]:
        """Checked request + the conditioning keyword arguments of a task call."""
        req, info = self.check(replace(req, batch_size=1), class_optional=True)
        kw = self._pipeline_kwargs(req, info)
        cond = {k: kw[k] for k in ("class_labels", "prompt", "negative_prompt") if k in kw}
        return req, info, cond

    def _run_task(self, task: str, fn, req: GenerateRequest, info: dict, on_progress, token, total: int,
                  extra_params: dict, pass_callback: bool = True, **kwargs):
        cb = self._progress_callback(total, lambda s, t, p: on_progress(min(s, t), t, p) if on_progress else None,
                                     token)
        with self.queue.slot(token):
            t0 = time.perf_counter()
            if pass_callback:
                kwargs["sampler_kwargs"] = {"callback": cb}
            res = fn(self.library.get(req.model), **kwargs)
            dt = time.perf_counter() - t0
        w, h = info["size"]
        model_name = req.model if req.model != "." else self.library.root.name
        p = GenerationParams(prompt=req.prompt, negative_prompt=req.negative_prompt, steps=req.steps,
                             sampler=req.sampler, guidance_scale=req.guidance_scale, seed=req.seed, size=f"{w}x{h}",
                             model=model_name, model_hash=self.library.model_hash(req.model),
                             class_label=req.class_label, task=task, version=f"torchdiffusion {__version__}",
                             strength=extra_params.pop("strength", None), extra=extra_params)
        return res, p, dt

    def _input(self, upload, info: dict, name: str, size: tuple[int, int] | None = None) -> torch.Tensor:

        img = self.fit(self.load_upload(upload, name, info["channels"]), size or info["size"])
        return from_pil(img, info["channels"])[None]

    def _finish(self, task: str, res, p: GenerationParams, dt: float, inputs: list[Image.Image] | None = None) -> Result:
        pils = to_pil(res.images)
        paths = [self._save(img, p, task) for img in pils]
        info = {"nfe": res.nfe, **{k: v for k, v in res.info.items() if isinstance(v, (int, float, str))},
                "inputs": inputs or []}
        if res.info.get("class_described"):  # no class given: the one the model saw in the input
            info["class_used"] = res.info["class_described"]
        return Result(pils, [p] * len(pils), paths, dt, info)

    def img2img(self, req: GenerateRequest, image, strength: float, on_progress=None, token=None) -> Result:
        """SDEdit the uploaded ``image`` at ``strength`` (see :mod:`torchdiffusion.tasks.img2img`)."""
        req, info, cond = self._task_request(req)
        x = self._input(image, info, "img2img image")
        s = _unit("strength", strength)
        res, p, dt = self._run_task("img2img", img2img, req, info, on_progress, token, req.steps,
                                    {"strength": s}, images=x, strength=s, steps=req.steps, sampler=req.sampler,
                                    seed=req.seed, guidance_scale=req.guidance_scale, **cond)
        return self._finish("img2img", res, p, dt)

    def inpaint(self, req: GenerateRequest, image, mask, resample: int = 1, on_progress=None, token=None) -> Result:
        """Fill the painted (``mask`` > 0) pixels of ``image`` (see :mod:`torchdiffusion.tasks.inpaint`)."""
        req, info, cond = self._task_request(req)
        x = self._input(image, info, "inpaint image")
        m = self.mask_tensor(mask, info["size"])
        if float(m.sum()) == 0:
            raise ConfigError("inpaint: the mask is empty; paint over the part of the image to fill")
        r = _whole("resample", resample)
        if not 1 <= r <= 10:
            raise ConfigError(f"resample must be between 1 and 10, got {resample}")
        res, p, dt = self._run_task("inpaint", inpaint, req, info, on_progress, token, req.steps * r,
                                    {"Resample": r, "Mask pixels": int(m.sum())}, images=x, mask=m,
                                    steps=req.steps, sampler=req.sampler, seed=req.seed, resample=r,
                                    guidance_scale=req.guidance_scale, **cond)
        return self._finish("inpaint", res, p, dt)

    def mask_tensor(self, mask, size: tuple[int, int]) -> torch.Tensor:
        """A painted mask (PIL image: alpha or brightness > 0 where painted) → (1, 1, H, W) of
        0/1 at the model's size; a model pixel is filled when any painted pixel falls in it."""
        import numpy as np

        if mask is None:
            raise ConfigError("inpaint: paint a mask over the image first")
        if not isinstance(mask, Image.Image):
            mask = self.load_upload(mask, "mask", 3) if not isinstance(mask, np.ndarray) else Image.fromarray(mask)
        a = mask.getchannel("A") if mask.mode == "RGBA" else mask.convert("L")
        a = self.fit(a, size, Image.BOX)
        return torch.from_numpy((np.asarray(a) > 0).astype("float32"))[None, None]

    def upscale(self, req: GenerateRequest, image, factor: int, on_progress=None, token=None) -> Result:
        """Super-resolve the upload, first fit to (model size / ``factor``), by ``factor``."""
        req, info, cond = self._task_request(req)
        factor = _whole("upscale factor", factor)
        w, h = info["size"]
        if factor < 2 or w % factor or h % factor:
            raise ConfigError(f"upscale factor must divide the model size {w}×{h} (and be ≥ 2), got {factor}")
        x = self._input(image, info, "upscale image", (w // factor, h // factor))
        cond.pop("negative_prompt", None)
        res, p, dt = self._run_task("upscale", upscale, req, info, on_progress, token, req.steps,
                                    {"Upscale factor": factor}, lowres=x, factor=factor, steps=req.steps,
                                    sampler=req.sampler, seed=req.seed, guidance_scale=req.guidance_scale, **cond)

        out = self._finish("upscale", res, p, dt)
        out.info["bicubic"] = to_pil(upsample_bicubic(x, factor))[0]
        out.info["lowres"] = to_pil(x)[0]
        return out

    def denoise(self, req: GenerateRequest, image, sigma: float, method: str = "mean", on_progress=None,
                token=None) -> Result:
        """Denoise the upload with noise std ``sigma`` in [-1, 1] units (0: estimate it)."""

        if method not in ("mean", "sample"):
            raise ConfigError(f"denoise method must be 'mean' or 'sample', got {method!r}")
        req, info, cond = self._task_request(req)
        cond.pop("negative_prompt", None)
        x = self._input(image, info, "denoise image")
        sigma = _real("noise σ", sigma)
        if not 0 <= sigma <= 2:
            raise ConfigError(f"noise σ must be between 0 (estimate) and 2, got {sigma}")
        res, p, dt = self._run_task("denoise", denoise, req, info, on_progress, token,
                                    req.steps if method == "sample" else 1, {"Noise sigma": sigma, "Method": method},
                                    images=x, sigma=sigma or None, method=method, steps=req.steps,
                                    sampler=req.sampler, seed=req.seed, guidance_scale=req.guidance_scale, **cond)
        return self._finish("denoise", res, p, dt)

    def interpolate(self, req: GenerateRequest, seed_b: int, frames: int, on_progress=None, token=None) -> Result:
        """``frames`` images along the slerp between the noises of ``req.seed`` and ``seed_b``;
        ``info['gif']`` is the animation."""
        req, info, cond = self._task_request(req)
        cond.pop("negative_prompt", None)
        frames = self.limits.check_frames(frames)
        seed_b = _whole("seed B", seed_b)
        if not 0 <= seed_b <= MAX_SEED:
            raise ConfigError(f"seed B must be between 0 and {MAX_SEED}, got {seed_b}")
        if token is not None:
            token.check()
        res, p, dt = self._run_task("interpolate", interpolate_seeds, req, info, on_progress, token, 1,
                                    {"Seed B": seed_b, "Frames": frames}, pass_callback=False, seed_a=req.seed,
                                    seed_b=seed_b, frames=frames, steps=req.steps, sampler=req.sampler,
                                    guidance_scale=req.guidance_scale, **cond)
        out = self._finish("interpolate", res, p, dt)
        gif = self.outputs / "interpolate" / f"{int(time.time())}-{next(self._counter):05d}-{req.seed}-{seed_b}.gif"
        gif.parent.mkdir(parents=True, exist_ok=True)
        scale = max(1, PREVIEW_SIDE // max(info["size"]))
        out.info["gif"] = save_frames(res.images, gif, scale=scale)
        return out


def _unit(name: str, v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number between 0 and 1, got {v!r}") from None
    if not 0 <= f <= 1:  # NaN fails this too
        raise ConfigError(f"{name} must be between 0 and 1, got {f}")
    return f


def _whole(name: str, v) -> int:
    """A request field that must be a whole number (text, None, NaN, ±Inf, 2.5 refused)."""
    try:
        f = float(v)
        if isinstance(v, bool) or f != int(f):
            raise ValueError
        return int(f)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be a whole number, got {v!r}") from None


def _real(name: str, v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {v!r}") from None
    if f != f or f in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be a finite number, got {v!r}")
    return f

"""Command line for the editing tasks: ``torchdiffusion denoise | inpaint | upscale | img2img |
interpolate`` (``--help`` on each). Image and mask files in, PNGs out; the methods are in
:mod:`torchdiffusion.tasks` and docs/editing.md."""
from __future__ import annotations

import time
from pathlib import Path

from torchdiffusion.cli.help import HelpFormatter as _FMT, add_device_options
from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE, EDIT_SAMPLER, EDIT_STEPS, UPSCALE_SAMPLER
from torchdiffusion.errors import ConfigError

GUIDANCE_HELP = ("classifier-free guidance scale w: 0 = unconditional (the class or prompt is ignored), "
                 "1 = conditional without guidance, > 1 = guided toward the class or prompt; negative values "
                 "are refused")


def _common(p, sampler: str = EDIT_SAMPLER, steps: int = EDIT_STEPS) -> None:
    p.add_argument("--checkpoint", required=True, help="a model folder, a training run folder or a checkpoint folder")
    p.add_argument("--steps", type=int, default=steps, help="sampler steps (the NFE does not depend on strength etc.)")
    p.add_argument("--sampler", default=sampler, help="sampler name (DDIM, 'DPM++ 2M Karras', ABM, ddpm, …)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed+i")
    add_device_options(p)


def _cond(p) -> None:
    p.add_argument("--class", dest="class_label", default=None,
                   help="class index or name (class-conditional model); default: the class the model sees in each "
                        "input image (printed)")
    p.add_argument("--prompt", default=None, help="text prompt (text-conditional model)")
    p.add_argument("--guidance-scale", type=float, default=DEFAULT_GUIDANCE, help=GUIDANCE_HELP)


def _out(p, default: str) -> None:
    p.add_argument("--out", default=default,
                   help="output PNG (one input) or folder (several inputs: one PNG per input, same name)")
    p.add_argument("--scale", type=int, default=1, help="enlarge the written PNGs by pixel repetition")


def add_task_commands(sub) -> None:
    """Register the editing subcommands on the CLI's subparsers."""
    p = sub.add_parser("denoise", help="remove Gaussian noise from images", formatter_class=_FMT,
                       description="Denoise images whose noise std is --sigma (in units of pixels scaled to [-1, 1]; "
                                   "estimated from the image if omitted). --method mean: the posterior mean in one "
                                   "network call; sample: a posterior sample (reverse process from sigma). Images of "
                                   "another size than the model are processed in overlapping tiles.")
    _common(p, sampler="ddpm", steps=20)
    p.add_argument("--image", nargs="+", required=True, help="noisy image file(s)")
    p.add_argument("--sigma", type=float, default=None, help="noise std on the [-1, 1] scale (= 2 × std on [0, 1])")
    p.add_argument("--method", choices=("mean", "sample"), default="mean",
                   help="mean: the posterior mean in one network call; sample: a posterior sample")
    p.add_argument("--overlap", type=int, default=8, help="tile overlap in pixels")
    _cond(p)
    _out(p, "denoised.png")
    p.set_defaults(func=cmd_denoise)

    p = sub.add_parser("inpaint", help="fill masked regions of images", formatter_class=_FMT,
                       description="Fill the pixels where --mask is white (1); black (0) pixels are kept exactly. "
                                   "Zero-shot RePaint replacement for any model (--resample > 1 harmonizes the seam), "
                                   "or a mask-conditioned model trained with `train --task inpaint`.")
    _common(p)
    p.add_argument("--image", nargs="+", required=True, help="image file(s)")
    p.add_argument("--mask", required=True, help="mask file, same size as the image(s): white = fill")
    p.add_argument("--method", choices=("auto", "replace", "model", "both"), default="auto",
                   help="replace: zero-shot RePaint; model: a mask-conditioned model; both; auto: model for a "
                        "mask-conditioned model, else replace")
    p.add_argument("--jump", type=int, default=10, help="RePaint jump length (steps per resampled segment)")
    p.add_argument("--resample", type=int, default=1, help="RePaint resample count r (NFE ≈ r × steps)")
    _cond(p)
    _out(p, "inpainted.png")
    p.set_defaults(func=cmd_inpaint)

    p = sub.add_parser("upscale", help="super-resolve low-resolution images", formatter_class=_FMT,
                       description="Upscale images to the model's resolution: with an SR3 model (`train --task "
                                   "superres`), zero-shot with any pixel model by DDNM projection onto the images "
                                   "whose block averages are the input, or (the default for latent models) by "
                                   "bicubic upsampling + SDEdit at --strength + that projection.")
    _common(p, sampler=UPSCALE_SAMPLER)
    p.add_argument("--image", nargs="+", required=True, help="low-resolution image file(s)")
    p.add_argument("--factor", type=int, default=None, help="upscale factor (default: the model's / size ratio)")
    p.add_argument("--average", type=int, default=1,
                   help="the mean of this many posterior samples: higher PSNR, smoother detail (NFE × N)")
    p.add_argument("--method", choices=("auto", "sr3", "projection", "sdedit"), default="auto",
                   help="auto: sr3 for an SR model, sdedit for a latent model, else projection")
    p.add_argument("--aug-level", type=float, default=0.0, help="SR3 noise-conditioning augmentation level")
    p.add_argument("--strength", type=float, default=0.5, help="SDEdit strength of method sdedit")
    _cond(p)
    _out(p, "upscaled.png")
    p.set_defaults(func=cmd_upscale)

    p = sub.add_parser("img2img", help="SDEdit: re-generate images from a noised version", formatter_class=_FMT,
                       description="Noise the images to --strength (0 = unchanged, 1 = pure noise, i.e. plain "
                                   "generation) and denoise them, optionally towards a class or prompt. Always runs "
                                   "--steps steps: strength does not cut the number of network evaluations.")
    _common(p)
    p.add_argument("--image", nargs="+", required=True, help="image file(s)")
    p.add_argument("--strength", type=float, default=0.5, help="in [0, 1]")
    _cond(p)
    p.add_argument("--negative-prompt", default=None, help="what to steer away from (text model)")
    _out(p, "img2img.png")
    p.set_defaults(func=cmd_img2img)

    p = sub.add_parser("interpolate", help="latent walks between seeds, images or conditions", formatter_class=_FMT,
                       description="Frames between two seeds (slerp of their noise), two images (DDIM inversion, "
                                   "slerp, decode), two classes or two prompts (mixed predictions from one seed's "
                                   "noise). Writes a PNG strip and an animated GIF/WebP.")
    _common(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--seeds", type=int, nargs=2, metavar=("A", "B"), help="walk between the noises of two seeds")
    how.add_argument("--images", nargs=2, metavar=("A.png", "B.png"), help="walk between two images (DDIM inversion)")
    how.add_argument("--classes", nargs=2, metavar=("A", "B"), help="walk between two classes from one seed's noise")
    how.add_argument("--prompts", nargs=2, metavar=("A", "B"), help="walk between two prompts from one seed's noise")
    p.add_argument("--class", dest="class_label", nargs="+", metavar="CLASS", default=None,
                   help="with --seeds on a class model: one class for the whole walk or one per end (default: one "
                        "class, the one the model sees in seed A's unconditional sample)")
    p.add_argument("--prompt", default=None, help="with --seeds on a text model: the prompt of the walk")
    p.add_argument("--frames", type=int, default=8, help="frames, both ends included")
    p.add_argument("--guidance-scale", type=float, default=DEFAULT_GUIDANCE, help=GUIDANCE_HELP)
    p.add_argument("--out", default="walk.png", help="PNG strip of the frames")
    p.add_argument("--animation", default=None, help="also write an animated .gif or .webp")
    p.add_argument("--scale", type=int, default=2, help="enlarge the frames by pixel repetition")
    p.set_defaults(func=cmd_interpolate)


def _pipe(args):
    """Check the arguments that need no model (so a typo fails before any work), then load it."""
    from torchdiffusion.denoiser.guidance import check_guidance
    from torchdiffusion.io.images import check_output
    from torchdiffusion.pipeline.pipeline import DiffusionPipeline
    from torchdiffusion.sampling.registry import resolve_sampler

    if args.steps < 1:
        raise ConfigError(f"--steps must be ≥ 1, got {args.steps}")
    check_guidance(args.guidance_scale, "--guidance-scale")
    resolve_sampler(args.sampler)
    if getattr(args, "scale", 1) < 1:
        raise ConfigError(f"--scale must be ≥ 1, got {args.scale}")
    several = len(getattr(args, "image", None) or []) > 1
    check_output(args.out, "--out", folder=several, suffixes=() if several else (".png",))
    if getattr(args, "animation", None):
        check_output(args.animation, "--animation", suffixes=(".gif", ".webp"))
    return DiffusionPipeline.from_pretrained(args.checkpoint, device=args.device, precision=args.precision)


def _write(images, inputs: list[str], out: str, scale: int) -> list[Path]:
    from PIL import Image

    from torchdiffusion.io.images import save_image, to_pil

    pils = to_pil(images)
    if scale > 1:
        pils = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in pils]
    if len(pils) == 1:
        return [save_image(pils[0], Path(out))]
    folder = Path(out)
    if folder.suffix.lower() == ".png":
        raise ConfigError(f"--out {out}: give a folder for {len(pils)} input images")
    return [save_image(im, folder / (Path(src).stem + ".png")) for im, src in zip(pils, inputs)]


def _report(name: str, paths, result, dt: float, extra: str = "") -> None:
    where = paths[0] if len(paths) == 1 else f"{len(paths)} images in {Path(paths[0]).parent}"
    print(f"{name}: wrote {where}; {result.nfe} network evaluations{extra}, {dt:.1f} s")
    if result.info.get("class_described"):
        print(f"{name}: no --class given; used the class the model sees in the input: "
              f"{result.info['class_described']} (pass --class to choose)")


def cmd_denoise(args) -> int:
    from torchdiffusion.tasks import as_images, denoise

    pipe = _pipe(args)
    t0 = time.perf_counter()
    images = as_images(args.image, pipe.image_shape[0], "--image")
    r = denoise(pipe, images, args.sigma, method=args.method, steps=args.steps, sampler=args.sampler, seed=args.seed,
                overlap=args.overlap, class_labels=args.class_label, prompt=args.prompt,
                guidance_scale=args.guidance_scale)
    paths = _write(r.images, args.image, args.out, args.scale)
    how = "estimated" if r.info["sigma_estimated"] else "given"
    _report("denoise", paths, r, time.perf_counter() - t0, f" (σ = {r.info['sigma']:.3f}, {how})")
    return 0


def cmd_inpaint(args) -> int:
    from torchdiffusion.tasks import as_images, inpaint

    pipe = _pipe(args)
    t0 = time.perf_counter()
    images = as_images(args.image, pipe.image_shape[0], "--image")
    r = inpaint(pipe, images, args.mask, steps=args.steps, sampler=args.sampler, seed=args.seed, jump=args.jump,
                resample=args.resample, method=args.method, class_labels=args.class_label, prompt=args.prompt,
                guidance_scale=args.guidance_scale)
    paths = _write(r.images, args.image, args.out, args.scale)
    _report("inpaint", paths, r, time.perf_counter() - t0, f" ({r.info['method']})")
    return 0


def cmd_upscale(args) -> int:
    from torchdiffusion.tasks import as_images, upscale

    pipe = _pipe(args)
    t0 = time.perf_counter()
    images = as_images(args.image, pipe.image_shape[0], "--image")
    r = upscale(pipe, images, args.factor, steps=args.steps, sampler=args.sampler, seed=args.seed, average=args.average,
                method=args.method, aug_level=args.aug_level, strength=args.strength,
                class_labels=args.class_label, prompt=args.prompt,
                guidance_scale=args.guidance_scale)
    paths = _write(r.images, args.image, args.out, args.scale)
    _report("upscale", paths, r, time.perf_counter() - t0, f" ({r.info['method']}, ×{r.info['factor']})")
    return 0


def cmd_img2img(args) -> int:
    from torchdiffusion.tasks import as_images, img2img

    pipe = _pipe(args)
    t0 = time.perf_counter()
    images = as_images(args.image, pipe.image_shape[0], "--image")
    r = img2img(pipe, images, args.strength, steps=args.steps, sampler=args.sampler, seed=args.seed,
                class_labels=args.class_label, prompt=args.prompt, negative_prompt=args.negative_prompt,
                guidance_scale=args.guidance_scale)
    paths = _write(r.images, args.image, args.out, args.scale)
    _report("img2img", paths, r, time.perf_counter() - t0,
            f" (strength {r.info['strength']:g}, starting σ = {r.info['sigma_start']:.3g})")
    return 0


def cmd_interpolate(args) -> int:
    from torchdiffusion.tasks import interpolate_conditions, interpolate_images, interpolate_seeds, save_frames
    from torchdiffusion.io.images import save_grid

    pipe = _pipe(args)
    t0 = time.perf_counter()
    kw = dict(steps=args.steps)
    if (args.class_label or args.prompt) and not args.seeds:
        raise ConfigError("--class and --prompt go with --seeds (--classes/--prompts walk between two conditions)")
    if args.seeds:
        labels = args.class_label
        if labels is not None and len(labels) > 2:
            raise ConfigError(f"--class takes one class or two (one per end), got {len(labels)}")
        if labels is not None:
            labels = labels[0] if len(labels) == 1 else tuple(labels)
        r = interpolate_seeds(pipe, *args.seeds, args.frames, sampler=args.sampler, class_labels=labels,
                              prompt=args.prompt, guidance_scale=args.guidance_scale, **kw)
    elif args.images:
        r = interpolate_images(pipe, *args.images, args.frames, **kw)
    else:
        key = "class_labels" if args.classes else "prompt"
        a, b = args.classes or args.prompts
        r = interpolate_conditions(pipe, {key: a}, {key: b}, args.frames, seed=args.seed, sampler=args.sampler,
                                   guidance_scale=args.guidance_scale, **kw)
    save_grid(r.images, Path(args.out), nrow=len(r.images), scale=args.scale)
    extra = ""
    if args.animation:
        save_frames(r.images, args.animation, scale=max(args.scale, 1))
        extra = f" and {args.animation}"
    print(f"interpolate: wrote {args.out}{extra}: {len(r.images)} frames; {r.nfe} network evaluations, "
          f"{time.perf_counter() - t0:.1f} s")
    if r.info.get("class_described"):
        print(f"interpolate: no --class given; the walk is of class {r.info['class_described']} (the class "
              "the model sees in seed A's unconditional sample; --class A B walks across two classes)")
    return 0

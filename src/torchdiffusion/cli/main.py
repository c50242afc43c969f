"""Command line: ``torchdiffusion train`` and ``torchdiffusion sample`` (``--help`` on each)."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from torchdiffusion.cli.help import HelpFormatter, add_device_options
from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS
from torchdiffusion.networks.precision import PRECISIONS
from torchdiffusion.training import distributed
from torchdiffusion.cli.edit import GUIDANCE_HELP, add_task_commands
from torchdiffusion.cli.help import DEFAULT_INTERVAL_TEXT, INTERVAL_HELP
from torchdiffusion.errors import TorchDiffusionError
from torchdiffusion.cli.serve import add_serve_command
from torchdiffusion.cli.distill import add_distill_command
from torchdiffusion.cli.train_vae import add_vae_commands


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a diffusion model and write a sample grid",
                       formatter_class=HelpFormatter,
                       description="Train a U-Net denoiser on a bundled dataset or an image folder. Writes "
                                   "OUT/model (EMA weights + config.json), OUT/samples.png, OUT/samples/ "
                                   "(grids during training), OUT/log.csv and OUT/checkpoints/.")
    d = p.add_argument_group("data and output")
    d.add_argument("--data", default="mnist", help="'mnist' (bundled) or a folder of images (sub-folders = classes)")
    d.add_argument("--out", default="runs/mnist", help="output folder of the run")
    d.add_argument("--image-size", type=int, default=None, help="model resolution (default: 28 for mnist, else 32)")
    d.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="1 (grayscale) or 3 (RGB); default: from the data")
    d.add_argument("--hflip", action="store_true", help="random horizontal flips")
    d.add_argument("--vae", default=None, metavar="DIR",
                   help="latent diffusion: train on the latents of this train-vae run (OUT/model becomes a pipeline)")
    b = p.add_argument_group("budget")
    b.add_argument("--minutes", type=float, default=None, help="training wall-time budget in minutes (default: 8 when --steps is not given)")
    b.add_argument("--steps", type=int, default=None, help="number of optimizer steps")
    b.add_argument("--resume", action="store_true",
                   help="continue OUT's run from its latest checkpoint with its saved options (the budget, display "
                        "and monitoring options may be given anew; others only with --override)")
    b.add_argument("--override", action="append", default=[], metavar="OPTION",
                   help="with --resume: take this option's new value although it changes the run (e.g. --override lr "
                        "--lr 1e-3); repeatable")
    m = p.add_argument_group("model")
    m.add_argument("--base-channels", type=int, default=32, help="width of the first level (later levels: × --channel-mult)")
    m.add_argument("--channel-mult", type=_int_tuple, default=(1, 2, 2), help="width multiplier per level")
    m.add_argument("--num-res-blocks", type=int, default=1, help="residual blocks per level")
    m.add_argument("--attention-resolutions", type=_int_tuple, default=None,
                   help="feature-map sizes with self-attention (default: the smallest level)")
    m.add_argument("--dropout", type=float, default=0.0, help="dropout in the residual blocks")
    m.add_argument("--schedule", choices=("linear", "cosine", "sigmoid"), default="cosine", help="noise schedule ᾱ(t) of training")
    m.add_argument("--timesteps", type=int, default=1000, help="training timesteps T")
    m.add_argument("--parameterization", choices=("eps", "x0", "v"), default="v", help="what the network predicts: eps (noise), x0 (clean image) or v (velocity)")
    m.add_argument("--condition", choices=("auto", "none", "class", "text"), default="auto",
                   help="auto: class when the data has labels (MNIST digits, class sub-folders) and no --task, else "
                        "none; class: labels from the dataset's sub-folders (or MNIST digits); text: captions "
                        "(metadata.jsonl / .txt beside images, twemoji names, MNIST templates) through a frozen "
                        "MiniLM encoder; none: unconditional")
    m.add_argument("--cond-drop-prob", type=float, default=0.1,
                   help="probability of dropping the condition in training (enables guidance)")
    m.add_argument("--task", choices=("inpaint", "superres"), default=None,
                   help="train an image-conditioned model: inpaint (random masks as extra inputs) or superres "
                        "(SR3: the upsampled low-res image as extra inputs); see docs/editing.md")
    m.add_argument("--sr-factor", type=int, default=4, help="upscale factor of a --task superres model")
    o = p.add_argument_group("optimization")
    o.add_argument("--batch-size", type=int, default=64, help="images per optimizer step")
    o.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW, after linear warm-up)")
    o.add_argument("--warmup-steps", type=int, default=100, help="steps of linear learning-rate warm-up")
    o.add_argument("--grad-clip", type=float, default=1.0, help="clip the gradient's global norm to this")
    o.add_argument("--ema-decay", type=float, default=0.999, help="decay of the exponential moving average of the weights (the exported model)")
    o.add_argument("--weighting", choices=("simple", "min_snr"), default="min_snr", help="loss weighting over timesteps: simple (uniform) or min_snr (Hang et al. 2023)")
    o.add_argument("--min-snr-gamma", type=float, default=5.0, help="γ of the min-SNR weighting")
    o.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto = bf16 autocast where the CPU/GPU supports it; fp16 (CUDA) uses a gradient scaler")
    o.add_argument("--grad-accum", type=int, default=1,
                   help="split each process's share of --batch-size into this many micro-batches")
    o.add_argument("--device", default="cpu",
                   help="cpu or cuda (under torchrun each process takes the GPU of its LOCAL_RANK)")
    o.add_argument("--seed", type=int, default=0, help="seed of the run's weights, data order and noise")
    o.add_argument("--max-nan-steps", type=int, default=5,
                   help="a step with a NaN/Inf loss or gradient is skipped; stop after this many in a row")
    r = p.add_argument_group("monitoring")
    r.add_argument("--sample-every", type=int, default=500, help="write a sample grid every N steps")
    r.add_argument("--checkpoint-every", type=int, default=250, help="write a resumable checkpoint every N steps")
    r.add_argument("--log-every", type=int, default=10, help="append a row to OUT/log.csv every N steps")
    r.add_argument("--sample-steps", type=int, default=DEFAULT_STEPS, help="sampler steps for grids during training")
    r.add_argument("--final-steps", type=int, default=DEFAULT_STEPS, help="sampler steps for the final samples.png")
    r.add_argument("--sample-n", type=int, default=64,
                   help="images per grid (a class model's grid is rounded up to whole rows of its classes)")
    r.add_argument("--eval-every", type=int, default=None,
                   help="FID/KID (+ class accuracy) of the EMA model to OUT/eval.csv every N steps; default: 1000 for "
                        "MNIST (fast MNIST-classifier features, ~2%% of the training time), off for other data; 0 = off")
    r.add_argument("--eval-n", type=int, default=256, help="samples per evaluation during training")
    r.add_argument("--eval-steps", type=int, default=DEFAULT_STEPS, help="sampler steps for evaluation during training")
    r.add_argument("--eval-features", choices=("auto", "mnist", "inception"), default="auto",
                   help="feature network for evaluation during training (auto: mnist for digits, else inception)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from torchdiffusion.training.config import TrainConfig

    train_cfg = TrainConfig(
        data=args.data, out=args.out, steps=args.steps, minutes=args.minutes, batch_size=args.batch_size,
        lr=args.lr, warmup_steps=args.warmup_steps, grad_clip=args.grad_clip, ema_decay=args.ema_decay,
        weighting=args.weighting, min_snr_gamma=args.min_snr_gamma, cond_drop_prob=args.cond_drop_prob,
        seed=args.seed, hflip=args.hflip, vae=args.vae,
        precision=args.precision, device=args.device, sample_every=args.sample_every,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every, sample_n=args.sample_n,
        sample_steps=args.sample_steps, final_steps=args.final_steps, progress=not args.no_progress,
        grad_accum=args.grad_accum, max_nan_steps=args.max_nan_steps)
    train_cfg.eval_every, train_cfg.eval_n = args.eval_every, args.eval_n
    train_cfg.eval_steps, train_cfg.eval_features = args.eval_steps, args.eval_features
    train_cfg.validate()
    from torchdiffusion.io.images import check_output

    check_output(args.out, "--out", folder=True)  # before the data is loaded or anything trained
    import contextlib

    from torchdiffusion.io.runs import RunLock

    dist_info = distributed.init(args.device)
    try:
        with RunLock(args.out) if dist_info.is_main else contextlib.nullcontext():  # one trainer per --out
            return _run_training(args, train_cfg, dist_info)
    finally:
        distributed.cleanup(dist_info)


def _run_training(args, train_cfg, dist_info) -> int:
    from torchdiffusion.data import load_dataset
    from torchdiffusion.denoiser.model import ModelConfig
    from torchdiffusion.diffusion.schedules import ScheduleConfig
    from torchdiffusion.training.run import prepare_run
    from torchdiffusion.networks.unet import UNetConfig

    from torchdiffusion.io.runs import checkpoints_of

    if args.resume and checkpoints_of(Path(args.out)):  # the configs come from the checkpoint
        given = {dest: getattr(train_cfg, dest) for dest in getattr(args, "given", ()) if hasattr(train_cfg, dest)}
        if "no_progress" in getattr(args, "given", ()):
            given["progress"] = False
        check_model_options_on_resume(args, Path(args.out))
        trainer = prepare_run(None, train_cfg, resume=True, dist_info=dist_info, given=given,
                              overrides=set(args.override))
    else:
        if args.resume:  # killed before its first checkpoint: start it again from these arguments
            logging.getLogger("torchdiffusion").warning("%s: no checkpoint to resume from; starting a new run",
                                                        args.out)
        image_size = args.image_size or (28 if str(args.data).lower() == "mnist" else 32)
        unet_size = unet_channels = None
        if args.vae:  # the U-Net works on the VAE's latents (pixel size defaults to the VAE's)
            from torchdiffusion.denoiser.space import latent_geometry

            image_size, unet_size, unet_channels = latent_geometry(args.vae, args.image_size)
        dataset = load_dataset(args.data, image_size, args.channels)
        if not args.channel_mult:
            from torchdiffusion.errors import ConfigError
            raise ConfigError("--channel-mult needs at least one level (e.g. 1,2,2)")
        unet = UNetConfig(image_size=unet_size or image_size, in_channels=unet_channels or dataset.channels,
                          base_channels=args.base_channels,
                          channel_mult=args.channel_mult, num_res_blocks=args.num_res_blocks,
                          attention_resolutions=(), dropout=args.dropout)
        unet.attention_resolutions = (args.attention_resolutions if args.attention_resolutions is not None
                                      else (unet.resolutions[-1],))
        if args.condition == "auto":
            args.condition = resolve_auto_condition(dataset, getattr(args, "task", None))
            logging.getLogger("torchdiffusion").info("--condition auto: %s", args.condition)
        if args.condition == "class":
            if dataset.labels is None:
                from torchdiffusion.errors import ConfigError
                raise ConfigError(f"--condition class needs labelled data; {args.data} has no classes "
                                  "(put each class's images in its own sub-folder)")
            unet.num_classes = dataset.num_classes
        text_encoder = None
        if args.condition == "text":
            from torchdiffusion.denoiser.text import DEFAULT_ENCODER, build_text_encoder

            text_encoder = dict(DEFAULT_ENCODER)
            dim = build_text_encoder(text_encoder).dim
            unet.context_dim = unet.pooled_dim = dim
        model_cfg = ModelConfig(unet=unet, schedule=ScheduleConfig(args.schedule, args.timesteps),
                                parameterization=args.parameterization, class_names=dataset.class_names,
                                conditioning=args.condition, text_encoder=text_encoder)
        if getattr(args, "task", None):
            from torchdiffusion.denoiser.image_conditions import apply_task
            apply_task(model_cfg, args.task, args.sr_factor, latent=bool(getattr(args, "vae", None)))
        trainer = prepare_run(model_cfg, train_cfg, dataset=dataset, dist_info=dist_info)
    t0 = time.perf_counter()
    start = trainer.step
    model_dir = trainer.train()
    if dist_info.is_main:
        resumed = f" ({trainer.step - start} in this session, resumed at step {start})" if start else ""
        print(f"trained {trainer.step} steps{resumed} in {trainer.elapsed / 60:.1f} min of the training budget "
              f"({trainer.images_per_s:.0f} images/s while optimizing; {(time.perf_counter() - t0) / 60:.1f} min "
              f"wall with evaluation, export and the final grid); model: {model_dir}; samples: "
              f"{Path(trainer.cfg.out) / 'samples.png'}")
    return 0


# train options that are part of the model config: a resumed run keeps its network
_MODEL_OPTIONS = {"base_channels": lambda c: c.unet.base_channels, "channel_mult": lambda c: tuple(c.unet.channel_mult),
                  "num_res_blocks": lambda c: c.unet.num_res_blocks, "dropout": lambda c: c.unet.dropout,
                  "attention_resolutions": lambda c: tuple(c.unet.attention_resolutions),
                  "schedule": lambda c: c.schedule.name, "timesteps": lambda c: c.schedule.num_timesteps,
                  "parameterization": lambda c: c.parameterization, "condition": lambda c: c.conditioning}


def check_model_options_on_resume(args, out: Path) -> None:
    """Refuse model options typed with --resume that differ from the resumed model's config
    (the saved weights have that shape; silently ignoring them would be a silent wrong result)."""
    from torchdiffusion.denoiser.model import ModelConfig
    from torchdiffusion.errors import ConfigError
    from torchdiffusion.io.checkpoint import read_json
    from torchdiffusion.io.runs import latest_checkpoint

    given = getattr(args, "given", set())
    folder = latest_checkpoint(out)
    if folder is None or not given & (set(_MODEL_OPTIONS) | {"image_size", "channels", "task"}):
        return
    saved = ModelConfig.from_dict(read_json(folder, "config"))
    checks = dict(_MODEL_OPTIONS)
    latent = getattr(args, "vae", None) or (read_json(folder, "state").get("train_config") or {}).get("vae")
    if not latent:  # a latent model's U-Net size is the latent size, not --image-size
        checks["image_size"] = lambda c: c.unet.image_size
        checks["channels"] = lambda c: c.unet.in_channels
    checks["task"] = lambda c: (c.image_condition or {}).get("kind")
    for dest, get in checks.items():
        if dest not in given:
            continue
        value, old = getattr(args, dest), get(saved)
        if dest == "condition" and value == "auto":
            continue
        if value != old:
            flag = "--" + dest.replace("_", "-")
            raise ConfigError(f"{flag} {value} differs from the resumed model's {old} ({folder}): a resumed run keeps "
                              f"its network and schedule; leave {flag} out, or start a new run with another --out")


def resolve_auto_condition(dataset, task: str | None) -> str:
    """What ``--condition auto`` means for ``dataset``: "class" when it has two or more labelled
    classes (MNIST's digits, an image folder with class sub-folders) and the run is not an
    inpaint/superres task model, else "none".

    A class-conditional model costs the same per step as an unconditional one and, with CFG,
    gives far more recognizable samples in the same CPU budget (README: 69 % vs 14 % of the
    default 8-minute MNIST run's samples recognizable with p ≥ 0.9); it still samples
    unconditionally (the null class, ``--guidance-scale 0``) since the condition is dropped
    10 % of the time in training.
    """
    if task is None and dataset.labels is not None and (dataset.num_classes or 0) >= 2:
        return "class"
    return "none"


STEPS_HELP = f"sampler steps (default: {DEFAULT_STEPS}; a distilled student: the steps it was distilled for)"
SAMPLER_HELP = (f"sampler name, see `torchdiffusion samplers` (default: {DEFAULT_SAMPLER!r}; a distilled student: "
                "'Distilled')")


def check_sampling_options(args) -> None:
    """--steps and --sampler, checked before any model is loaded (None: the model's default)."""
    from torchdiffusion.errors import ConfigError
    from torchdiffusion.sampling.registry import resolve_sampler

    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be ≥ 1, got {args.steps}")
    if args.sampler is not None:
        resolve_sampler(args.sampler)


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate images with a trained model",
                       formatter_class=HelpFormatter,
                       description="Generate images from pure noise with a trained model and write a grid "
                                   "(and optionally one PNG per image).")
    p.add_argument("--checkpoint", required=True, help="a model folder, a training run folder or a checkpoint folder")
    p.add_argument("--n", type=int, default=64, help="number of images")
    p.add_argument("--steps", type=int, default=None, help=STEPS_HELP)
    p.add_argument("--sampler", default=None, help=SAMPLER_HELP)
    p.add_argument("--seed", type=int, default=0, help="image i uses seed+i, whatever the batch size")
    p.add_argument("--batch-size", type=int, default=64, help="images per optimizer step")
    p.add_argument("--class", dest="class_label", default=None,
                   help="class index or name for a class-conditional model; 'all' (the default for such a "
                        "model) = rows of every class")
    p.add_argument("--prompt", default=None, help="text prompt for a text-conditional model")
    p.add_argument("--negative-prompt", default=None, help="what to steer away from (replaces the empty prompt in CFG)")
    p.add_argument("--guidance-scale", type=float, default=DEFAULT_GUIDANCE, help=GUIDANCE_HELP)
    p.add_argument("--guidance-rescale", type=float, default=0.0, help="guidance rescale φ in [0, 1]")
    p.add_argument("--guidance-interval", default=DEFAULT_INTERVAL_TEXT, metavar="LO,HI", help=INTERVAL_HELP)
    p.add_argument("--out", default="samples.png", help="grid PNG to write")
    p.add_argument("--individual", metavar="DIR", default=None, help="also write each image as DIR/NNNNN.png")
    p.add_argument("--scale", type=int, default=2, help="enlarge the grid by pixel repetition")
    add_device_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args) -> int:
    from torchdiffusion.errors import ConfigError
    from torchdiffusion.io.images import save_image
    from torchdiffusion.pipeline.pipeline import DiffusionPipeline

    from torchdiffusion.denoiser.guidance import check_guidance, check_guidance_interval
    from torchdiffusion.io.images import check_output

    check_sampling_options(args)
    check_guidance(args.guidance_scale, "--guidance-scale")
    interval = check_guidance_interval(args.guidance_interval, "--guidance-interval")
    check_output(args.out, "--out", suffixes=(".png",))
    if args.individual:
        check_output(args.individual, "--individual", folder=True)
    pipe = DiffusionPipeline.from_pretrained(args.checkpoint, device=args.device, precision=args.precision)
    args.sampler, args.steps = pipe.default_sampling(args.sampler, args.steps)
    labels, nrow = args.class_label, None
    if labels is None and args.prompt is None and pipe.config.conditioning == "class":
        labels = "all"
    if labels == "all":
        k = pipe.config.unet.num_classes or 0
        if not k:
            raise ConfigError("--class all needs a class-conditional model")
        labels, nrow = [i % k for i in range(args.n)], k
    t0 = time.perf_counter()
    images = pipe.generate(n=args.n, steps=args.steps, sampler=args.sampler, seed=args.seed,
                           batch_size=args.batch_size, progress=not args.no_progress, class_labels=labels,
                           prompt=args.prompt, negative_prompt=args.negative_prompt,
                           guidance_scale=args.guidance_scale, guidance_rescale=args.guidance_rescale,
                           guidance_interval=interval)
    dt = time.perf_counter() - t0
    pipe.save_grid(images, args.out, nrow=nrow, scale=args.scale)
    if args.individual:
        for i, img in enumerate(pipe.to_pil(images)):
            save_image(img, Path(args.individual) / f"{args.seed + i:05d}.png")
    print(f"wrote {args.out}: {args.n} images, {args.sampler} {args.steps} steps, {pipe.precision}, {dt:.1f} s "
          f"({args.n / dt:.1f} images/s)")
    return 0


def _add_samplers(sub) -> None:
    p = sub.add_parser("samplers", help="list the sampler names (with their σ-grids and diffusers equivalents)",
                       description="Every name `--sampler` accepts: the familiar names (as in diffusers and web "
                                   "UIs), their σ-grid and the diffusers scheduler configuration they match. Case, "
                                   "'_' and '-' do not matter.")
    p.set_defaults(func=cmd_samplers)


def cmd_samplers(args) -> int:
    from torchdiffusion.sampling.registry import DEFAULT_SAMPLER, SAMPLER_REGISTRY, _REGISTRY_ROWS

    width = max(len(row[0]) for row in _REGISTRY_ROWS)
    for name, *_ in _REGISTRY_ROWS:
        spec = SAMPLER_REGISTRY[name]
        kind = "stochastic" if spec.stochastic else "deterministic"
        mark = "  (default)" if name == DEFAULT_SAMPLER else ""
        print(f"{name:<{width}}  {spec.grid:<11} {kind:<13} diffusers: {spec.diffusers}{mark}")
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="FID, KID, precision/recall (and class accuracy) of a trained model",
                       formatter_class=HelpFormatter,
                       description="Generate --n images and compare them with --data through a feature network. "
                                   "Every number is printed with its feature network and N.")
    p.add_argument("--checkpoint", required=True, help="a model, run or checkpoint folder")
    p.add_argument("--data", default="mnist", help="reference data: 'mnist' or a folder of images")
    p.add_argument("--n", type=int, default=2000, help="number of generated (and reference) images")
    p.add_argument("--features", choices=("mnist", "inception"), default="mnist",
                   help="mnist: fast MNIST-classifier features; inception: the TF Inception-v3 FID network")
    p.add_argument("--steps", type=int, default=None, help=STEPS_HELP)
    p.add_argument("--sampler", default=None, help=SAMPLER_HELP)
    p.add_argument("--guidance-scale", type=float, default=DEFAULT_GUIDANCE, help=GUIDANCE_HELP)
    p.add_argument("--guidance-interval", default=DEFAULT_INTERVAL_TEXT, metavar="LO,HI", help=INTERVAL_HELP)
    p.add_argument("--seed", type=int, default=0, help="seed of the run's weights, data order and noise")
    p.add_argument("--batch-size", type=int, default=256, help="images per optimizer step")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    add_device_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    import json

    from torchdiffusion.data import load_dataset
    from torchdiffusion.evaluation.evaluate import evaluate_pipeline
    from torchdiffusion.denoiser.guidance import check_guidance, check_guidance_interval
    from torchdiffusion.io.images import check_output
    from torchdiffusion.pipeline.pipeline import DiffusionPipeline

    check_sampling_options(args)
    check_guidance(args.guidance_scale, "--guidance-scale")
    interval = check_guidance_interval(args.guidance_interval, "--guidance-interval")
    if args.json:
        check_output(args.json, "--json", suffixes=(".json",))
    pipe = DiffusionPipeline.from_pretrained(args.checkpoint, device=args.device, precision=args.precision)
    args.sampler, args.steps = pipe.default_sampling(args.sampler, args.steps)
    c, _, size = pipe.image_shape  # pixels, also for a latent pipeline
    dataset = load_dataset(args.data, size, c)
    r = evaluate_pipeline(pipe, dataset, n=args.n, features=args.features, steps=args.steps, sampler=args.sampler,
                          seed=args.seed, guidance_scale=args.guidance_scale, batch_size=args.batch_size,
                          progress=not args.no_progress, guidance_interval=interval)
    tag = f"[{r['features']} features, N={r['n']}, {args.sampler} {args.steps} steps]"
    print(f"FID {r['fid']:.3f}  KID {r['kid']:.5f} ± {r['kid_stderr']:.5f}  precision {r['precision']:.3f}  "
          f"recall {r['recall']:.3f}  {tag}")
    if "recognizable" in r:
        line = f"recognizable digits (classifier p ≥ 0.9): {r['recognizable']:.1%}"
        if "class_accuracy" in r:
            line += (f"; class accuracy: {r['class_accuracy']:.1%}, recognizable and of the requested class: "
                     f"{r['recognizable_correct']:.1%} at guidance {args.guidance_scale}")
        print(line)
    print(f"sampling {r['seconds_sampling']:.1f} s, metrics {r['seconds_metrics']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchdiffusion", description="Train, sample and edit with image "
                                     "diffusion models on PyTorch.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_sample(sub)
    _add_eval(sub)
    _add_samplers(sub)
    add_vae_commands(sub)
    add_task_commands(sub)
    add_serve_command(sub)
    add_distill_command(sub)
    return parser


def _refuse_empty_values(parser: argparse.ArgumentParser, args) -> None:
    """Python 3.11's argparse turns ``--opt=--`` into ``[]`` for a one-value option, skipping its
    type check; refuse it like any malformed value instead of failing later."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    cmd = sub.choices.get(getattr(args, "command", None)) if sub is not None else None
    for action in (cmd._actions if cmd is not None else []):
        if action.nargs is None and not isinstance(action, argparse._AppendAction) \
                and getattr(args, action.dest, None) == []:
            cmd.error(f"argument {'/'.join(action.option_strings)}: expected one value")


def given_options(parser: argparse.ArgumentParser, args, argv: list[str]) -> set[str]:
    """The ``dest`` of every option typed on the command line of ``args.command`` (so that a
    resumed run can tell a restated option from an argparse default); unique prefixes count."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    cmd = sub.choices.get(getattr(args, "command", None)) if sub is not None else None
    if cmd is None:
        return set()
    options = {opt: a.dest for a in cmd._actions for opt in a.option_strings}
    given = set()
    for token in argv:
        if token == "--":
            break
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        matches = {options[name]} if name in options else {d for o, d in options.items() if o.startswith(name)}
        if len(matches) == 1:
            given |= matches
    return given


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    _refuse_empty_values(parser, args)
    args.given = given_options(parser, args, argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    from torchdiffusion.training.signals import TrainingStopped

    try:
        return args.func(args)
    except TrainingStopped as exc:  # a signal asked the run to stop; its checkpoint is written
        print(f"torchdiffusion {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except TorchDiffusionError as exc:
        print(f"torchdiffusion {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, read-only folder, permissions: one line naming the file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"torchdiffusion {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug of ours: no raw traceback for the user, but say how to get one
        if args.verbose:
            raise
        print(f"torchdiffusion {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(please report it; rerun with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""``torchdiffusion distill``: a few-step, guidance-distilled student of a trained model."""
from __future__ import annotations

import time

from torchdiffusion.cli.help import HelpFormatter


def add_distill_command(sub) -> None:
    from torchdiffusion.networks.precision import PRECISIONS
    from torchdiffusion.training.config import DEFAULT_MINUTES
    from torchdiffusion.training.distill import DISTILL_STEPS, GUIDANCE_RANGE

    p = sub.add_parser("distill", help="distil a trained model into a few-step student (one forward per step)",
                       formatter_class=HelpFormatter,
                       description="Guidance distillation (the guidance scale becomes the student's input, so one "
                                   "forward replaces the CFG pair; Meng et al. 2023) and progressive step "
                                   "distillation (Salimans & Ho 2022): round 0 distils the teacher into a 4-step "
                                   "student, each later round halves the steps. Each round is a resumable training "
                                   "run in OUT/round-K; the student is OUT/model, sampled with the sampler "
                                   f"'Distilled' for guidance scales {GUIDANCE_RANGE[0]:g} to {GUIDANCE_RANGE[1]:g}.")
    p.add_argument("--checkpoint", required=True, help="the teacher: a model, run or checkpoint folder")
    p.add_argument("--out", required=True, help="the distillation's folder (rounds, checkpoints, the student)")
    p.add_argument("--steps", type=int, default=4, choices=DISTILL_STEPS, help="the student's sampling steps")
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                   help="training time of all rounds together (half to the first round); default: the default "
                        "training budget of the teacher")
    p.add_argument("--data", default="mnist", help="the teacher's training data (a bundled name or a folder)")
    p.add_argument("--batch-size", type=int, default=64, help="images per optimizer step")
    p.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate of the student")
    p.add_argument("--seed", type=int, default=0, help="seed of the data order, noise and guidance draws")
    p.add_argument("--resume", action="store_true", help="continue a killed distillation in --out")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto = bf16 autocast where the CPU/GPU supports it")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_distill)


def cmd_distill(args) -> int:
    from torchdiffusion.data import load_dataset
    from torchdiffusion.errors import ConfigError
    from torchdiffusion.io.runs import find_model_folder
    from torchdiffusion.pipeline.folders import load_components
    from torchdiffusion.training.distill import distill, rounds_for

    rounds_for(args.steps)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    folder, _ = find_model_folder(args.checkpoint)
    _, tcfg, _ = load_components(folder)
    u = tcfg.unet
    dataset = load_dataset(args.data, u.image_size, u.in_channels)
    t0 = time.perf_counter()
    model = distill(folder, args.out, steps=args.steps, minutes=args.minutes, resume=args.resume, dataset=dataset,
                    train_options={"batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "data": args.data,
                                   "precision": args.precision, "device": args.device,
                                   "progress": not args.no_progress})
    print(f"distilled {folder} into a {args.steps}-step student in {(time.perf_counter() - t0) / 60:.1f} min: "
          f"{model} (sample it with: torchdiffusion sample --checkpoint {model})")
    return 0

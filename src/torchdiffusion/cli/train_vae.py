"""Command line for the autoencoder: ``torchdiffusion train-vae`` (added to the main parser by
:func:`add_vae_commands`). Diffusion on its latents is ``torchdiffusion train --vae DIR``."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from torchdiffusion.cli.help import HelpFormatter


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_vae_commands(sub) -> None:
    p = sub.add_parser("train-vae", help="train the autoencoder of a latent diffusion model",
                       formatter_class=HelpFormatter,
                       description="Train a KL-regularised VAE (or a plain autoencoder) with L1/L2 reconstruction, a KL "
                                   "weight and an optional PatchGAN loss with the adaptive weight of Esser et al. "
                                   "2021. Writes OUT/vae (config.json with the latent scale factor + "
                                   "model.safetensors), OUT/eval.json (held-out PSNR/SSIM), OUT/reconstructions.png, "
                                   "OUT/samples/, OUT/log.csv and OUT/checkpoints/. Then: torchdiffusion train "
                                   "--vae OUT ...")
    d = p.add_argument_group("data and output")
    d.add_argument("--data", default="mnist", help="'mnist', 'twemoji' or a folder of images")
    d.add_argument("--out", default="runs/vae", help="output folder of the run")
    d.add_argument("--image-size", type=int, default=None,
                   help="training resolution, a multiple of f (default: 28 for mnist, else 32)")
    d.add_argument("--channels", type=int, choices=(1, 3), default=None, help="default: from the data")
    d.add_argument("--holdout", type=float, default=0.05,
                   help="fraction held out for PSNR/SSIM (MNIST uses its own test split)")
    d.add_argument("--hflip", action="store_true", help="random horizontal flips")
    b = p.add_argument_group("budget")
    b.add_argument("--minutes", type=float, default=None, help="training wall-time budget (default 5 if no --steps)")
    b.add_argument("--steps", type=int, default=None, help="number of optimizer steps")
    b.add_argument("--resume", action="store_true", help="continue OUT's run from its latest checkpoint")
    m = p.add_argument_group("model")
    m.add_argument("--kind", choices=("kl", "ae"), default="kl", help="kl: VAE; ae: plain autoencoder")
    m.add_argument("--layout", choices=("f4", "f8"), default="f4",
                   help="downsampling factor f (LDM's f=4 / f=8 layouts); --channel-mult overrides it")
    m.add_argument("--channel-mult", type=_int_tuple, default=None, help="width multiplier per level (f = 2^(levels-1))")
    m.add_argument("--latent-channels", type=int, default=4, help="channels of the latent space")
    m.add_argument("--base-channels", type=int, default=32, help="width of the first level (later levels: × --channel-mult)")
    m.add_argument("--num-res-blocks", type=int, default=1, help="residual blocks per level")
    m.add_argument("--no-mid-attention", action="store_true", help="no self-attention at the latent resolution")
    lo = p.add_argument_group("loss and optimization")
    lo.add_argument("--rec-loss", choices=("l1", "l2"), default="l1", help="reconstruction loss")
    lo.add_argument("--kl-weight", type=float, default=1e-6, help="weight of the per-pixel KL term")
    lo.add_argument("--gan", action="store_true", help="add the PatchGAN hinge loss with the adaptive weight")
    lo.add_argument("--disc-start", type=int, default=500, help="steps before the GAN loss starts")
    lo.add_argument("--disc-weight", type=float, default=0.5, help="factor on the adaptive GAN weight")
    lo.add_argument("--batch-size", type=int, default=32, help="images per optimizer step")
    lo.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW, after linear warm-up)")
    lo.add_argument("--warmup-steps", type=int, default=50, help="steps of linear learning-rate warm-up")
    lo.add_argument("--device", default="cpu", help="cpu or cuda")
    lo.add_argument("--seed", type=int, default=0, help="seed of the run's weights, data order and noise")
    r = p.add_argument_group("monitoring")
    r.add_argument("--sample-every", type=int, default=500, help="write a reconstruction grid every N steps")
    r.add_argument("--checkpoint-every", type=int, default=250, help="write a resumable checkpoint every N steps")
    r.add_argument("--log-every", type=int, default=10, help="append a row to OUT/log.csv every N steps")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train_vae)


def cmd_train_vae(args) -> int:
    from torchdiffusion.networks.autoencoder import LAYOUTS, AutoencoderConfig
    from torchdiffusion.data import load_dataset
    from torchdiffusion.training.config import VAETrainConfig
    from torchdiffusion.training.autoencoder import load_vae_data, prepare_vae_run

    cfg = VAETrainConfig(data=args.data, out=args.out, steps=args.steps, minutes=args.minutes,
                         batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
                         rec_loss=args.rec_loss, kl_weight=args.kl_weight, gan=args.gan, disc_start=args.disc_start,
                         disc_weight=args.disc_weight, holdout=args.holdout, seed=args.seed, hflip=args.hflip,
                         device=args.device, sample_every=args.sample_every, checkpoint_every=args.checkpoint_every,
                         log_every=args.log_every, progress=not args.no_progress)
    cfg.validate()
    from torchdiffusion.io.runs import RunLock

    with RunLock(args.out):  # one trainer per --out
        return _train_vae(args, cfg)


def _train_vae(args, cfg) -> int:
    from torchdiffusion.networks.autoencoder import LAYOUTS, AutoencoderConfig
    from torchdiffusion.data import load_dataset
    from torchdiffusion.training.autoencoder import load_vae_data, prepare_vae_run

    if args.resume:
        trainer = prepare_vae_run(None, cfg, resume=True)
    else:
        size = args.image_size or (28 if str(args.data).lower() == "mnist" else 32)
        channels = args.channels or {"mnist": 1, "twemoji": 3}.get(str(args.data).lower())
        if channels is None:  # an image folder: its images decide
            channels = load_dataset(args.data, size).channels
        model_cfg = AutoencoderConfig(kind=args.kind, image_size=size, in_channels=channels,
                                      latent_channels=args.latent_channels, base_channels=args.base_channels,
                                      channel_mult=args.channel_mult or LAYOUTS[args.layout],
                                      num_res_blocks=args.num_res_blocks, mid_attention=not args.no_mid_attention)
        model_cfg.validate()
        trainer = prepare_vae_run(model_cfg, cfg, data=load_vae_data(cfg, model_cfg))
    t0 = time.perf_counter()
    folder = trainer.train()
    result = json.loads((Path(trainer.cfg.out) / "eval.json").read_text())
    print(f"trained {trainer.step} steps in {(time.perf_counter() - t0) / 60:.1f} min; held-out PSNR "
          f"{result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} on {result['n']} images; latents "
          f"{result['compression']:.1f}× smaller than pixels; scale factor {result['scale_factor']:.4f}; VAE: {folder}")
    return 0

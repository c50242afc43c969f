"""Train the small image-conditioned MNIST models that benchmarks/editing.py measures.

    python benchmarks/editing_train.py --task superres --sr-factor 4 --minutes 7 --out /tmp/td5/sr4
    python benchmarks/editing_train.py --task inpaint --minutes 7 --out /tmp/td5/inpaint

Same recipe as ``torchdiffusion train --task …`` (default U-Net, v-prediction, cosine
schedule, batch 64) but on the bundled MNIST *train* split (the first 90 % of each class),
so that the benchmark's held-out split (the last 10 %) is unseen by these models.
"""
from __future__ import annotations

import argparse

from torchdiffusion.data.mnist import load_mnist
from torchdiffusion.denoiser.model import ModelConfig
from torchdiffusion.diffusion.schedules import ScheduleConfig
from torchdiffusion.denoiser.image_conditions import apply_task
from torchdiffusion.training.config import TrainConfig
from torchdiffusion.training.run import prepare_run
from torchdiffusion.networks.unet import UNetConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=("inpaint", "superres", "none"), required=True)
    p.add_argument("--sr-factor", type=int, default=4)
    p.add_argument("--minutes", type=float, default=7.0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base-channels", type=int, default=32)
    p.add_argument("--channel-mult", default="1,2,2")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--resume", action="store_true", help="continue OUT's run (--minutes is the new total budget)")
    args = p.parse_args()
    data = load_mnist(28, split="train")
    mult = tuple(int(v) for v in args.channel_mult.split(","))
    unet = UNetConfig(image_size=28, in_channels=1, base_channels=args.base_channels, channel_mult=mult,
                      attention_resolutions=(UNetConfig(image_size=28, channel_mult=mult).resolutions[-1],),
                      head_channels=min(32, args.base_channels), norm_groups=min(8, args.base_channels // 2))
    cfg = ModelConfig(unet=unet,
                      schedule=ScheduleConfig("cosine", 1000), parameterization="v")
    if args.task != "none":
        apply_task(cfg, args.task, args.sr_factor)
    train = TrainConfig(data="mnist", out=args.out, minutes=None if args.steps else args.minutes, steps=args.steps,
                        seed=args.seed, batch_size=args.batch_size, sample_every=10**9, checkpoint_every=500, progress=False, final_steps=25)
    trainer = prepare_run(cfg, train, dataset=data, resume=args.resume)
    trainer.train()
    print(f"trained {trainer.step} steps in {trainer.elapsed / 60:.1f} min -> {args.out}/model")


if __name__ == "__main__":
    main()

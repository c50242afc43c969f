#!/usr/bin/env python
"""Sample quality per CPU minute: torchdiffusion's default MNIST recipe against a diffusers
reference recipe trained for the same time on the same machine (issue 7).

* **ours**: the default model of ``torchdiffusion train`` (1.2 M-parameter U-Net, cosine
  schedule, v-prediction, Min-SNR-5 weighting) trained by :class:`torchdiffusion.trainer.Trainer`
  with its default hyper-parameters (AdamW lr 2e-3, 100 warm-up steps, clipping at 1, EMA
  0.999, batch 64), sampled with our default sampler (DDIM, trailing grid) and 50 steps.
* **diffusers**: ``UNet2DModel`` configured like our U-Net (same depth, widths, attention and
  parameter count; see ``benchmarks/throughput.py``) + ``DDPMScheduler()`` as diffusers
  ships it (linear β 1e-4…0.02 over 1,000 steps, ε-prediction, plain MSE loss: the recipe of
  diffusers' ``train_unconditional`` example), trained with the *same loop features*
  (AdamW with the same lr, warm-up, clipping, EMA decay and warm-up rule, batch, data draws
  and precision), sampled with ``DDIMScheduler(timestep_spacing="trailing",
  set_alpha_to_one=True)`` (the scheduler our DDIM matches) and the same 50 steps from the
  same initial noises.

Both train in the same process, alternating in chunks of ``--chunk-seconds`` of wall time,
until each has spent ``--minutes`` of its own step time (data draw + forward + backward +
optimizer + EMA), so a machine shared with other jobs slows both alike. Sample grids,
checkpoints, logs and periodic evaluation are not run (and not counted) for either.

Then N samples of each are scored against N random MNIST digits with the same feature
network(s): FID, KID ± standard error, precision/recall (k = 3), and the share of digits the
packaged MNIST classifier recognizes with p ≥ 0.9.

    python benchmarks/quality.py                        # 10 min each, N = 2000, MNIST features
    python benchmarks/quality.py --minutes 2 --n 500    # a short check
    python benchmarks/quality.py --features mnist inception   # + the Inception network (slow)
    python benchmarks/quality.py --quick                # smoke test (seconds of training)

Needs ``diffusers`` (``pip install "torchdiffusion[bench]"``). Results: docs/evaluation.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from torchdiffusion.data.mnist import load_mnist
from torchdiffusion.training.ema import EMA  # noqa: E402
from torchdiffusion.evaluation.evaluate import digit_scores, sample_metrics  # noqa: E402
from torchdiffusion.evaluation.features import get_feature_extractor  # noqa: E402
from torchdiffusion.io.images import save_grid  # noqa: E402
from torchdiffusion.denoiser.model import ModelConfig  # noqa: E402
from torchdiffusion.pipeline.pipeline import DiffusionPipeline
from torchdiffusion.sampling.seeds import initial_noise, seeded_generators
from torchdiffusion.diffusion.schedules import ScheduleConfig  # noqa: E402
from torchdiffusion.training.config import TrainConfig
from torchdiffusion.training.diffusion import Trainer
from torchdiffusion.training.optim import lr_at
from torchdiffusion.networks.unet import UNetConfig, count_parameters  # noqa: E402


def default_model_config(dataset, condition: str = "class") -> ModelConfig:
    """The model ``torchdiffusion train --data mnist`` builds with its defaults (``--condition
    auto`` = class on the labelled MNIST; ``condition="none"`` for the unconditional one)."""
    unet = UNetConfig(image_size=28, in_channels=1, base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                      attention_resolutions=(7,), num_classes=dataset.num_classes if condition == "class" else None)
    return ModelConfig(unet=unet, schedule=ScheduleConfig("cosine", 1000), parameterization="v",
                       class_names=dataset.class_names, conditioning=condition)


def eval_labels(n: int, model_config: ModelConfig):
    """Class labels to sample (every class in turn) for a class model, else None."""
    return torch.arange(n) % model_config.unet.num_classes if model_config.conditioning == "class" else None


class Ours:
    """Our trainer with its defaults; one call = one optimizer step."""

    name = "ours"

    def __init__(self, dataset, seed: int, condition: str = "class"):
        self.model_config = default_model_config(dataset, condition)
        self.trainer = Trainer(self.model_config, TrainConfig(out=os.devnull, seed=seed, progress=False), dataset)
        self.trainer.network.train()
        self.params = count_parameters(self.trainer.network)

    @property
    def steps(self) -> int:
        return self.trainer.step

    @property
    def precision(self) -> str:
        return str(self.trainer.autocast_dtype or "fp32")

    def step(self) -> float:
        return self.trainer.train_step()[0]

    def sample(self, n: int, steps: int, seed: int, batch_size: int, guidance_scale: float) -> torch.Tensor:
        pipe = DiffusionPipeline(self.trainer._ema_denoiser(), self.model_config)
        return pipe.generate(n=n, steps=steps, sampler="ddim", seed=seed, batch_size=batch_size, progress=False,
                             class_labels=eval_labels(n, self.model_config), guidance_scale=guidance_scale)


class DiffusersRecipe:
    """``UNet2DModel`` + ``DDPMScheduler`` (ε-prediction, MSE) with our loop's features; for a
    class model, diffusers' ``num_class_embeds`` (a label embedding added to the timestep
    embedding, as ours) with the same condition dropout to a null class and the usual
    diffusers-pipeline CFG (one batched forward of [x, x] with [label, null])."""

    name = "diffusers"

    def __init__(self, dataset, seed: int, ours: Ours, lr: float | None = None):
        from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
        from throughput import diffusers_kwargs

        self.cfg = TrainConfig(out=os.devnull, seed=seed)
        if lr is not None:
            self.cfg.lr = lr
        self.dataset = dataset
        torch.manual_seed(seed)
        self.num_classes = ours.model_config.unet.num_classes  # None: unconditional
        self.unet = UNet2DModel(**diffusers_kwargs(ours.model_config.unet)).train()
        self.params = count_parameters(self.unet)
        self.scheduler = DDPMScheduler(num_train_timesteps=1000)
        self.ddim = DDIMScheduler.from_config(self.scheduler.config, timestep_spacing="trailing",
                                              set_alpha_to_one=True)
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.ema = EMA(self.unet, self.cfg.ema_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.autocast_dtype = ours.trainer.autocast_dtype  # the same precision as ours
        self.steps = 0

    @property
    def precision(self) -> str:
        return str(self.autocast_dtype or "fp32")

    def step(self) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.steps, self.cfg)
        b, g = self.cfg.batch_size, self.generator
        idx = torch.randint(len(self.dataset), (b,), generator=g)
        x = self.dataset.batch(idx)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), generator=g)
        noise = torch.randn(x.shape, generator=g)
        labels = None
        if self.num_classes:
            labels = self.dataset.labels[idx].long().clone()
            labels[torch.rand(b, generator=g) < self.cfg.cond_drop_prob] = self.num_classes  # the null class
        x_t = self.scheduler.add_noise(x, noise, t)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=self.autocast_dtype or torch.bfloat16, enabled=self.autocast_dtype is not None):
            pred = self.unet(x_t, t, class_labels=labels, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.ema.update(self.unet)
        self.steps += 1
        return loss.item()

    @torch.inference_mode()
    def sample(self, n: int, steps: int, seed: int, batch_size: int, guidance_scale: float) -> torch.Tensor:
        net = self.ema.model.eval()
        self.ddim.set_timesteps(steps)
        gens = seeded_generators(seed, n)
        labels = torch.arange(n) % self.num_classes if self.num_classes else None
        out = []
        for s in range(0, n, batch_size):
            x = initial_noise((1, 28, 28), gens[s:s + batch_size], 1.0)
            for t in self.ddim.timesteps:
                if labels is None:
                    eps = net(x, t, return_dict=False)[0]
                else:
                    c = labels[s:s + len(x)]
                    both = net(torch.cat([x, x]), t, class_labels=torch.cat([c, torch.full_like(c, self.num_classes)]),
                               return_dict=False)[0]
                    cond, uncond = both.chunk(2)
                    eps = uncond + guidance_scale * (cond - uncond)
                x = self.ddim.step(eps, t, x, eta=0.0, return_dict=False)[0]
            out.append(x)
        return torch.cat(out).clamp(-1, 1)


def train_alternating(models: list, seconds: float, chunk: float) -> dict[str, float]:
    """Give each model ``seconds`` of its own step time, in alternating chunks (the one with
    the least time so far goes next), so machine load affects both alike."""
    spent = {m.name: 0.0 for m in models}
    last_report = time.perf_counter()
    while min(spent.values()) < seconds:
        m = min(models, key=lambda m: spent[m.name])
        end = min(seconds, spent[m.name] + chunk)
        while spent[m.name] < end:
            t0 = time.perf_counter()
            loss = m.step()
            spent[m.name] += time.perf_counter() - t0
        if time.perf_counter() - last_report > 60:
            last_report = time.perf_counter()
            print("  " + ", ".join(f"{x.name}: {x.steps} steps in {spent[x.name] / 60:.1f} min" for x in models)
                  + f" (last loss {m.name} {loss:.4f})", flush=True)
    return spent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="training step time for each recipe")
    p.add_argument("--n", type=int, default=2000, help="samples per model (and reference digits)")
    p.add_argument("--steps", type=int, default=50, help="sampler steps (DDIM, trailing grid) for both")
    p.add_argument("--condition", choices=("class", "none"), default="class",
                   help="class: the default `train` model on MNIST (--condition auto) and a class-conditional "
                        "diffusers recipe; none: both unconditional")
    p.add_argument("--guidance-scale", type=float, default=2.0, help="CFG scale w of class models (sample's default)")
    p.add_argument("--features", nargs="+", default=["mnist"], choices=("mnist", "inception"))
    p.add_argument("--chunk-seconds", type=float, default=20.0, help="alternation chunk")
    p.add_argument("--ref-lr", type=float, default=None, help="learning rate of the diffusers recipe (default: ours)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--out", default="runs/quality", help="sample grids and results.json go here")
    p.add_argument("--quick", action="store_true", help="smoke test: seconds of training, 64 samples, 5 steps")
    args = p.parse_args(argv)
    if args.quick:
        args.minutes, args.n, args.steps, args.chunk_seconds = 0.05, 64, 5, 1.0
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_mnist()
    extractors = {f: get_feature_extractor(f) for f in args.features}  # fails early if inception is missing
    ours = Ours(dataset, args.seed, args.condition)
    ref = DiffusersRecipe(dataset, args.seed, ours, args.ref_lr)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"parameters: ours {ours.params:,}, diffusers {ref.params:,}; precision ours {ours.precision}, "
          f"diffusers {ref.precision}; batch {ref.cfg.batch_size}, lr ours {ours.trainer.cfg.lr:g}, "
          f"diffusers {ref.cfg.lr:g}")
    print(f"training each for {args.minutes:g} min of step time, alternating in {args.chunk_seconds:g} s chunks ...",
          flush=True)
    t0 = time.perf_counter()
    spent = train_alternating([ours, ref], args.minutes * 60, args.chunk_seconds)
    wall = time.perf_counter() - t0
    results = {"condition": args.condition, "guidance_scale": args.guidance_scale, "minutes": args.minutes, "n": args.n, "sampler_steps": args.steps, "seed": args.seed,
               "threads": torch.get_num_threads(), "wall_s": wall, "load_avg_end": os.getloadavg(), "models": {}}
    for m in (ours, ref):
        ts = time.perf_counter()
        images = m.sample(args.n, args.steps, args.seed, batch_size=250, guidance_scale=args.guidance_scale)
        t_sample = time.perf_counter() - ts
        save_grid(images[:100], out / f"samples-{m.name}.png", nrow=10, scale=2)
        # every sample as uint8, so other feature networks can score the same images later
        torch.save({"images": ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8),
                    "labels": eval_labels(args.n, ours.model_config)}, out / f"samples-{m.name}.pt")
        row = {"steps": m.steps, "train_s": spent[m.name], "images_per_s": m.steps * 64 / spent[m.name],
               "sample_s": t_sample, "metrics": {}}
        for f, ex in extractors.items():
            r = sample_metrics(images, dataset, ex)
            row["metrics"][f] = r
        row.update(digit_scores(images, eval_labels(args.n, ours.model_config)))
        results["models"][m.name] = row
        print(f"{m.name}: sampled {args.n} images in {t_sample:.0f} s", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))

    cond = (f"class-conditional, CFG w = {args.guidance_scale:g}, every class in turn" if args.condition == "class"
            else "unconditional")
    print(f"\n=== sample quality after {args.minutes:g} min of training each, N = {args.n}, "
          f"DDIM {args.steps} steps, {cond} (wall {wall / 60:.1f} min) ===")
    for f in args.features:
        name = extractors[f].name
        print(f"\nfeatures: {name}, N = {args.n} generated vs {args.n} MNIST digits")
        print(f"{'recipe':<10} {'steps':>6} {'img/s':>7} {'FID':>9} {'KID ± stderr':>20} {'prec':>6} {'recall':>6} "
              f"{'recogn.':>7} {'class acc':>9}")
        for m in ("ours", "diffusers"):
            row, r = results["models"][m], results["models"][m]["metrics"][f]
            print(f"{m:<10} {row['steps']:>6} {row['images_per_s']:>7.1f} {r['fid']:>9.3f} "
                  f"{r['kid']:>10.4f} ± {r['kid_stderr']:<7.4f} {r['precision']:>6.3f} {r['recall']:>6.3f} "
                  f"{row['recognizable']:>7.1%} "
                  + (f"{row['class_accuracy']:>9.1%}" if "class_accuracy" in row else f"{'–':>9}"))
        fo, fd = results["models"]["ours"]["metrics"][f]["fid"], results["models"]["diffusers"]["metrics"][f]["fid"]
        print(f"FID diffusers ÷ ours: {fd / fo:.2f}× (goal ≥ 2×: {'met' if fd / fo >= 2 else 'not met'})")
    print(f"\nsample grids and results.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

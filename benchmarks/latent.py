"""Latent vs pixel diffusion on a CPU: VAE reconstruction quality, time per training step, and
samples after the same short budget (the numbers in docs/latent.md).

    python benchmarks/latent.py --phase vae-mnist  --minutes 4     # f=4 VAE on MNIST 28 → 7×7×4
    python benchmarks/latent.py --phase vae-emoji  --minutes 6     # f=4 VAE on Twemoji 64 → 16×16×4
    python benchmarks/latent.py --phase step-time                  # pixel vs latent U-Net step, A/B
    python benchmarks/latent.py --phase ldm-emoji  --minutes 5     # text-to-image on the latents
    python benchmarks/latent.py --phase pixel-emoji --minutes 5    # the same U-Net on 64 px pixels
    python benchmarks/latent.py --phase table                      # print every result gathered

Every phase writes under --root (default runs/latent-bench) and appends its result to
results.json there; runs are serial, each within its own budget. Held-out PSNR/SSIM come from
``train-vae``'s eval.json (SSIM implemented in vae_training.ssim). Timings depend on the
machine and its load: the table is labelled with both.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from torchdiffusion.cli.main import main as cli

PROMPTS = ["red heart", "grinning face", "dog face", "pizza", "sun", "flag: france", "rocket", "snowman"]
UNET = ["--channel-mult", "1,2,2", "--lr", "1e-3"]


def _record(root: Path, name: str, value: dict) -> None:
    path = root / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    value["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
                       f"load {os.getloadavg()[0]:.1f}, torch threads {torch.get_num_threads()}"
    results[name] = value
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps({name: value}, indent=2))


def vae(root: Path, data: str, size: int, minutes: float, name: str, base: int, batch: int) -> None:
    out = root / name
    assert cli(["train-vae", "--data", data, "--image-size", str(size), "--out", str(out), "--minutes", str(minutes),
                "--layout", "f4", "--base-channels", str(base), "--batch-size", str(batch), "--lr", "1e-3",
                "--kl-weight", "1e-6", "--sample-every", "100000", "--no-progress"]) == 0
    r = json.loads((out / "eval.json").read_text())
    _record(root, name, {k: r[k] for k in ("psnr", "ssim", "n", "compression", "scale_factor", "step",
                                           "train_seconds")} | {"budget_min": minutes, "data": data, "size": size,
                                                             "base_channels": base, "batch_size": batch})


def step_time(root: Path, base: int, repeats: int = 3) -> None:
    """Training-step time of the same U-Net on 64 px RGB pixels vs 16×16×4 latents (batch 32), A/B
    (alternating, median of ``repeats``, one warm-up step each)."""
    from torchdiffusion.denoiser.losses import diffusion_loss
    from torchdiffusion.denoiser.model import ModelConfig, build_denoiser
    from torchdiffusion.diffusion.schedules import ScheduleConfig
    from torchdiffusion.networks.unet import UNetConfig

    def make(size, ch):
        cfg = ModelConfig(unet=UNetConfig(image_size=size, in_channels=ch, base_channels=base, channel_mult=(1, 2, 2),
                                          attention_resolutions=(size // 4,)), schedule=ScheduleConfig("cosine", 1000))
        den = build_denoiser(cfg)
        return den, torch.optim.AdamW(den.network.parameters(), lr=1e-4)

    nets = {"pixel 3×64×64": make(64, 3), "latent 4×16×16": make(16, 4)}
    times = {k: [] for k in nets}
    for _ in range(repeats):
        for name, (den, opt) in nets.items():
            c, s = (3, 64) if name.startswith("pixel") else (4, 16)
            x = torch.randn(32, c, s, s)
            for warm in (True, False) if not times[name] else (False,):
                t0 = time.perf_counter()
                loss = diffusion_loss(den.network, den.schedule, x, "v", "min_snr")
                opt.zero_grad()
                loss.backward()
                opt.step()
                if not warm:
                    times[name].append(time.perf_counter() - t0)
                    print(f"{name}: {times[name][-1]:.2f} s/step", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    # the VAE encode is paid once (cached latents); the decode once per sample grid
    _record(root, "step_time", {"seconds_per_step_batch32": med,
                                "speedup": med["pixel 3×64×64"] / med["latent 4×16×16"], "repeats": repeats,
                                "base_channels": base})


def diffusion(root: Path, minutes: float, latent: bool, base: int, batch: int) -> None:
    name = "ldm-emoji" if latent else "pixel-emoji"
    out = root / name
    args = ["train", "--data", "twemoji", "--condition", "text", "--out", str(out), "--minutes", str(minutes),
            *UNET, "--base-channels", str(base), "--batch-size", str(batch), "--sample-every", "100000", "--sample-n", "32", "--final-steps", "25", "--no-progress",
            "--precision", "fp32"]
    args += ["--vae", str(root / "vae-emoji")] if latent else ["--image-size", "64"]
    t0 = time.perf_counter()
    assert cli(args) == 0
    wall = time.perf_counter() - t0
    import csv

    rows = list(csv.DictReader(open(out / "log.csv")))
    steps, elapsed = int(rows[-1]["step"]), float(rows[-1]["elapsed_s"])
    grid = out / "prompts.png"
    t0 = time.perf_counter()
    assert cli(["sample", "--checkpoint", str(out), "--n", "4", "--steps", "25", "--prompt", PROMPTS[0],
                "--out", str(out / "heart.png"), "--no-progress", "--scale", "1"]) == 0  # the CLI path
    sample_s = time.perf_counter() - t0
    _prompt_grid(out, grid)
    _record(root, name, {"steps": steps, "train_seconds": elapsed, "seconds_per_step": elapsed / max(steps, 1),
                         "wall_seconds": wall, "budget_min": minutes, "grid": str(grid), "base_channels": base,
                         "batch_size": batch,
                         "sample_seconds_4_images_25_steps": sample_s})


def _prompt_grid(run: Path, path: Path, per_prompt: int = 4) -> None:
    """One column per prompt, ``per_prompt`` seeds each, guidance 3, DDIM 25 steps."""
    from torchdiffusion.pipeline.pipeline import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(run)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(per_prompt * len(PROMPTS))]
    images = pipe.generate(n=len(prompts), steps=25, seed=0, prompt=prompts, guidance_scale=3.0, progress=False)
    pipe.save_grid(images, path, nrow=len(PROMPTS))


def table(root: Path) -> None:
    r = json.loads((root / "results.json").read_text())
    for k, v in r.items():
        print(k, json.dumps(v))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase", required=True,
                   choices=("vae-mnist", "vae-emoji", "step-time", "ldm-emoji", "pixel-emoji", "table"))
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--root", default="runs/latent-bench")
    p.add_argument("--base-channels", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args()
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    if a.phase == "vae-mnist":
        vae(root, "mnist", 28, a.minutes, "vae-mnist", a.base_channels, a.batch_size)
    elif a.phase == "vae-emoji":
        vae(root, "twemoji", 64, a.minutes, "vae-emoji", a.base_channels, a.batch_size)
    elif a.phase == "step-time":
        step_time(root, a.base_channels)
    elif a.phase in ("ldm-emoji", "pixel-emoji"):
        diffusion(root, a.minutes, a.phase == "ldm-emoji", a.base_channels, a.batch_size)
    else:
        table(root)


if __name__ == "__main__":
    main()

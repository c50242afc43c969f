"""Editing benchmark on held-out MNIST digits: denoise, inpaint, super-resolve, img2img, inversion.

    python benchmarks/editing.py --model runs/mnist --sr-model /tmp/td5/sr4 --inpaint-model /tmp/td5/inpaint

Held-out digits: the bundled MNIST's 'test' split (the last 10 % of each class; the models of
benchmarks/editing_train.py never saw them; the default ``torchdiffusion train`` run trains on
all 10,000 bundled digits, so for it they are not strictly held out — the table says which).
Pixels are in [-1, 1]; PSNR = 10 log10(2² / MSE) per image, averaged (the same number as on
[0, 1] with peak 1); SSIM is scikit-image's (Gaussian window, data range 2). "class acc."
is the accuracy of the packaged MNIST classifier (torchdiffusion.classifier, 99.0 % on clean
held-out digits) on the restored images against the true labels; "feat. dist." is the mean
L2 distance between the classifier's 128-d features of the restored and the true image.
Classical baselines need scikit-image (the 'bench' extra). Prints Markdown tables and writes
example grids to --grids.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from torchdiffusion.evaluation.classifier import load_mnist_classifier
from torchdiffusion.data.mnist import load_mnist
from torchdiffusion.io.images import save_grid
from torchdiffusion.pipeline.pipeline import DiffusionPipeline
from torchdiffusion.tasks import (denoise, downsample, img2img, inpaint, invert, reconstruct, upsample_bicubic,
                                  upscale)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = (a - b).pow(2).flatten(1).mean(1).clamp(min=1e-12)
    return 10 * torch.log10(4.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    from skimage.metrics import structural_similarity

    return float(np.mean([structural_similarity(x[0].numpy(), y[0].numpy(), data_range=2.0, gaussian_weights=True)
                          for x, y in zip(a, b)]))


class Judge:
    """Classifier accuracy and feature distance to the truth."""

    def __init__(self):
        self.clf = load_mnist_classifier()

    def acc(self, images, labels) -> float:
        return self.clf.accuracy(images, labels)

    @torch.no_grad()
    def feat(self, images, truth) -> float:
        f = self.clf.features(self.clf.prepare(images))
        g = self.clf.features(self.clf.prepare(truth))
        return float((f - g).norm(dim=1).mean())


def _np(x):
    return ((x[:, 0].numpy() + 1) / 2).astype(np.float64)  # [0, 1] for scikit-image


def _torch(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float32) * 2 - 1)[:, None]


def table(title, header, rows):
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")


# --------------------------------------------------------------------------------------


def bench_denoise(pipe, x, labels, judge, grids):
    from skimage.restoration import denoise_tv_chambolle, denoise_wavelet

    rows = []
    g = torch.Generator().manual_seed(1)
    shown = []
    for sigma in (0.1, 0.2, 0.4):
        noisy = x + sigma * torch.randn(x.shape, generator=g)
        mean = denoise(pipe, noisy, sigma)
        est = denoise(pipe, noisy)  # σ estimated per batch
        samp = denoise(pipe, noisy, sigma, method="sample", steps=25, sampler="ddpm")
        s01 = sigma / 2  # noise std on the [0, 1] scale
        tv_best, tv_w = -1.0, None
        for w in (0.02, 0.05, 0.1, 0.2, 0.4):  # TV weight tuned on the test images (favours the baseline)
            tv = _torch([denoise_tv_chambolle(im, weight=w) for im in _np(noisy)])
            p = float(psnr(tv, x).mean())
            if p > tv_best:
                tv_best, tv_w, tv_img = p, w, tv
        wav = _torch([np.clip(denoise_wavelet(im, sigma=s01, method="BayesShrink", mode="soft", rescale_sigma=True),
                              0, 1) for im in _np(noisy)])
        noisy_c = noisy.clamp(-1, 1)
        rows.append([sigma, f"{float(psnr(noisy_c, x).mean()):.2f}", f"{tv_best:.2f} (w={tv_w})",
                     f"{float(psnr(wav, x).mean()):.2f}", f"**{float(psnr(mean.images, x).mean()):.2f}**",
                     f"{float(psnr(est.images, x).mean()):.2f} (σ̂={est.info['sigma']:.3f})",
                     f"{float(psnr(samp.images, x).mean()):.2f}",
                     f"{judge.acc(noisy_c, labels):.1%} / {judge.acc(tv_img, labels):.1%} / "
                     f"{judge.acc(mean.images, labels):.1%}"])
        shown += [noisy_c[:8], tv_img[:8], wav[:8], mean.images[:8], samp.images[:8], x[:8]]
    table("Denoising (PSNR dB, mean over images; NFE: posterior mean 1, sample 25)",
          ["σ", "noisy", "TV (best weight)", "wavelet BayesShrink", "ours: mean", "ours: mean, σ estimated",
           "ours: sample (DDPM 25)", "class acc. noisy / TV / ours"], rows)
    save_grid(torch.cat(shown), grids / "denoise.png", nrow=8, scale=2)


def _masks(kind, n):
    m = torch.zeros(n, 1, 28, 28)
    if kind == "half (bottom)":
        m[..., 14:, :] = 1
    else:
        m[..., 7:21, 7:21] = 1
    return m


def bench_inpaint(pipe, inpaint_pipe, x, labels, judge, grids, steps):
    from skimage.restoration import inpaint_biharmonic

    rows = []
    shown = []
    for kind in ("half (bottom)", "box 14×14 (centre)"):
        hole = _masks(kind, len(x))
        masked = x * (1 - hole) + hole * -1  # the hole filled with the background colour
        bih = _torch([inpaint_biharmonic(im, h[0].numpy().astype(bool)) for im, h in zip(_np(x * (1 - hole)), hole)])
        bih = x * (1 - hole) + hole * bih.clamp(-1, 1)
        cands = [("hole filled with background", masked, 0), ("biharmonic (scikit-image)", bih, 0)]
        t0 = time.perf_counter()
        r1 = inpaint(pipe, x, hole, steps=steps, sampler="ddim")
        cands.append((f"ours: replacement, DDIM {steps}", r1.images, r1.nfe))
        r5 = inpaint(pipe, x, hole, steps=steps, sampler="ddim", resample=5, jump=5)
        cands.append((f"ours: RePaint r=5 j=5, DDIM {steps}", r5.images, r5.nfe))
        if inpaint_pipe is not None:
            rm = inpaint(inpaint_pipe, x, hole, steps=steps, sampler="ddim")
            cands.append((f"ours: mask-conditioned model, DDIM {steps}", rm.images, rm.nfe))
        for name, img, nfe in cands:
            known_ok = bool(torch.equal(img * (1 - hole), x * (1 - hole))) if nfe else "-"
            mse_hole = float(((img - x) * hole).pow(2).sum() / hole.sum())
            rows.append([kind, name, nfe, f"{mse_hole:.3f}", f"{judge.acc(img, labels):.1%}",
                         f"{judge.feat(img, x):.2f}", known_ok])
        shown += [(x * (1 - hole))[:8]] + [c[1][:8] for c in cands[1:]] + [x[:8]]  # hole shown mid-gray
        print(f"  inpaint {kind}: {time.perf_counter() - t0:.0f} s")
    table("Inpainting (error to the hidden truth; known pixels must be unchanged)",
          ["mask", "method", "NFE", "MSE in hole", "class acc.", "feat. dist.", "known pixels exact"], rows)
    save_grid(torch.cat(shown), grids / "inpaint.png", nrow=8, scale=2)


def bench_superres(pipe, sr_pipe, x, labels, judge, grids, steps):
    low = downsample(x, 4)  # 7×7
    cands = [("bicubic", upsample_bicubic(low, 4), 0),
             ("nearest", torch.nn.functional.interpolate(low, scale_factor=4, mode="nearest"), 0)]
    r = upscale(pipe, low, 4, steps=steps, sampler="ddim")
    cands.append((f"ours: DDNM projection (unconditional model), DDIM {steps}", r.images, r.nfe))
    if sr_pipe is not None:
        for aug in (0.0, 0.1):
            r = upscale(sr_pipe, low, steps=steps, sampler="ddim", aug_level=aug)
            cands.append((f"ours: SR3 model (aug {aug}), DDIM {steps}", r.images, r.nfe))
    rows = []
    for name, img, nfe in cands:
        cons = float((downsample(img, 4) - low).abs().max())
        rows.append([name, nfe, f"{float(psnr(img, x).mean()):.2f}", f"{ssim(img, x):.3f}",
                     f"{judge.acc(img, labels):.1%}", f"{judge.feat(img, x):.2f}", f"{cons:.3f}"])
    rows.append(["(truth, 28×28)", "-", "∞", "1.000", f"{judge.acc(x, labels):.1%}", "0", "0"])
    table("Super-resolution ×4 (7×7 block averages → 28×28)",
          ["method", "NFE", "PSNR dB", "SSIM", "class acc.", "feat. dist.", "max \\|A x - y\\|"], rows)
    save_grid(torch.cat([c[1][:8] for c in cands] + [x[:8]]), grids / "superres.png", nrow=8, scale=2)


def bench_img2img(pipe, x, labels, judge, grids, steps):
    rows = []
    r0 = img2img(pipe, x[:16], 0.0)
    r1 = img2img(pipe, x[:16], 1.0, steps=steps, seed=3)
    gen = pipe.generate(n=16, steps=steps, sampler="ddim", seed=3, progress=False)
    print(f"\nimg2img checks: strength 0 returns the input: {torch.equal(r0.images, x[:16])} (NFE {r0.nfe}); "
          f"strength 1 equals generate(seed=3): {torch.equal(r1.images, gen)} (NFE {r1.nfe})")
    shown = [x[:8]]
    for s in (0.2, 0.4, 0.6, 0.8, 1.0):
        r = img2img(pipe, x, s, steps=steps, seed=0)
        rows.append([s, f"{r.info['sigma_start']:.3g}", r.nfe, f"{float(psnr(r.images, x).mean()):.2f}",
                     f"{judge.acc(r.images, labels):.1%}"])
        shown.append(r.images[:8])
    table(f"img2img (SDEdit), DDIM {steps} steps: how much of the input survives",
          ["strength", "σ_start", "NFE", "PSNR to input dB", "same digit as input (class acc.)"], rows)
    save_grid(torch.cat(shown), grids / "img2img.png", nrow=8, scale=2)


def bench_inversion(pipe, x):
    rows = []
    for steps in (10, 25, 50, 100):
        row = [steps]
        for iters in (0, 2):
            inv = invert(pipe, x, steps=steps, fixed_point_iters=iters)
            rec = reconstruct(pipe, inv.images, inv.info["sigmas"])
            row += [f"{float(psnr(rec.images, x).mean()):.2f}", inv.nfe + rec.nfe]
        rows.append(row)
    table("DDIM inversion round trip (invert, then DDIM on the same grid): PSNR to the image",
          ["steps", "explicit: PSNR dB", "NFE", "2 fixed-point iterations: PSNR dB", "NFE"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="an unconditional MNIST model/run folder")
    p.add_argument("--sr-model", default=None, help="an SR3 ×4 model (benchmarks/editing_train.py --task superres)")
    p.add_argument("--inpaint-model", default=None, help="a mask-conditioned model (--task inpaint)")
    p.add_argument("--n", type=int, default=200, help="held-out digits for denoising")
    p.add_argument("--n-gen", type=int, default=100, help="held-out digits for the sampling tasks")
    p.add_argument("--n-inv", type=int, default=32, help="digits for the inversion table")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--grids", default="docs/editing", help="folder for example grids")
    p.add_argument("--only", default="denoise,inpaint,superres,img2img,inversion")
    args = p.parse_args()
    torch.manual_seed(0)
    grids = Path(args.grids)
    grids.mkdir(parents=True, exist_ok=True)
    data = load_mnist(28, split="test")
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data), generator=g)
    x_all, y_all = data.batch(order), data.labels[order]
    pipe = DiffusionPipeline.from_pretrained(args.model)
    sr = DiffusionPipeline.from_pretrained(args.sr_model) if args.sr_model else None
    inp = DiffusionPipeline.from_pretrained(args.inpaint_model) if args.inpaint_model else None
    judge = Judge()
    only = set(args.only.split(","))
    print(f"held-out MNIST test split: {len(data)} digits; model {args.model}; threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    if "denoise" in only:
        bench_denoise(pipe, x_all[:args.n], y_all[:args.n], judge, grids)
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    xs, ys = x_all[:args.n_gen], y_all[:args.n_gen]
    if "inpaint" in only:
        bench_inpaint(pipe, inp, xs, ys, judge, grids, args.steps)
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    if "superres" in only:
        bench_superres(pipe, sr, xs, ys, judge, grids, args.steps)
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    if "img2img" in only:
        bench_img2img(pipe, xs, ys, judge, grids, args.steps)
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    if "inversion" in only:
        bench_inversion(pipe, x_all[:args.n_inv])
        print(f"  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()

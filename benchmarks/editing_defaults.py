"""Editing a class model with default flags (no --class): does the inferred class hold?

    python benchmarks/editing_defaults.py --model runs/mnist --n 200

On the bundled MNIST 'test' split (the last 10 % of each class; the default quickstart run trains
on all 10,000 bundled digits, so they are not strictly held out for it), N digits balanced over
the classes, every task called exactly as the CLI calls it without ``--class`` (default sampler,
steps and guidance; the class inferred by the model, :mod:`torchdiffusion.tasks.classify`):

* class inference on the clean digits: accuracy of the inferred class against the true label;
* inpaint of half-masked digits (bottom half, then right half, filled): the packaged MNIST
  classifier's accuracy on the output against the true label; the same with the null class
  (the old default) for comparison;
* upscale ×4 (7×7 block averages → 28×28): PSNR against the truth, the bicubic baseline's PSNR
  and the classifier's accuracy on the output;
* interpolate: seed walks (seeds i, i + 1000; class inferred per end) and class walks (class a → b
  from one seed, the embedding interpolated): the share of frames the classifier calls some
  digit with p ≥ 0.9 ("recognizable").

Judge: the packaged MNIST classifier (torchdiffusion.evaluation.classifier, 99.0 % on clean
held-out digits). Prints one Markdown table; nothing is timed or asserted.
"""
from __future__ import annotations

import argparse
import time

import torch

from machine import cpu_name  # benchmarks/machine.py

from torchdiffusion.data.mnist import load_mnist
from torchdiffusion.evaluation.classifier import load_mnist_classifier
from torchdiffusion.pipeline.pipeline import DiffusionPipeline
from torchdiffusion.tasks import (downsample, inpaint, interpolate_conditions, interpolate_seeds, upsample_bicubic,
                                  upscale)
from torchdiffusion.tasks.classify import infer_class


def psnr(a, b):
    return 10 * torch.log10(4.0 / (a - b).pow(2).flatten(1).mean(1).clamp(min=1e-12))


def balanced(n: int):
    data = load_mnist(28, split="test")
    x = data.images.float() / 127.5 - 1
    per = -(-n // 10)
    idx = torch.cat([(data.labels == c).nonzero().squeeze(1)[:per] for c in range(10)])[: n]
    return x[idx], data.labels[idx]


def upscale_rows(rows, pipe, clf, x, labels, low, t0):
    r = upscale(pipe, low, 4)
    r4 = upscale(pipe, low, 4, average=4)
    ours, bic = psnr(r.images, x).mean(), psnr(upsample_bicubic(low, 4), x).mean()
    rows.append(("upscale ×4: PSNR (dB) ours / bicubic", f"{ours:.2f} / {bic:.2f} (+{ours - bic:.2f})",
                 f"{time.perf_counter() - t0:.0f} s"))
    ours4 = psnr(r4.images, x).mean()
    rows.append(("upscale ×4 --average 4: PSNR (dB) / class accuracy",
                 f"{ours4:.2f} (+{ours4 - bic:.2f}) / {clf.accuracy(r4.images, labels):.1%}", "mean of 4 samples"))
    rows.append(("upscale ×4: class accuracy ours / bicubic",
                 f"{clf.accuracy(r.images, labels):.1%} / {clf.accuracy(upsample_bicubic(low, 4), labels):.1%}",
                 f"class inferred right {(torch.tensor(r.info['class_inferred']) == labels).float().mean():.1%}"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="runs/mnist")
    p.add_argument("--n", type=int, default=200, help="test digits (balanced over the classes)")
    p.add_argument("--walks", type=int, default=10, help="seed walks and class walks (8 frames each)")
    p.add_argument("--parts", default="classify,inpaint,upscale,walks",
                   help="comma-separated subset of: classify, inpaint, upscale, walks")
    args = p.parse_args()
    torch.manual_seed(0)
    pipe = DiffusionPipeline.from_pretrained(args.model)
    clf = load_mnist_classifier()
    x, labels = balanced(args.n)
    rows = []
    print(f"{cpu_name()}, {torch.get_num_threads()} threads; model {args.model}; N = {len(x)} test digits")

    parts = set(args.parts.split(","))
    if "classify" in parts:
        t0 = time.perf_counter()
        inferred, _ = infer_class(pipe, x)
        rows.append(("class inferred from the clean digit", f"{(inferred == labels).float().mean():.1%}",
                     f"{time.perf_counter() - t0:.0f} s"))
    halves = (("bottom", (slice(14, 28), slice(0, 28))), ("right", (slice(0, 28), slice(14, 28))))
    for name, region in halves if "inpaint" in parts else ():
        mask = torch.zeros(1, 1, 28, 28)
        mask[..., region[0], region[1]] = 1
        t0 = time.perf_counter()
        r = inpaint(pipe, x, mask)
        acc = clf.accuracy(r.images, labels)
        kept = torch.tensor(r.info["class_inferred"]) == labels
        rows.append((f"inpaint, {name} half filled (default flags)", f"{acc:.1%}",
                     f"{time.perf_counter() - t0:.0f} s; class inferred right {kept.float().mean():.1%}"))
        r0 = inpaint(pipe, x, mask, class_labels=0, guidance_scale=0.0)  # w = 0: unconditional, label ignored
        rows.append((f"inpaint, {name} half, unconditional (w = 0, the old default)",
                     f"{clf.accuracy(r0.images, labels):.1%}", ""))
    if "upscale" in parts:
        upscale_rows(rows, pipe, clf, x, labels, downsample(x, 4), time.perf_counter())
    for kind in ("seed", "class") if "walks" in parts else ():
        frames = []
        t0 = time.perf_counter()
        for i in range(args.walks):
            if kind == "seed":
                res = interpolate_seeds(pipe, i, i + 1000, 8)
            else:
                res = interpolate_conditions(pipe, {"class_labels": i % 10}, {"class_labels": (i * 3 + 1) % 10}, 8,
                                             seed=i)
            frames.append(res.images)
        _, probs = clf.classify(torch.cat(frames))
        conf = probs.max(1).values
        rows.append((f"interpolate, {kind} walks: frames recognizable (p ≥ 0.9)",
                     f"{(conf >= 0.9).float().mean():.1%}",
                     f"{args.walks} walks × 8 frames, {time.perf_counter() - t0:.0f} s"))

    print("\n| measurement | value | notes |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

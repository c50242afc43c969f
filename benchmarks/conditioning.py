"""Conditioning benchmark: does a conditional model draw what it is asked for, and what does
classifier-free guidance cost?

For a class-conditional MNIST model (``--class-model``) and a text-conditional one
(``--text-model``), generate ``--n`` digits at each guidance scale w and label them with the
packaged MNIST classifier (``torchdiffusion.classifier``: a separate CNN trained on the
bundled train split, 99.0 % on its held-out split; it never saw the diffusion model):

* class model: image i asks for digit i mod 10;
* text model: prompts from the *held-out* paraphrases (``captions.HELDOUT_TEMPLATES``:
  "seven", "a 7", "the number seven drawn by someone", ...), wordings never used in
  training, and for comparison the first training template ("a handwritten seven").

It also times sampling with and without guidance on the same model and batch: CFG runs the
conditional and unconditional branches as one batched forward of 2B, so its cost is one
network call per step on twice the batch (not two sequential calls).

    python benchmarks/conditioning.py --class-model runs/mnist-class --text-model runs/mnist-text \
        --n 500 --steps 25 --scales 0 1 2 4 8 --json conditioning.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from torchdiffusion import DiffusionPipeline

from torchdiffusion.denoiser import guidance
from torchdiffusion.data.captions import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, _fill
from torchdiffusion.evaluation.classifier import classify


def accuracy(images: torch.Tensor, labels: torch.Tensor) -> float:
    pred, _ = classify(images)
    return float((pred == labels).float().mean())


def class_table(pipe, n, steps, sampler, scales, seed):
    labels = torch.arange(n) % 10
    rows = []
    for w in scales:
        t0 = time.perf_counter()
        x = pipe.generate(n=n, steps=steps, sampler=sampler, seed=seed, class_labels=labels, guidance_scale=w,
                          batch_size=250, progress=False)
        rows.append({"guidance": w, "accuracy": accuracy(x, labels), "seconds": time.perf_counter() - t0})
        print(f"  class model  w={w:<4g} accuracy {rows[-1]['accuracy']:.1%}  ({rows[-1]['seconds']:.1f} s)", flush=True)
    return rows


def text_table(pipe, n, steps, sampler, scales, seed):
    labels = torch.arange(n) % 10
    heldout = [_fill(HELDOUT_TEMPLATES[(i // 10) % len(HELDOUT_TEMPLATES)], int(c)) for i, c in enumerate(labels)]
    trained = [_fill(TRAIN_TEMPLATES[0], int(c)) for c in labels]
    rows = []
    for w in scales:
        row = {"guidance": w}
        for key, prompts in (("heldout_accuracy", heldout), ("train_template_accuracy", trained)):
            x = pipe.generate(n=n, steps=steps, sampler=sampler, seed=seed, prompt=prompts, guidance_scale=w,
                              batch_size=250, progress=False)
            row[key] = accuracy(x, labels)
        if w == scales[-1] or w == 4:  # per-template breakdown at one scale
            per = {}
            for t in HELDOUT_TEMPLATES:
                prompts = [_fill(t, int(c)) for c in labels[:100]]
                x = pipe.generate(n=100, steps=steps, sampler=sampler, seed=seed, prompt=prompts, guidance_scale=w,
                                  batch_size=100, progress=False)
                per[t] = accuracy(x, labels[:100])
            row["per_heldout_template"] = per
        rows.append(row)
        print(f"  text model   w={w:<4g} held-out paraphrases {row['heldout_accuracy']:.1%}  "
              f"training template {row['train_template_accuracy']:.1%}", flush=True)
    return rows


def cfg_timing(pipe, steps, sampler, batch, repeats=3):
    """Median seconds for one `generate` call with w = 1 (one forward of B per step) and
    w = 3 (one batched forward of 2B per step), and the network alone at B and 2B."""
    kw = dict(n=batch, steps=steps, sampler=sampler, seed=0, batch_size=batch, progress=False)
    cond = {"class_labels": 3} if pipe.config.conditioning == "class" else {"prompt": "a handwritten three"}

    def med(fn):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return sorted(ts)[len(ts) // 2]

    plain = med(lambda: pipe.generate(guidance_scale=1.0, **cond, **kw))
    guided = med(lambda: pipe.generate(guidance_scale=3.0, **cond, **kw))
    # the same guidance as two sequential network calls per step (what CFGDenoiser avoids)
    batched_forward = guidance.CFGDenoiser.forward
    guidance.CFGDenoiser.forward = _sequential_cfg
    try:
        sequential = med(lambda: pipe.generate(guidance_scale=3.0, **cond, **kw))
    finally:
        guidance.CFGDenoiser.forward = batched_forward
    return {"batch": batch, "steps": steps, "seconds_w1": plain, "seconds_cfg": guided, "ratio": guided / plain,
            "seconds_cfg_sequential": sequential, "ratio_sequential": sequential / plain}


def _sequential_cfg(self, x, sigma):
    d_c = self.denoiser(x, sigma, **self.cond)
    d_u = self.denoiser(x, sigma, **self.uncond)
    return d_u + self.scale * (d_c - d_u)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--class-model")
    ap.add_argument("--text-model")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--scales", type=float, nargs="+", default=[0, 1, 2, 4, 8])
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--timing-batch", type=int, default=64)
    ap.add_argument("--timing-only", action="store_true", help="only the CFG timing")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    out = {"n": args.n, "steps": args.steps, "sampler": args.sampler, "classifier": "torchdiffusion MNIST CNN"}
    if args.class_model:
        pipe = DiffusionPipeline.from_pretrained(args.class_model)
        print(f"class-conditional model {args.class_model}: N={args.n}, {args.sampler} {args.steps} steps")
        if not args.timing_only:
            out["class"] = class_table(pipe, args.n, args.steps, args.sampler, args.scales, args.seed)
        out["cfg_timing_class"] = t = cfg_timing(pipe, args.steps, args.sampler, args.timing_batch)
        print(f"  CFG cost: {t['seconds_cfg']:.2f} s vs {t['seconds_w1']:.2f} s without guidance "
              f"(×{t['ratio']:.2f}; two sequential calls: ×{t['ratio_sequential']:.2f}; batch {t['batch']}, "
              f"{t['steps']} steps)")
    if args.text_model:
        pipe = DiffusionPipeline.from_pretrained(args.text_model)
        print(f"text-conditional model {args.text_model}: N={args.n}, {args.sampler} {args.steps} steps")
        if not args.timing_only:
            out["text"] = text_table(pipe, args.n, args.steps, args.sampler, args.scales, args.seed)
        out["cfg_timing_text"] = t = cfg_timing(pipe, args.steps, args.sampler, args.timing_batch)
        print(f"  CFG cost: {t['seconds_cfg']:.2f} s vs {t['seconds_w1']:.2f} s without guidance "
              f"(×{t['ratio']:.2f}; batch {t['batch']}, {t['steps']} steps)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()

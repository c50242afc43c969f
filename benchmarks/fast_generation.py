"""Fast generation on a trained model: precision, FID/accuracy against NFE, the default, guidance cost.

    python benchmarks/fast_generation.py --model runs/mnist --part precision
    python benchmarks/fast_generation.py --model runs/mnist --part curves --n 500 --csv curves.csv --plot curves.png
    python benchmarks/fast_generation.py --model runs/mnist --part interval --n 1000
    python benchmarks/fast_generation.py --model runs/mnist --part headline --n 1000
    torchdiffusion distill --checkpoint runs/mnist --out runs/mnist-distilled --steps 1
    python benchmarks/fast_generation.py --model runs/mnist --part students --n 1000 \
        --students runs/mnist-distilled/round-4/model,runs/mnist-distilled/round-2/model,runs/mnist-distilled/model
    python benchmarks/fast_generation.py --model runs/mnist --part diffusers --steps 4 --n 1000 \
        --samplers "DDIM;DPM++ 2M" --students runs/mnist-distilled/round-4/model

Model: a class-conditional MNIST model (the default quickstart run). Every image is asked for
class i mod 10 with classifier-free guidance w (default 2, ``DEFAULT_GUIDANCE``), seeds 0…N-1.
Judges: the packaged MNIST classifier (class accuracy: argmax = requested class; it is 99.0 %
accurate on held-out digits) and FID on its 128-d penultimate features against N bundled MNIST
training-split digits (``evaluation.evaluate.sample_metrics``; FID at a given N is biased upwards, compare rows
of one N only). The noise floor printed with each table is the FID of N *real* held-out digits.

Parts:

* ``precision``: forward throughput of the network at the sampling batch (2 × batch for CFG) in
  fp32, bf16 autocast and bf16 autocast + channels-last, measured interleaved in one process;
  then FID and accuracy of the default sampler in fp32 and bf16 (same seeds).
* ``curves``: FID and accuracy against NFE (network evaluations; each is one batched CFG forward)
  for every registered sampler; the knee of each curve (the fewest NFE within 5 % of that
  sampler's best FID); CSV and a plot.
* ``interval``: guidance only for σ in an interval (Kynkäänniemi et al. 2024) at the default sampler.
* ``headline``: the old default (DDIM 50 steps, fp32, guidance at every σ) against the current
  defaults, end to end (``pipe.generate`` wall time, the same N images).
* ``students``: distilled students (``torchdiffusion distill``) against their teacher at the old
  and the new default.
* ``diffusers``: diffusers' few-step schedulers (DDIM, DPM-Solver++, UniPC, LCM) driven on the
  same network at the same NFE, against ours and a student of that many steps (needs the
  ``bench`` extra).

Nothing is asserted; every figure is printed with the CPU it ran on.
"""
from __future__ import annotations

import argparse
import csv
import math
import time

import torch

from machine import cpu_name  # benchmarks/machine.py

from torchdiffusion.data import load_dataset
from torchdiffusion.evaluation.evaluate import digit_scores, sample_metrics
from torchdiffusion.evaluation.features import get_feature_extractor
from torchdiffusion.networks.precision import bf16_supported
from torchdiffusion.pipeline.pipeline import DiffusionPipeline
from torchdiffusion.sampling.registry import (DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_INTERVAL, DEFAULT_SAMPLER,
                                              DEFAULT_STEPS, SAMPLER_REGISTRY, _REGISTRY_ROWS, resolve_sampler)

OLD_DEFAULT = ("DDIM", 50)


def machine_line() -> str:
    return (f"CPU: {cpu_name()}, {torch.get_num_threads()} threads, native bf16: {bf16_supported()}, "
            f"torch {torch.__version__}")


class Judge:
    """FID (MNIST-classifier features, against N bundled digits) and class accuracy of N images."""

    def __init__(self, n: int):
        self.n = n
        self.dataset = load_dataset("mnist", 28, 1, split="train")  # reference; the floor uses the test split
        self.extractor = get_feature_extractor("mnist")

    def __call__(self, images: torch.Tensor) -> dict:
        labels = torch.arange(len(images)) % 10
        r = sample_metrics(images, self.dataset, self.extractor)
        r.update(digit_scores(images, labels))
        return r

    def floor(self) -> float:
        """FID of N real digits (the test split, not the reference subset): the noise floor at this N."""
        test = load_dataset("mnist", 28, 1, split="test")
        g = torch.Generator().manual_seed(123)
        idx = torch.randperm(len(test), generator=g)[: self.n]
        x = test.images[idx].float() / 127.5 - 1
        return sample_metrics(x, self.dataset, self.extractor)["fid"]


def generate(pipe, n, sampler, steps, guidance=DEFAULT_GUIDANCE, interval=DEFAULT_GUIDANCE_INTERVAL, batch_size=125):
    t0 = time.perf_counter()
    images = pipe.generate(n=n, steps=steps, sampler=sampler, seed=0, batch_size=batch_size, progress=False,
                           class_labels=[i % 10 for i in range(n)], guidance_scale=guidance,
                           guidance_interval=interval)
    return images, time.perf_counter() - t0


def steps_for_nfe(name: str, nfe: int) -> int | None:
    """Sampler steps whose network evaluations equal ``nfe`` (None when none do: Heun's 2n-1)."""
    spec = resolve_sampler(name)
    for steps in range(1, nfe + 1):
        if spec.nfe(steps) == nfe:
            return steps
    return None


# --- parts ---------------------------------------------------------------------------------
def part_precision(pipe, args, judge):
    net = pipe.denoiser.network
    b = 2 * args.batch_size
    x = torch.randn(b, *pipe.latent_shape)
    t = torch.rand(b)
    labels = torch.arange(b) % 10
    variants = {"fp32": (None, False), "bf16": (torch.bfloat16, False), "bf16 + channels-last": (torch.bfloat16, True)}
    times = {k: [] for k in variants}
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, (dtype, cl) in variants.items():  # interleaved: load drifts hit every variant alike
                net.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
                xin = x.contiguous(memory_format=torch.channels_last) if cl else x
                with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                    net(xin, t, class_labels=labels)  # warm-up (oneDNN primitive creation)
                    t0 = time.perf_counter()
                    for _ in range(3):
                        net(xin, t, class_labels=labels)
                    times[name].append((time.perf_counter() - t0) / 3)
    net.to(memory_format=torch.contiguous_format)
    print(f"\n### Network forward throughput, batch {b} (a CFG step of {args.batch_size} images), "
          f"median of {args.repeats} interleaved rounds\n\n{machine_line()}\n")
    print("| precision | ms per forward | images/s | vs fp32 |\n|---|---|---|---|")
    base = sorted(times["fp32"])[len(times["fp32"]) // 2]
    for name, ts in times.items():
        med = sorted(ts)[len(ts) // 2]
        print(f"| {name} | {med * 1e3:.1f} | {b / med:.0f} | {base / med:.2f}× |")
    sampler, steps = args.sampler or DEFAULT_SAMPLER, args.steps or DEFAULT_STEPS
    print(f"\n### Quality in fp32 and bf16 ({sampler}, {steps} steps, w = {DEFAULT_GUIDANCE:g}, N = {args.n}, "
          f"same seeds)\n")
    print("| precision | FID | class accuracy | sampling s | images/s |\n|---|---|---|---|---|")
    for precision in ("fp32", "bf16"):
        pipe.set_precision(precision)
        images, dt = generate(pipe, args.n, sampler, steps, interval=None)
        r = judge(images)
        print(f"| {precision} | {r['fid']:.2f} | {r['class_accuracy']:.1%} | {dt:.1f} | {args.n / dt:.1f} |")
    print(f"\nnoise floor (FID of {args.n} real held-out digits): {judge.floor():.2f}")


def part_curves(pipe, args, judge):
    names = args.samplers.split(";") if args.samplers else [row[0] for row in _REGISTRY_ROWS]
    nfes = [int(v) for v in args.nfe.split(",")]
    rows = []
    print(f"\n### FID and class accuracy against NFE (w = {DEFAULT_GUIDANCE:g} at every σ, N = {args.n}, "
          f"{pipe.precision})\n\n{machine_line()}\n")
    print("| sampler | grid | " + " | ".join(f"NFE {k}" for k in nfes) + " | knee |")
    print("|---|---|" + "---|" * (len(nfes) + 1))
    for name in names:
        spec = SAMPLER_REGISTRY[name]
        cells, fids = [], {}
        for nfe in nfes:
            steps = steps_for_nfe(name, nfe)
            if steps is None:
                cells.append("–")
                continue
            images, dt = generate(pipe, args.n, name, steps, interval=None)  # guided at every σ
            r = judge(images)
            fids[nfe] = r["fid"]
            rows.append({"sampler": name, "grid": spec.grid, "nfe": nfe, "steps": steps, "fid": r["fid"],
                         "class_accuracy": r["class_accuracy"], "recognizable": r["recognizable"], "seconds": dt})
            cells.append(f"{r['fid']:.2f} / {r['class_accuracy']:.0%}")
        best = min(fids.values()) if fids else math.nan
        knee = min((k for k, f in fids.items() if f <= 1.05 * best), default=None)
        print(f"| {name} | {spec.grid} | " + " | ".join(cells) + f" | {knee} |", flush=True)
    print(f"\ncells: FID / class accuracy. noise floor (FID of {args.n} real held-out digits): {judge.floor():.2f}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if args.plot:
        plot_curves(rows, args.plot, args.n, judge.floor())


def plot_curves(rows, path, n, floor, highlight=(DEFAULT_SAMPLER, OLD_DEFAULT[0])):
    """FID and class accuracy against NFE, one line per sampler; ``highlight`` drawn bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.6))
    names = list(dict.fromkeys(r["sampler"] for r in rows))
    cmap = plt.get_cmap("tab20")
    nfes = sorted({int(r["nfe"]) for r in rows})
    for i, name in enumerate(names):
        rs = sorted((r for r in rows if r["sampler"] == name), key=lambda r: int(r["nfe"]))
        bold = name in highlight
        kw = dict(marker="o", ms=4 if bold else 2.5, lw=2.8 if bold else 1.0, ls="-" if bold or i < 20 else "--",
                  color="black" if name == highlight[0] else ("tab:red" if bold else cmap(i % 20)),
                  alpha=1.0 if bold else 0.75, zorder=3 if bold else 2)
        ax1.plot([int(r["nfe"]) for r in rs], [float(r["fid"]) for r in rs], label=name, **kw)
        ax2.plot([int(r["nfe"]) for r in rs], [100 * float(r["class_accuracy"]) for r in rs], **kw)
    ax1.axhline(floor, color="grey", lw=1, ls=":", label=f"real held-out digits (N = {n})")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(nfes))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("NFE (each one batched conditional + unconditional forward)")
        ax.grid(alpha=0.3)
    ax1.set_yscale("log")
    ax1.yaxis.set_major_formatter(ScalarFormatter())
    ax1.set_ylabel(f"FID on MNIST-classifier features, N = {n} (lower is better)")
    ax2.set_ylabel("class accuracy (packaged MNIST classifier), %")
    ax2.set_ylim(0, 101)
    fig.legend(*ax1.get_legend_handles_labels(), loc="center right", fontsize=7.5, frameon=False)
    fig.suptitle(f"Default quickstart MNIST model (class-conditional), guidance {DEFAULT_GUIDANCE:g} at every σ; "
                 f"bold: {highlight[0]} (black, the default) and {highlight[1]} (red, the old default)")
    fig.tight_layout(rect=(0, 0, 0.83, 1))
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


def replot(csv_path, plot_path, n, floor):
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    plot_curves(rows, plot_path, n, floor)


def part_interval(pipe, args, judge):
    sampler, steps = args.sampler or DEFAULT_SAMPLER, args.steps or DEFAULT_STEPS
    sig = pipe.sigmas(steps, sampler)
    print(f"\n### Guidance interval ({sampler}, {steps} steps, w = {DEFAULT_GUIDANCE:g}, N = {args.n}, "
          f"{pipe.precision})\n\n{machine_line()}\n\nσ-grid: {', '.join(f'{float(s):.3g}' for s in sig)}\n")
    print("| guided for σ in | guided steps | FID | class accuracy | sampling s |\n|---|---|---|---|---|")
    intervals = [None] + [tuple(float(v) for v in iv.split(",")) for iv in args.intervals.split(";")]
    for iv in intervals:
        images, dt = generate(pipe, args.n, sampler, steps, interval=iv)
        r = judge(images)
        guided = sum(1 for s in sig[:-1] if iv is None or iv[0] < float(s) <= iv[1])
        label = "every σ" if iv is None else f"({iv[0]:g}, {iv[1]:g}]"
        print(f"| {label} | {guided}/{len(sig) - 1} | {r['fid']:.2f} | {r['class_accuracy']:.1%} | {dt:.1f} |",
              flush=True)
    print(f"\nnoise floor (FID of {args.n} real held-out digits): {judge.floor():.2f}")


def part_headline(pipe, args, judge):
    print(f"\n### Old default against new default, {args.n} class-conditional images, end to end "
          f"(`pipe.generate`), one process\n\n{machine_line()}\n")
    print("| setting | precision | sampling s | images/s | speed-up | FID | class accuracy |\n|---|---|---|---|---|---|---|")
    configs = [(f"{OLD_DEFAULT[0]} {OLD_DEFAULT[1]} steps, guidance at every σ", "fp32", OLD_DEFAULT[0],
                OLD_DEFAULT[1], None),
               (f"{DEFAULT_SAMPLER} {DEFAULT_STEPS} steps, guidance for σ in {DEFAULT_GUIDANCE_INTERVAL}",
                "auto", DEFAULT_SAMPLER, DEFAULT_STEPS, DEFAULT_GUIDANCE_INTERVAL)]
    base = None
    for label, precision, sampler, steps, iv in configs:
        pipe.set_precision(precision)
        images, dt = generate(pipe, args.n, sampler, steps, interval=iv)
        r = judge(images)
        base = base or dt
        print(f"| {label} | {pipe.precision} | {dt:.1f} | {args.n / dt:.1f} | {base / dt:.1f}× | {r['fid']:.2f} | "
              f"{r['class_accuracy']:.1%} |", flush=True)
    print(f"\nnoise floor (FID of {args.n} real held-out digits): {judge.floor():.2f}")


DIFFUSERS_SCHEDULERS = [  # (label, class, options): the few-step schedulers a diffusers user would reach for
    ("DDIMScheduler (default, leading)", "DDIMScheduler", {}),
    ("DDIMScheduler (trailing)", "DDIMScheduler", {"timestep_spacing": "trailing"}),
    ("DPMSolverMultistepScheduler (default)", "DPMSolverMultistepScheduler", {}),
    ("DPMSolverMultistepScheduler (Karras)", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    ("UniPCMultistepScheduler (default)", "UniPCMultistepScheduler", {}),
    ("LCMScheduler (default)", "LCMScheduler", {}),
]


@torch.no_grad()
def diffusers_generate(pipe, cls_name, options, steps, n, guidance=DEFAULT_GUIDANCE, batch_size=125):
    """diffusers' scheduler loop on our network (the same weights, bf16 autocast as ours): CFG on
    the v-prediction, images i of class i mod 10, noise from seeds 0…n-1 as ours."""
    import diffusers

    from torchdiffusion.sampling.seeds import initial_noise, seeded_generators

    den = pipe.denoiser
    ab = den.schedule.alpha_bar
    betas = torch.cat([1 - ab[:1], 1 - ab[1:] / ab[:-1]]).numpy()
    pred = {"v": "v_prediction", "eps": "epsilon", "x0": "sample"}[pipe.config.parameterization]
    scheduler = getattr(diffusers, cls_name)(num_train_timesteps=den.schedule.num_timesteps, trained_betas=betas,
                                            prediction_type=pred, **options)
    null = pipe.config.unet.num_classes
    gens = seeded_generators(0, n)
    out, nfe = [], 0
    for start in range(0, n, batch_size):
        g = gens[start:start + batch_size]
        b = len(g)
        x = initial_noise(pipe.latent_shape, g, 1.0, pipe.device) * scheduler.init_noise_sigma
        labels = torch.arange(start, start + b) % 10
        both = torch.cat([labels, torch.full_like(labels, null)])
        scheduler.set_timesteps(steps)
        nfe = 0
        for t in scheduler.timesteps:
            xin = scheduler.scale_model_input(x, t)
            tt = torch.full((2 * b,), float(t))
            with torch.autocast("cpu", dtype=den.autocast_dtype or torch.bfloat16, enabled=den.autocast_dtype is not None):
                o = den.network(torch.cat([xin, xin]), tt, class_labels=both).float()
            c, u = o.split(b)
            x = scheduler.step(u + guidance * (c - u), t, x).prev_sample
            nfe += 1
        out.append(x.clamp(-1, 1))
    return torch.cat(out), nfe


def part_diffusers(pipe, args, judge):
    nfe = args.steps or 4
    print(f"\n### Against diffusers at {nfe} NFE on the same network (w = {DEFAULT_GUIDANCE:g}, N = {args.n}, "
          f"{pipe.precision})\n\n{machine_line()}\n")
    print("| sampler | NFE | FID | class accuracy |\n|---|---|---|---|")
    for label, cls_name, options in DIFFUSERS_SCHEDULERS:
        try:
            images, used = diffusers_generate(pipe, cls_name, options, nfe, args.n)
        except Exception as exc:  # a configuration diffusers refuses
            print(f"| diffusers {label} | – | {type(exc).__name__}: {exc} | |")
            continue
        r = judge(images)
        print(f"| diffusers {label} | {used} | {r['fid']:.2f} | {r['class_accuracy']:.1%} |", flush=True)
    for name in (args.samplers.split(";") if args.samplers else [DEFAULT_SAMPLER]):
        steps = steps_for_nfe(name, nfe)
        images, _ = generate(pipe, args.n, name, steps, interval=None)  # guided at every σ, as diffusers
        r = judge(images)
        print(f"| torchdiffusion {name} | {nfe} | {r['fid']:.2f} | {r['class_accuracy']:.1%} |", flush=True)
    for folder in (args.students.split(",") if args.students else []):
        student = DiffusionPipeline.from_pretrained(folder, precision=args.precision)
        k = student.distilled_steps
        if k != nfe:
            continue
        images, _ = generate(student, args.n, None, None)
        r = judge(images)
        print(f"| torchdiffusion {k}-step distilled student | {k} | {r['fid']:.2f} | {r['class_accuracy']:.1%} |")
    print(f"\nnoise floor (FID of {args.n} real held-out digits): {judge.floor():.2f}")


def part_students(pipe, args, judge):
    print(f"\n### Distilled students against their teacher (w = {DEFAULT_GUIDANCE:g}, N = {args.n}, "
          f"{pipe.precision})\n\n{machine_line()}\n")
    print("| model | sampler | NFE | forwards per step | sampling s | images/s | FID | class accuracy |\n"
          "|---|---|---|---|---|---|---|---|")
    rows = [("teacher, guided at every σ", pipe, OLD_DEFAULT[0], OLD_DEFAULT[1], "2B", None),
            ("teacher, default guidance interval", pipe, DEFAULT_SAMPLER, DEFAULT_STEPS, "B or 2B",
             DEFAULT_GUIDANCE_INTERVAL)]
    if args.skip_old:  # its row is in the headline table (same seeds, N and judge)
        rows = rows[1:]
    for folder in args.students.split(","):
        student = DiffusionPipeline.from_pretrained(folder, precision=args.precision)
        rows.append((f"{student.distilled_steps}-step student", student, "Distilled", student.distilled_steps, "B",
                     None))
    for label, p, sampler, steps, per, iv in rows:
        images, dt = generate(p, args.n, sampler, steps, interval=iv)
        r = judge(images)
        print(f"| {label} | {sampler} | {steps} | {per} | {dt:.1f} | {args.n / dt:.1f} | {r['fid']:.2f} | "
              f"{r['class_accuracy']:.1%} |", flush=True)
    print(f"\nnoise floor (FID of {args.n} real held-out digits): {judge.floor():.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="runs/mnist")
    ap.add_argument("--part", choices=("precision", "curves", "interval", "headline", "diffusers", "students"))
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=125)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--sampler", default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--samplers", default=None, help="';'-separated registry names (default: every familiar name)")
    ap.add_argument("--nfe", default="1,2,3,4,5,6,8,10,15,20,30,50")
    ap.add_argument("--intervals", default="0.3,inf;0,5;0.3,5;0.5,3;1,inf")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--students", default=None, help="','-separated distilled model folders")
    ap.add_argument("--skip-old", action="store_true", help="students: leave out the teacher at the old default")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--replot", default=None, metavar="CSV",
                    help="only redraw --plot from a CSV of --part curves (with --n and --floor)")
    ap.add_argument("--floor", type=float, default=None, help="the printed noise floor, for --replot")
    args = ap.parse_args()
    if args.replot:
        return replot(args.replot, args.plot, args.n, args.floor)
    if args.part is None:
        ap.error("--part is required (or --replot CSV)")
    pipe = DiffusionPipeline.from_pretrained(args.model, precision=args.precision)
    judge = Judge(args.n)
    {"precision": part_precision, "curves": part_curves, "interval": part_interval,
     "headline": part_headline, "diffusers": part_diffusers, "students": part_students}[args.part](pipe, args, judge)


if __name__ == "__main__":
    main()

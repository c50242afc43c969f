"""Sampler benchmark: our samplers against diffusers' schedulers on an exactly solvable problem.

    python benchmarks/samplers.py                 # full run (linear VP schedule), < 5 min on 2 cores
    python benchmarks/samplers.py --quick         # smaller sample and sweep, for a smoke test
    python benchmarks/samplers.py --schedule cosine --json out.json
    python benchmarks/samplers.py --seed 2 --components 16 --dim 32   # another mixture (held-out check)

The problem. Data: a mixture of 8 Gaussians with diagonal covariances in 64 dimensions
(``GaussianMixture.random``: means ~ N(0, 0.5²), per-dimension stds log-uniform in
[0.05, 0.5], Dirichlet weights). Every noisy marginal is again such a mixture, so the ideal
denoiser D(x, σ) is closed form (torchdiffusion.exact). It is wrapped as the ε-prediction
network of a 1000-step VP schedule — the network sees (x_t, t) exactly as a U-Net does —
and drives both our samplers (through ``Denoiser``) and diffusers' standard loop
(``set_timesteps`` / ``scale_model_input`` / ``step``, with the exact ε in place of the U-Net).

Every sample starts from the same noise z (x_T = z at t = T-1, i.e. x = z·sqrt(1+σ_max²) in
the σ-view, diffusers' ``init_noise_sigma`` convention). The reference is the probability-flow
ODE solution from that same z, integrated with 1000 RK4 steps in log σ (float64); its
distance to a 500-step solution (which bounds its own error, ~16× smaller) is printed.

Metrics per sampler and NFE (network evaluations):
  med err / rms err  per-sample RMS (over the 64 dims) distance to the reference solution:
                     median and root-mean-square over samples. Only meaningful for
                     deterministic samplers (stochastic ones follow another path by design).
  wrong %            samples whose most likely mixture component differs from the reference's.
  SW                 sliced 2-Wasserstein distance to exact data samples (same projections for
                     every row); "floor" rows give its noise floor (two exact sample sets) and
                     the reference solution's own distance.

diffusers: every scheduler that can drive a discrete VP ε-model (and the EDM ones through
their preconditioning), with a sweep over its grid options (timestep spacings, Karras,
exponential, beta and λ σ-grids, final σ type), solver order, solver type and lower-order-final.
The sweep is screened on the first ``--screen`` samples; the best configuration of each
scheduler at each NFE (by median error; all deterministic) is then run on all samples. For a
multistep scheduler NFE = steps; for Heun/KDPM2 NFE = 2·steps - 1; PNDM's PRK warm-up costs
extra: every scheduler gets the largest step count whose NFE is ≤ the budget (counted).

Output: one table; "ratio" columns are ours / best diffusers at the same NFE (median error and
SW, deterministic samplers). Requires the ``bench`` extra (diffusers, scipy).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass

import torch

from torchdiffusion.diffusion.exact import GaussianMixture, sliced_wasserstein, solve_ode
from torchdiffusion.diffusion.parameterization import Denoiser
from torchdiffusion.denoiser.wrappers import CountingDenoiser
from torchdiffusion.sampling.registry import resolve_sampler
from torchdiffusion.diffusion.schedules import ScheduleConfig

NFES = (5, 10, 20, 50)
SW_PROJECTIONS = 512

# Ours in the table: (label, registry name, grid override or None, sampler kwargs).
OURS = [
    ("ABM (clustered angle grid)", "ABM", None, {}),
    ("ABM (uniform angle grid)", "ABM", "angle", {}),
    ("DDIM", "DDIM", None, {}),
    ("Euler Karras", "Euler Karras", None, {}),
    ("Heun Karras (EDM)", "Heun Karras", None, {}),
    ("LMS Karras", "LMS Karras", None, {}),
    ("PLMS", "PLMS", "karras", {}),
    ("DPM++ 2M Karras", "DPM++ 2M Karras", None, {}),
    ("DPM++ 2M logSNR", "DPM++ 2M logSNR", None, {}),
    ("DPM++ 3M Karras", "DPM++ 3M Karras", None, {}),
    ("UniPC logSNR", "UniPC", "logsnr", {}),
    # stochastic
    ("DDPM", "DDPM", None, {}),
    ("Euler a", "Euler a", None, {}),
    ("DPM++ 2M SDE Karras", "DPM++ 2M SDE Karras", None, {}),
    ("DPM++ 3M SDE Karras", "DPM++ 3M SDE Karras", None, {}),
]


# --------------------------------------------------------------------------------------
# the problem
# --------------------------------------------------------------------------------------


@dataclass
class Problem:
    schedule: object
    data: GaussianMixture
    network: object  # ExactNetwork: ε(x_t, t)
    denoiser: Denoiser
    z: torch.Tensor  # (N, d) starting noise, VP units at t = T-1
    x_start: torch.Tensor  # σ-view start, float32
    reference: torch.Tensor  # (N, d) float64
    reference_labels: torch.Tensor
    exact: torch.Tensor  # exact data samples, (N, d)
    exact_other: torch.Tensor  # a second exact set, for the SW noise floor
    reference_error: tuple[float, float]  # median and max per-sample distance to a half-step solution

    @property
    def sigma_max(self) -> float:
        return self.schedule.sigma_max


def make_problem(schedule_name: str = "linear", n: int = 2048, seed: int = 0, ode_steps: int = 1000,
                 components: int = 8, dim: int = 64) -> Problem:
    schedule = ScheduleConfig(schedule_name, 1000).build()
    data = GaussianMixture.random(components, dim, seed=seed).with_range(schedule.sigma_min, schedule.sigma_max)
    network = data.as_network(schedule, "eps")
    denoiser = Denoiser(network, schedule, "eps")
    g = torch.Generator().manual_seed(seed + 1)
    z = torch.randn(n, data.dim, generator=g)
    x_start = (z.double() * math.sqrt(1 + schedule.sigma_max**2)).float()
    reference = solve_ode(data, x_start.double(), schedule.sigma_max, 0.0, steps=ode_steps)
    coarse = solve_ode(data, x_start.double(), schedule.sigma_max, 0.0, steps=ode_steps // 2)
    diff = _per_sample_rms(coarse, reference)
    reference_error = (float(diff.median()), float(diff.max()))
    exact = data.sample(n, torch.Generator().manual_seed(seed + 2))
    exact_other = data.sample(n, torch.Generator().manual_seed(seed + 3))
    return Problem(schedule, data, network, denoiser, z, x_start, reference, data.classify(reference), exact,
                   exact_other, reference_error)


def _per_sample_rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() - b.double()).pow(2).mean(dim=1).sqrt()


def metrics(problem: Problem, out: torch.Tensor, rows=slice(None)) -> dict:
    out = out.double()
    if not bool(torch.isfinite(out).all()):
        return {"median": math.nan, "rms": math.nan, "wrong": math.nan, "sw": math.nan}
    err = _per_sample_rms(out, problem.reference[rows])
    wrong = (problem.data.classify(out) != problem.reference_labels[rows]).double().mean()
    m = {"median": float(err.median()), "rms": float(err.pow(2).mean().sqrt()), "wrong": 100 * float(wrong)}
    if isinstance(rows, slice) and rows == slice(None):
        m["sw"] = sliced_wasserstein(out, problem.exact, SW_PROJECTIONS, torch.Generator().manual_seed(7))
    return m


# --------------------------------------------------------------------------------------
# our samplers
# --------------------------------------------------------------------------------------


def run_ours(problem: Problem, name: str, grid: str | None, kwargs: dict, nfe: int, rows=slice(None)):
    spec = resolve_sampler(name)
    steps = (nfe + 1) // 2 if spec.nfe(2) == 3 else nfe  # Heun: 2·steps - 1 evaluations
    if grid is not None:
        spec = dataclasses.replace(spec, grid=grid)
    sigmas = spec.sigmas(problem.denoiser, steps)
    counter = CountingDenoiser(problem.denoiser)
    x = problem.x_start[rows].clone()
    gens = [torch.Generator().manual_seed(1000 + i) for i in range(x.shape[0])]
    out = spec(counter, x, sigmas, generator=gens, **kwargs)
    return out, counter.nfe


# --------------------------------------------------------------------------------------
# diffusers
# --------------------------------------------------------------------------------------


def _grid_options(spacings=True, sigma_grids=("karras", "exponential", "beta"), lambdas=False, fixed_spacing=True):
    """Grid options of a diffusers scheduler: each timestep spacing, then each σ-grid (the
    σ-grids are built from the spaced σ in some schedulers, so they are crossed with the
    spacings unless ``fixed_spacing``)."""
    out = []
    spacing_values = ("leading", "trailing", "linspace") if spacings else (None,)
    for sp in spacing_values:
        out.append({} if sp is None else {"timestep_spacing": sp})
    for g in sigma_grids:
        for sp in (("linspace",) if fixed_spacing or not spacings else spacing_values):
            opt = {f"use_{g}_sigmas": True}
            if sp is not None and spacings:
                opt["timestep_spacing"] = sp
            out.append(opt)
    if lambdas:
        out.append({"use_lu_lambdas": True})
    return out


def _product(base: dict, *axes) -> list[dict]:
    configs = [dict(base)]
    for axis in axes:
        configs = [{**c, **a} for c in configs for a in axis]
    return configs


def diffusers_configs(quick: bool = False) -> list[tuple[str, str, dict]]:
    """(family label, scheduler class, options): the deterministic sweep."""
    per_sigma_spacing = not quick
    orders23 = [{"solver_order": 2}, {"solver_order": 3}]
    lof = [{"lower_order_final": True}, {"lower_order_final": False}]
    final = [{"final_sigmas_type": "zero"}, {"final_sigmas_type": "sigma_min"}]
    rows = []
    rows += [("DDIM", "DDIMScheduler", c) for c in _grid_options(sigma_grids=())]
    rows += [("PNDM", "PNDMScheduler", c) for c in _product({}, _grid_options(sigma_grids=()),
                                                            [{"skip_prk_steps": True}, {"skip_prk_steps": False}])]
    for family, cls in (("LMS", "LMSDiscreteScheduler"), ("Euler", "EulerDiscreteScheduler"),
                        ("Heun", "HeunDiscreteScheduler"), ("KDPM2", "KDPM2DiscreteScheduler")):
        rows += [(family, cls, c) for c in _grid_options(fixed_spacing=not per_sigma_spacing)]
    rows += [("DPM-Solver++ multistep", "DPMSolverMultistepScheduler", c) for c in _product(
        {"algorithm_type": "dpmsolver++"}, orders23, [{"solver_type": "midpoint"}, {"solver_type": "heun"}],
        _grid_options(lambdas=True), lof, final)]
    rows += [("DPM-Solver multistep (ε)", "DPMSolverMultistepScheduler", c) for c in _product(
        {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}, orders23, _grid_options(lambdas=True))]
    rows += [("DPM-Solver++ singlestep", "DPMSolverSinglestepScheduler", c) for c in _product(
        {"algorithm_type": "dpmsolver++"}, orders23, [{"solver_type": "midpoint"}, {"solver_type": "heun"}],
        _grid_options(spacings=False), lof, final)]
    rows += [("DEIS", "DEISMultistepScheduler", c) for c in _product({}, orders23, _grid_options(), lof)]
    rows += [("UniPC", "UniPCMultistepScheduler", c) for c in _product(
        {}, orders23, [{"solver_type": "bh1"}, {"solver_type": "bh2"}], _grid_options(), lof, final)]
    rows += [("UniPC (ε)", "UniPCMultistepScheduler", c) for c in _product(
        {"predict_x0": False, "final_sigmas_type": "sigma_min"}, orders23, _grid_options())]
    rows += [("SA-Solver (τ=0)", "SASolverScheduler", c) for c in _product(
        {"tau_func": _zero_tau}, [{"predictor_order": 2, "corrector_order": 2}, {"predictor_order": 3,
                                                                                 "corrector_order": 3}],
        _grid_options())]
    rows += [("EDM Euler", "EDMEulerScheduler", {"sigma_schedule": s}) for s in ("karras", "exponential")]
    rows += [("EDM DPM-Solver++", "EDMDPMSolverMultistepScheduler", c) for c in _product(
        {}, orders23, [{"solver_type": "midpoint"}, {"solver_type": "heun"}],
        [{"sigma_schedule": "karras"}, {"sigma_schedule": "exponential"}], lof, final)]
    if quick:
        rows = [r for r in rows if r[2].get("lower_order_final", True) and r[2].get("solver_type") != "bh1"]
    return rows


def _zero_tau(t):
    return 0.0


# diffusers schedulers whose noise is part of the method (table rows, default options, no sweep)
DIFFUSERS_STOCHASTIC = [
    ("diffusers DDPM", "DDPMScheduler", {"timestep_spacing": "trailing"}),
    ("diffusers Euler a", "EulerAncestralDiscreteScheduler", {}),
    ("diffusers DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler",
     {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
    ("diffusers DPM++ 3M SDE Karras", "DPMSolverMultistepScheduler",
     {"algorithm_type": "sde-dpmsolver++", "solver_order": 3, "use_karras_sigmas": True}),
]


def _make_scheduler(problem: Problem, cls_name: str, options: dict):
    import diffusers

    cls = getattr(diffusers, cls_name)
    if cls_name.startswith("EDM"):
        return cls(sigma_min=problem.schedule.sigma_min, sigma_max=problem.schedule.sigma_max,
                   prediction_type="epsilon", **options)
    ab = problem.schedule.alpha_bar
    betas = torch.cat([1 - ab[:1], 1 - ab[1:] / ab[:-1]]).numpy()
    return cls(num_train_timesteps=problem.schedule.num_timesteps, trained_betas=betas, prediction_type="epsilon",
               **options)


class _EDMAdapter:
    """The exact model in the form an EDM scheduler expects: input c_in·x, timestep
    c_noise = log(σ)/4, output F with precondition_outputs(x, F, σ) = D(x, σ)."""

    def __init__(self, problem: Problem, scheduler):
        self.problem, self.scheduler, self.nfe = problem, scheduler, 0

    def __call__(self, scaled: torch.Tensor, c_noise) -> torch.Tensor:
        self.nfe += 1
        sigma = float(torch.exp(4 * torch.as_tensor(c_noise, dtype=torch.float64)).reshape(-1)[0])
        sd = self.scheduler.config.sigma_data
        x = scaled.double() * math.sqrt(sigma**2 + sd**2)
        d = self.problem.data.denoise(x, sigma)
        s = torch.tensor(sigma, dtype=torch.float64)
        p0 = self.scheduler.precondition_outputs(x, torch.zeros_like(x), s)
        p1 = self.scheduler.precondition_outputs(x, torch.ones_like(x), s)
        return ((d - p0) / (p1 - p0)).float()


class _VPModel:
    def __init__(self, problem: Problem):
        self.problem, self.nfe = problem, 0

    def __call__(self, x_t: torch.Tensor, t) -> torch.Tensor:
        self.nfe += 1
        return self.problem.network(x_t, torch.as_tensor(t, dtype=torch.float64))


def run_diffusers(problem: Problem, cls_name: str, options: dict, steps: int, rows=slice(None), seed: int = 0):
    scheduler = _make_scheduler(problem, cls_name, options)
    scheduler.set_timesteps(steps)
    model = _EDMAdapter(problem, scheduler) if cls_name.startswith("EDM") else _VPModel(problem)
    x = problem.z[rows].clone() * scheduler.init_noise_sigma
    g = torch.Generator().manual_seed(seed)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(x, t)
        out = model(model_input, t)
        step_kwargs = {"generator": g} if "generator" in scheduler.step.__code__.co_varnames else {}
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    return x, model.nfe


_TWO_EVALS_PER_STEP = ("HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler")


def run_at_nfe(problem: Problem, cls_name: str, options: dict, nfe: int, rows=slice(None), seed: int = 0):
    """Run with the largest step count whose counted NFE is ≤ ``nfe``: start from the usual
    relation (2·steps - 1 evaluations for Heun-type schedulers, else one per step) and step
    down while the count exceeds the budget or diffusers rejects the configuration.
    Returns (output, nfe used, steps) or None."""
    steps = (nfe + 1) // 2 if cls_name in _TWO_EVALS_PER_STEP else nfe
    failures = 0
    while steps >= 1 and failures < 3:
        try:
            out, used = run_diffusers(problem, cls_name, options, steps, rows=rows, seed=seed)
        except Exception:  # noqa: BLE001 - configurations diffusers rejects (or crashes on) at this step count
            steps, failures = steps - 1, failures + 1
            continue
        if used <= nfe:
            return out, used, steps
        steps -= max(1, (used - nfe) // 2)
    return None


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def _fmt(v: float, width: int = 9, spec: str = ".2e") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return f"{'nan':>{width}}"
    return f"{v:>{width}{spec}}"


def _describe(options: dict) -> str:
    parts = []
    for k, v in options.items():
        if k == "tau_func":
            continue
        parts.append(f"{k.replace('timestep_spacing', 'spacing').replace('use_', '').replace('_sigmas', '')}="
                     f"{v}" if v is not True else k.replace("use_", "").replace("_sigmas", ""))
    return ",".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2048, help="samples")
    p.add_argument("--screen", type=int, default=256, help="samples for screening the diffusers sweep")
    p.add_argument("--schedule", default="linear", choices=["linear", "cosine"])
    p.add_argument("--quick", action="store_true", help="small sample and sweep (smoke test)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mixture and of the noise (another problem)")
    p.add_argument("--components", type=int, default=8, help="mixture components")
    p.add_argument("--dim", type=int, default=64, help="data dimension")
    p.add_argument("--no-diffusers", action="store_true", help="only our samplers")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for these small tensors)")
    p.add_argument("--json", help="write all results here")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.screen = min(args.n, 512), min(args.screen, 128)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    try:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()
    except ImportError:
        pass
    t0 = time.time()
    problem = make_problem(args.schedule, args.n, seed=args.seed, components=args.components, dim=args.dim)
    floor = sliced_wasserstein(problem.exact_other, problem.exact, SW_PROJECTIONS, torch.Generator().manual_seed(7))
    ref_sw = sliced_wasserstein(problem.reference, problem.exact, SW_PROJECTIONS, torch.Generator().manual_seed(7))
    print(f"# {args.schedule} VP schedule (σ ∈ [{problem.schedule.sigma_min:.4g}, {problem.sigma_max:.4g}]), "
          f"{args.components}-component Gaussian mixture in {args.dim}-D (seed {args.seed}), {args.n} samples; "
          f"reference ODE: RK4 with 1000 steps, its "
          f"distance to a 500-step solution is {problem.reference_error[0]:.1e} median, "
          f"{problem.reference_error[1]:.1e} max; setup {time.time() - t0:.0f} s", flush=True)

    results = []  # dicts: nfe, who, label, det, metrics, config
    for nfe in NFES:
        for label, name, grid, kwargs in OURS:
            out, used = run_ours(problem, name, grid, kwargs, nfe)
            results.append({"nfe": nfe, "who": "ours", "label": label, "used": used,
                            "det": not resolve_sampler(name).stochastic, **metrics(problem, out)})
    print(f"# ours done at {time.time() - t0:.0f} s", flush=True)

    if not args.no_diffusers:
        try:
            import diffusers  # noqa: F401
        except ImportError:
            print("diffusers is not installed (pip install 'torchdiffusion[bench]'); use --no-diffusers", file=sys.stderr)
            return 2
        configs = diffusers_configs(args.quick)
        screen = slice(0, args.screen)
        best: dict[tuple[int, str], tuple[float, str, dict, int]] = {}
        for family, cls_name, options in configs:
            for nfe in NFES:
                result = run_at_nfe(problem, cls_name, options, nfe, rows=screen)
                if result is None:
                    continue
                out, used, steps = result
                med = metrics(problem, out, screen)["median"]
                if not math.isnan(med) and med < best.get((nfe, family), (math.inf,))[0]:
                    best[(nfe, family)] = (med, cls_name, options, steps)
        print(f"# diffusers sweep: {len(configs)} configurations × {len(NFES)} NFE screened on {args.screen} "
              f"samples, {time.time() - t0:.0f} s", flush=True)
        for (nfe, family), (_, cls_name, options, steps) in sorted(best.items()):
            out, used = run_diffusers(problem, cls_name, options, steps)
            results.append({"nfe": nfe, "who": "diffusers", "label": f"diffusers {family}", "used": used, "det": True,
                            "config": f"{cls_name}({_describe(options)}) steps={steps}", **metrics(problem, out)})
        for label, cls_name, options in DIFFUSERS_STOCHASTIC:
            for nfe in NFES:
                result = run_at_nfe(problem, cls_name, options, nfe, seed=nfe)
                if result is None:  # e.g. Karras σ on a cosine schedule: diffusers crashes at every step count
                    results.append({"nfe": nfe, "who": "diffusers", "label": label, "used": nfe, "det": False,
                                    "config": f"{cls_name}({_describe(options)}) failed (diffusers raised)",
                                    "median": math.nan, "rms": math.nan, "wrong": math.nan, "sw": math.nan})
                    continue
                out, used, steps = result
                results.append({"nfe": nfe, "who": "diffusers", "label": label, "used": used, "det": False,
                                "config": f"{cls_name}({_describe(options)}) steps={steps}", **metrics(problem, out)})

    print_table(results, floor, ref_sw)
    print(f"# total {time.time() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"floor": floor, "reference_sw": ref_sw, "reference_error": problem.reference_error,
                       "results": results}, f, indent=1)
    return 0


def print_table(results: list[dict], floor: float, ref_sw: float) -> None:
    header = (f"| {'NFE':>3} | {'sampler':<44} | {'med err':>9} | {'rms err':>9} | {'wrong %':>7} | {'SW':>9} | "
              f"{'med ratio':>9} | {'SW ratio':>8} | {'SW/min':>6} |")
    print()
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for nfe in NFES:
        rows = [r for r in results if r["nfe"] == nfe]
        theirs = [r for r in rows if r["who"] == "diffusers" and r["det"] and not math.isnan(r["median"])]
        best = min(theirs, key=lambda r: r["median"], default=None)
        best_med = best["median"] if best else math.nan
        best_med_sw = best["sw"] if best else math.nan
        best_sw = min((r["sw"] for r in theirs), default=math.nan)
        for r in sorted(rows, key=lambda r: (r["who"] != "ours", not r["det"], r["label"])):
            ratio = r["median"] / best_med if r["det"] and r["who"] == "ours" else math.nan
            sw_ratio = r["sw"] / best_med_sw if r["who"] == "ours" else math.nan
            sw_min = r["sw"] / best_sw if r["who"] == "ours" else math.nan
            label = r["label"] + ("" if r["det"] else " *") + (" ◀ best" if r is best else "")
            print(f"| {nfe:>3} | {label:<44} | {_fmt(r['median'])} | {_fmt(r['rms'])} | {_fmt(r['wrong'], 7, '.2f')} "
                  f"| {_fmt(r['sw'])} | {_fmt(ratio, 9, '.3f')} | {_fmt(sw_ratio, 8, '.3f')} | {_fmt(sw_min, 6, '.3f')} |")
    print(f"\n* stochastic (per-sample error to the ODE path not meaningful). ◀ best: the diffusers configuration "
          f"with the lowest median error at that NFE. med ratio: ours / that median. SW ratio: ours / that "
          f"scheduler's SW; SW/min: ours / the lowest SW of any deterministic diffusers configuration. SW between "
          f"two exact sample sets: {floor:.2e}; reference ODE solution vs exact samples: {ref_sw:.2e}.")
    configs = sorted({(r["label"], r["nfe"], r["config"]) for r in results if "config" in r})
    print("\nbest diffusers configuration per scheduler and NFE:")
    for label, nfe, config in configs:
        print(f"  {label} @ {nfe}: {config}")


if __name__ == "__main__":
    sys.exit(main())

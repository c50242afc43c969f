"""Distillation of a guided teacher into a few-step student (``torchdiffusion distill``).

Two known methods, in one pass per round:

* **Guidance distillation** (Meng et al. 2023, "On Distillation of Guided Diffusion Models", §3.1):
  the student takes the guidance scale w as an input (``UNetConfig.guidance_embed``: sinusoidal
  features of w → an MLP added to the time embedding, its last layer zero so the student starts as
  the teacher's conditional model) and learns the teacher's classifier-free-guided prediction
  x̃₀ = x̂₀_u + w (x̂₀_c − x̂₀_u) for w ~ U[lo, hi]: one forward of batch B replaces the CFG pair.
* **Progressive distillation** (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling
  of Diffusion Models", Alg. 2): the student's one DDIM step σ_i → σ_{i+1} on its K-step grid
  must land where the teacher's finer steps land. In the σ-view one DDIM step is
  x' = x̂₀ + (σ'/σ)(x − x̂₀), so the student's target is

      x̂₀* = (x'_teacher − r x)/(1 − r),   r = σ_{i+1}/σ_i,

  with x = x₀ + σ_i ε a noised training image, and the loss ‖x̂₀_student − x̂₀*‖² weighted by
  max(SNR, 1) = max(1/σ_i², 1) ("truncated SNR", their eq. 9).

Rounds: round 0 distils the original (CFG) teacher into a K₀-step student (K₀ = max(K, 4)); the
teacher's target is M = ``substeps`` DPM-Solver++(2M) steps (Lu et al. 2022b) on the K₀·M-step
trailing grid between the student's two σ — a stronger teacher solver than PD's 2 DDIM steps, so
one round replaces log₂ M halvings. Each later round halves K with the previous student as the
teacher (2 DDIM steps of it per student step), until K. The trailing grids nest
(trailing(2K)[::2] = trailing(K)), so every student samples with DDIM on ``trailing(K)``: the
registered sampler "Distilled".

Each round is an ordinary training run in ``OUT/round-K/`` (the :class:`Trainer`'s checkpoints,
resume, log.csv, grids, evaluation, signals and lock), and the final student is ``OUT/model``:
a normal model folder whose config records its teacher, steps and guidance range.
"""
from __future__ import annotations

import logging
import math
import shutil
from dataclasses import replace
from pathlib import Path

from torchdiffusion.denoiser.model import ModelConfig
from torchdiffusion.errors import ConfigError
from torchdiffusion.io.checkpoint import atomic_write_text
from torchdiffusion.io.runs import RunLock, find_model_folder
from torchdiffusion.pipeline.folders import load_components
from torchdiffusion.training.config import TrainConfig
from torchdiffusion.training.distill_trainer import DistillTrainer, check_teacher  # noqa: F401  (re-exported)

log = logging.getLogger("torchdiffusion")

GUIDANCE_RANGE = (1.0, 4.0)  # the guidance scales a student learns (DEFAULT_GUIDANCE = 2 inside)
ROUND0_STEPS = 4  # the first student's steps (or the requested K if larger)
ROUND0_SUBSTEPS = 2  # DPM++ 2M teacher steps per student step in round 0 (a 4-step student: 8 teacher steps)
DISTILL_STEPS = (1, 2, 4, 8, 16)


def rounds_for(steps: int) -> list[int]:
    """The student step counts of the rounds that end at ``steps``: [4, 2, 1] for 1."""
    if steps not in DISTILL_STEPS:
        raise ConfigError(f"--steps must be one of {', '.join(map(str, DISTILL_STEPS))} (a power of two: each "
                          f"round halves the steps), got {steps}")
    ks = [max(steps, ROUND0_STEPS)]
    while ks[-1] > steps:
        ks.append(ks[-1] // 2)
    return ks


def student_config(teacher_cfg: ModelConfig, teacher_folder: Path, k: int, substeps: int, round_index: int,
                   origin: str) -> ModelConfig:
    unet = replace(teacher_cfg.unet, guidance_embed=True)
    lo, hi = GUIDANCE_RANGE if teacher_cfg.conditioning == "class" else (1.0, 1.0)
    if teacher_cfg.distilled is not None:
        lo, hi = teacher_cfg.distilled["guidance_range"]
    return replace(teacher_cfg, unet=unet, distilled={
        "teacher": str(teacher_folder), "steps": k, "substeps": substeps, "round": round_index,
        "guidance_range": [float(lo), float(hi)], "original_teacher": origin,
        "method": "guidance + progressive distillation (Meng et al. 2023; Salimans & Ho 2022)"})


def distill(teacher: str | Path, out: str | Path, steps: int = 4, minutes: float | None = None,
            resume: bool = False, train_options: dict | None = None, dataset=None) -> Path:
    """Distil the model at ``teacher`` into a ``steps``-step student in ``out`` (see the module
    docstring); returns ``out/model``. ``minutes`` is the whole budget (training time of all
    rounds; half to round 0, the rest shared by the halvings); ``train_options`` are further
    :class:`TrainConfig` fields (batch_size, lr, precision, progress, …). ``resume`` continues
    a killed distillation: finished rounds are kept, the current one resumes from its checkpoint."""
    from torchdiffusion.training.config import DEFAULT_MINUTES

    teacher = Path(teacher)
    out = Path(out)
    folder, _ = find_model_folder(teacher)
    _, tcfg, vae = load_components(folder)
    check_teacher(tcfg, teacher, vae)
    if tcfg.distilled is not None:
        raise ConfigError(f"{teacher} is already a distilled student ({tcfg.distilled['steps']} steps); distil its "
                          f"teacher {tcfg.distilled.get('original_teacher')} instead")
    ks = rounds_for(steps)
    total = DEFAULT_MINUTES if minutes is None else float(minutes)
    if not total > 0 or not math.isfinite(total):
        raise ConfigError(f"--minutes must be > 0, got {minutes}")
    budgets = [total] if len(ks) == 1 else [total / 2] + [total / 2 / (len(ks) - 1)] * (len(ks) - 1)
    options = {"lr": 2e-4, "warmup_steps": 20, "sample_every": 250, "eval_every": 0, "sampler": "Distilled",
               **(train_options or {})}
    out.mkdir(parents=True, exist_ok=True)
    if not resume and any((out / f"round-{k}").exists() for k in ks):
        raise ConfigError(f"{out} already holds a distillation; pass --resume to continue it or choose another --out")
    with RunLock(out):
        return _run_rounds(folder, tcfg, out, ks, budgets, options, resume, dataset, steps)


def _run_rounds(folder, tcfg, out, ks, budgets, options, resume, dataset, steps) -> Path:
    from torchdiffusion.training.run import prepare_run

    previous = folder
    for r, (k, budget) in enumerate(zip(ks, budgets)):
        run_dir = out / f"round-{k}"
        done = run_dir / "model" / "config.json"
        if done.is_file() and resume:
            log.info("distill: round %d (%d steps) already done: %s", r, k, run_dir / "model")
            previous = run_dir / "model"
            continue
        substeps = ROUND0_SUBSTEPS if r == 0 else 2  # later rounds: PD's 2 DDIM steps of the previous student
        cfg = student_config(tcfg if r == 0 else load_components(previous)[1], previous, k, substeps, r,
                             str(folder))
        train = TrainConfig(out=str(run_dir), minutes=budget, sample_steps=k, final_steps=k, **options)
        trainer = prepare_run(cfg, train, resume=resume, dataset=dataset)
        log.info("distill: round %d: %d-step student from %s (%.1f min)", r, k, previous, budget)
        previous = trainer.train()
    final = out / "model"
    tmp = out / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(previous, tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    atomic_write_text(out / "DISTILLED.txt", f"{steps}-step student of {folder}: {final}\n")
    return final

"""The training loop of one distillation round (``torchdiffusion distill``; the method is in
:mod:`torchdiffusion.training.distill`): a :class:`Trainer` whose loss is the student's distance
to its teacher's few-step result, so checkpoints, resume, logs, grids and signals are the trainer's."""
from __future__ import annotations

from pathlib import Path

import torch

from torchdiffusion.denoiser.model import ModelConfig
from torchdiffusion.diffusion.parameterization import Denoiser, append_dims
from torchdiffusion.errors import CheckpointError, ConfigError
from torchdiffusion.pipeline.folders import load_components
from torchdiffusion.sampling.grids import grid_sigmas
from torchdiffusion.training.config import TrainConfig
from torchdiffusion.training.diffusion import Trainer


def check_teacher(config: ModelConfig, folder, vae=None) -> None:
    """Only a pixel-space (``vae`` None), class-conditional or unconditional diffusion model can be
    distilled here."""
    if vae is not None:
        raise ConfigError(f"{folder}: distilling latent-space models is not supported yet")
    if config.image_condition:
        raise ConfigError(f"{folder}: an {config.image_condition.get('kind')} task model cannot be distilled "
                          "(distill a generation model)")
    if config.conditioning == "text":
        raise ConfigError(f"{folder}: distilling text-conditional models is not supported yet "
                          "(class-conditional and unconditional pixel models are)")


class DistillTrainer(Trainer):
    """A :class:`Trainer` whose loss is the distillation loss of this module's docstring."""

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig, dataset=None, dist_info=None):
        d = model_config.distilled
        if d is None or "teacher" not in d:
            raise ConfigError("a distillation run needs model_config.distilled with its teacher folder")
        super().__init__(model_config, train_config, dataset, dist_info)
        try:
            teacher, tcfg, vae = load_components(Path(d["teacher"]), device=str(self.device))
        except (CheckpointError, ConfigError) as exc:
            raise ConfigError(f"the teacher of this distillation run cannot be loaded: {exc}") from None
        check_teacher(tcfg, d["teacher"], vae)
        self.teacher = teacher.eval().requires_grad_(False)
        self.teacher.set_precision(self.autocast_dtype)
        self.teacher_is_student = tcfg.distilled is not None
        self.teacher_config = tcfg
        self.k = int(d["steps"])
        self.substeps = int(d.get("substeps", 2))
        self.lo, self.hi = (float(v) for v in d["guidance_range"])
        fine = grid_sigmas(self.denoiser.schedule, "trailing", self.k * self.substeps).to(torch.float32)
        self.fine_sigmas = fine.to(self.device)
        if self.step == 0:  # a new run starts from the teacher's weights (the guidance MLP starts at zero)
            missing, unexpected = self.network.load_state_dict(self.teacher.network.state_dict(), strict=False)
            if unexpected or any(not m.startswith("guidance_mlp.") for m in missing):
                raise ConfigError(f"the teacher's network does not match the student's: missing {missing}, "
                                  f"unexpected {unexpected}")
            self.ema.model.load_state_dict(self.network.state_dict())

    # --- the teacher's target --------------------------------------------------------------
    def _teacher_x0(self, x, sigma, cond, w):
        """The teacher's guided x̂₀ at per-sample σ and w: one CFG forward of 2B (round 0), or the
        previous student's one forward with w as its input."""
        if self.teacher_is_student:
            return self.teacher(x, sigma, **cond, guidance=w)
        labels = cond.get("class_labels")
        if labels is None:  # an unconditional teacher: nothing to guide
            return self.teacher(x, sigma)
        null = torch.full_like(labels, self.teacher_config.unet.num_classes)
        both = self.teacher(torch.cat([x, x]), torch.cat([sigma, sigma]), class_labels=torch.cat([labels, null]))
        d_c, d_u = both.split(x.shape[0])
        return d_u + append_dims(w, x.ndim) * (d_c - d_u)

    @torch.no_grad()
    def teacher_step(self, x, i, cond, w):
        """x at σ_i of the student grid (per-sample index ``i``) → the teacher's x at σ_{i+1}:
        ``substeps`` steps of DPM-Solver++(2M) (round 0) or DDIM (later rounds) on the fine grid."""
        m = self.substeps
        d_prev = h_prev = None
        for j in range(m):
            s_a, s_b = self.fine_sigmas[i * m + j], self.fine_sigmas[i * m + j + 1]
            d = self._teacher_x0(x, s_a, cond, w).float()
            ratio = append_dims(s_b / s_a, x.ndim)
            h = torch.log(s_a / s_b.clamp(min=1e-30))
            d_used = d
            if j > 0 and not self.teacher_is_student:  # 2M: a second-order combination of the last two x̂₀
                r = append_dims(h_prev / h, x.ndim)
                second = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * d_prev
                d_used = torch.where(append_dims(s_b > 0, x.ndim), second, d)
            x = ratio * x + (1 - ratio) * d_used  # = x̂₀ where σ_b = 0
            d_prev, h_prev = d, h
        return x

    def compute_loss(self, net, x0, t, noise, cond):
        b = x0.shape[0]
        num_t = self.denoiser.schedule.num_timesteps
        i = (t.to(self.device).long() * self.k // num_t).clamp(max=self.k - 1)  # uniform over the student's steps
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)  # the same draw on resume
        w = (self.lo + (self.hi - self.lo) * torch.rand(b, generator=g)).to(self.device)
        s_i, s_n = self.fine_sigmas[i * self.substeps], self.fine_sigmas[(i + 1) * self.substeps]
        x = x0 + append_dims(s_i, x0.ndim) * noise.to(x0.device, x0.dtype)
        x_next = self.teacher_step(x, i, cond, w)
        r = append_dims(s_n / s_i, x0.ndim)
        target = (x_next - r * x) / (1 - r)
        student = Denoiser(net, self.denoiser.schedule, self.model_config.parameterization)
        pred = student(x, s_i, **cond, guidance=w).float()
        weight = torch.clamp(1.0 / s_i.float() ** 2, min=1.0)
        return (weight * ((pred - target) ** 2).mean(dim=tuple(range(1, x0.ndim)))).mean()

    def sample_grid(self, path, n, steps):
        return super().sample_grid(path, n, self.k)

"""The training loop: one readable function with the real features (nanoGPT style).

AdamW with linear warm-up, gradient clipping, EMA weights for sampling, bf16 autocast on
CPUs that support it (fp32 master weights, no loss scaling needed for bf16), periodic
sample grids and checkpoints, a CSV log (``log.csv``) a person can plot, a progress bar
with ETA, and a budget in steps or wall-clock minutes.

Checkpoints (``OUT/checkpoints/step-NNNNNNN/``) hold the model, EMA, optimizer state, all
random-number-generator states and the step, written atomically (see :mod:`checkpoint`), so
``--resume`` continues a killed run exactly where its last checkpoint left it: with a step
budget the final weights are bit-identical to those of an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from torchdiffusion.training import distributed

from torchdiffusion.io import faults
from torchdiffusion.io.checkpoint import (atomic_write_text, check_state, restore_rng, load_state_dict_strict, read_json, read_tensors, remove_checkpoint,
                         verify_checkpoint, write_checkpoint)
from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.data import load_dataset
from torchdiffusion.denoiser import image_conditions
from torchdiffusion.training.ema import EMA
from torchdiffusion.io.runs import RunLock, CHECKPOINT_KIND, checkpoints_of, latest_checkpoint
from torchdiffusion.training.config import DEFAULT_MINUTES, TrainConfig
from torchdiffusion.training.optim import load_optimizer, lr_at, optimizer_tensors, resolve_precision
from torchdiffusion.errors import CheckpointError, ConfigError, TorchDiffusionError
from torchdiffusion.io.images import save_grid
from torchdiffusion.denoiser.losses import WEIGHTINGS, diffusion_loss
from torchdiffusion.denoiser.model import ModelConfig, build_denoiser
from torchdiffusion.pipeline.folders import save_model
from torchdiffusion.pipeline.pipeline import DiffusionPipeline
from torchdiffusion.denoiser import text as text_conditioning  # looked up at call time: tests swap the encoder
from torchdiffusion.training.previews import sample_grid
from torchdiffusion.training.signals import StopOnSignal, TrainingStopped
from torchdiffusion.data.captions import TRAIN_TEMPLATES, _fill
from torchdiffusion.diffusion.parameterization import Denoiser
from torchdiffusion.evaluation.evaluate import TrainingEvaluator

log = logging.getLogger("torchdiffusion")
# window_steps: the optimizer steps the row's loss and images/s average (--log-every, fewer in the first row
# after a resume, which also has resumed = 1)
LOG_FIELDS = ["step", "elapsed_s", "loss", "lr", "grad_norm", "images_per_s", "nan_skipped", "window_steps", "resumed"]


class Trainer:
    """Holds the training state; :meth:`train` runs the loop."""

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig, dataset: ImageDataset | None = None,
                 dist_info: distributed.DistInfo | None = None):
        train_config.validate()
        model_config.validate()
        self.cfg = train_config
        self.model_config = model_config
        self.out = Path(train_config.out)
        if train_config.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("--device cuda was given but no CUDA GPU is available; use --device cpu")
        self.dist = dist_info or distributed.DistInfo()
        self.micro_batch = distributed.check_batch(train_config.batch_size, self.dist.world_size,
                                                   train_config.grad_accum)
        device = train_config.device
        if device == "cuda" and self.dist.enabled:
            device = f"cuda:{self.dist.local_rank}"
        self.device = torch.device(device)
        self.dataset = dataset if dataset is not None else load_dataset(
            train_config.data, model_config.unet.image_size, model_config.unet.in_channels)
        ds, u = self.dataset, model_config.unet
        if model_config.conditioning == "class":
            if ds.labels is None:
                raise ConfigError(f"class conditioning needs class labels, but dataset {ds.name} has none "
                                  "(put each class's images in its own sub-folder)")
            if int(ds.labels.max()) >= u.num_classes:
                raise ConfigError(f"dataset {ds.name} has label {int(ds.labels.max())} but the model has "
                                  f"{u.num_classes} classes")
        if ds.channels != u.in_channels or ds.image_size != u.image_size:
            raise ConfigError(f"dataset {ds.name} has {ds.channels}×{ds.image_size}×{ds.image_size} images but the "
                              f"model expects {u.in_channels}×{u.image_size}×{u.image_size}")
        self.text = None
        if model_config.conditioning == "text":

            self.text = text_conditioning.TextConditioner(text_conditioning.build_text_encoder(model_config.text_encoder), ds,
                                                         cache_dir=self.out)
        torch.manual_seed(train_config.seed)
        self.denoiser = build_denoiser(model_config).to(self.device)
        self.network = self.denoiser.network
        self.ema = EMA(self.network, train_config.ema_decay)
        self.ddp = None
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                self.network, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=train_config.lr,
                                           weight_decay=train_config.weight_decay)
        self.generator = torch.Generator().manual_seed(train_config.seed)
        self.autocast_dtype = resolve_precision(train_config.precision, train_config.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None
        self.step = 0
        self.elapsed = 0.0
        self.nan_skipped = 0  # steps skipped for a non-finite loss or gradient, over the whole run
        self.train_seconds = 0.0  # this session's time inside optimizer steps (not grids, evaluation, checkpoints)
        self.session_steps = 0  # optimizer steps of this session (a resumed run counts from its resume)

    # --- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        opt_tensors, opt_meta = optimizer_tensors(self.optimizer)
        rng = {"generator": self.generator.get_state(), "torch_cpu": torch.get_rng_state()}
        if self.device.type == "cuda":  # dropout on the GPU draws from the device's generator
            rng["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        state = {"step": self.step, "elapsed_s": self.elapsed, "ema_updates": self.ema.num_updates,
                 "optimizer": opt_meta, "train_config": asdict(self.cfg), "nan_skipped": self.nan_skipped}
        folder = self.out / "checkpoints" / f"step-{self.step:07d}"
        write_checkpoint(folder, {"model": self.network.state_dict(), "ema": self.ema.model.state_dict(),
                                  "optimizer": opt_tensors, "rng": rng},
                         {"config": self.model_config.to_dict(), "state": state}, kind=CHECKPOINT_KIND)
        for _, old in checkpoints_of(self.out)[self.cfg.keep_checkpoints:]:
            remove_checkpoint(old)  # renamed aside first: a kill never leaves a half-deleted checkpoint
        return folder

    def load_checkpoint(self, folder: Path) -> None:
        verify_checkpoint(folder, CHECKPOINT_KIND)
        saved = ModelConfig.from_dict(read_json(folder, "config"))
        if saved.to_dict() != self.model_config.to_dict():
            raise CheckpointError(f"{folder}: checkpoint is of another model config than this run's")
        state = check_state(folder, read_json(folder, "state"))
        load_state_dict_strict(self.network, read_tensors(folder, "model"), folder / "model.safetensors")
        load_state_dict_strict(self.ema.model, read_tensors(folder, "ema"), folder / "ema.safetensors")
        load_optimizer(self.optimizer, read_tensors(folder, "optimizer"), state["optimizer"])
        rng = read_tensors(folder, "rng")
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed_s"])
        self.ema.num_updates = int(state["ema_updates"])
        self.nan_skipped = int(state.get("nan_skipped", 0))
        # the random state last, after everything that might draw from it (train() keeps the
        # evaluator's and the grids' draws off it, see rng_isolated)
        restore_rng(folder, rng, self.generator)
        if self.device.type == "cuda" and "torch_cuda" in rng:
            torch.cuda.set_rng_state(rng["torch_cuda"], self.device)

    # --- the loop ----------------------------------------------------------------------
    def _batch(self) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:
        """This process's slice of the global batch: images, conditions, timesteps, noise.

        Every random draw is made for the whole global batch from the run's one generator,
        in a fixed order, and then sliced by rank, so N processes see exactly the batch one
        process would (and a resumed run the batch an uninterrupted one would).
        """
        b = self.cfg.batch_size
        idx = torch.randint(len(self.dataset), (b,), generator=self.generator)
        flip = torch.rand(b, generator=self.generator) < 0.5 if self.cfg.hflip else None
        drop = caption = None
        if self.model_config.conditioning in ("class", "text"):
            drop = torch.rand(b, generator=self.generator) < self.cfg.cond_drop_prob
        if self.text is not None:
            caption = self.text.draw(idx, drop, self.generator)
        t = torch.randint(0, self.denoiser.schedule.num_timesteps, (b,), generator=self.generator)
        shape = (b, self.dataset.channels, self.dataset.image_size, self.dataset.image_size)
        noise = torch.randn(shape, generator=self.generator)
        task = self.model_config.image_condition  # inpaint / superres models: see denoiser/image_conditions.py
        if task:
            draws = image_conditions.draw(task, shape, self.generator)
        mine = slice(self.dist.rank * b // self.dist.world_size, (self.dist.rank + 1) * b // self.dist.world_size)
        idx, t, noise = idx[mine], t[mine], noise[mine]
        x = self.dataset.batch(idx, None if flip is None else flip[mine]).to(self.device, non_blocking=True)
        cond = {}
        if caption is not None:
            cond = self.text.cond(caption[mine], self.device)
        elif drop is not None:
            labels = self.dataset.labels[idx].clone()
            labels[drop[mine]] = self.model_config.unet.num_classes  # the null class
            cond["class_labels"] = labels.to(self.device)
        if task:
            cond["cond_image"] = image_conditions.build(task, x, draws, mine)
        return x, cond, t, noise

    def train_step(self) -> tuple[float, float]:
        """One optimizer step over the global batch (this rank's share, in micro-batches)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.cfg)
        x, cond, t, noise = self._batch()
        net = self.ddp or self.network
        self.optimizer.zero_grad(set_to_none=True)
        k, m = self.cfg.grad_accum, self.micro_batch
        total = 0.0
        for i in range(k):
            part = slice(i * m, (i + 1) * m)
            sync = i == k - 1 or self.ddp is None
            ctx = contextlib.nullcontext() if sync else self.ddp.no_sync()
            with ctx:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                                    enabled=self.autocast_dtype is not None):
                    loss = self.compute_loss(net, x[part], t[part], noise[part],
                                             {key: v[part] for key, v in cond.items()})
                loss = loss / k
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += loss.detach()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.cfg.grad_clip)
        if self._non_finite(total, grad_norm):  # skip the update: no optimizer or EMA step; train() counts it
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler:
                self.scaler.update()  # lowers the fp16 loss scale, as for any overflow
            self.step += 1
            return float("nan"), float("nan")
        faults.point("step")
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.ema.update(self.network)
        self.step += 1
        if self.dist.enabled:  # report the global mean loss
            torch.distributed.all_reduce(total)
            total /= self.dist.world_size
        return float(total), grad_norm.item()

    def compute_loss(self, net, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, cond: dict) -> torch.Tensor:
        """The loss of one micro-batch (the weighted denoising loss; a distillation trainer overrides it)."""
        return diffusion_loss(net, self.denoiser.schedule, x0, self.model_config.parameterization, self.cfg.weighting,
                              self.cfg.min_snr_gamma, t=t, noise=noise, **cond)

    def _non_finite(self, loss, grad_norm: torch.Tensor) -> bool:
        """True (on every rank) when the loss or, without an fp16 scaler (which handles its own
        overflows), the gradient norm is NaN/Inf on any rank."""
        bad = not math.isfinite(float(loss)) or (self.scaler is None and not math.isfinite(grad_norm.item()))
        if self.dist.enabled:
            flag = torch.tensor([float(bad)], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            bad = bool(flag.item())
        return bad

    def make_pipeline(self) -> DiffusionPipeline:
        """The EMA model as a pipeline (a latent trainer's also holds its VAE)."""
        return DiffusionPipeline(self._ema_denoiser(), self.model_config)

    def export_model(self, model_dir: Path) -> Path:
        """Write the exported model folder (a latent trainer writes a pipeline folder)."""
        return save_model(model_dir, self._ema_denoiser(), self.model_config)

    def sample_grid(self, path: Path, n: int, steps: int) -> Path:
        if self.model_config.image_condition:  # inpaint / superres: rows of (input, output, truth)
            return sample_grid(self, path, n, steps)
        pipe = self.make_pipeline()
        labels = prompts = None
        nrow = None
        if self.model_config.conditioning == "class":  # rows of classes 0, 1, 2, …
            k = self.model_config.unet.num_classes
            n = -(-n // k) * k  # whole rows: 64 → 70 for ten classes
            labels = torch.arange(n) % k
            nrow = k
        elif self.text is not None:  # a few of the training captions, one per column
            if self.dataset.name == "mnist":

                prompts = [_fill(TRAIN_TEMPLATES[0], c) for c in range(10)]
            else:
                step = max(1, len(self.text.unique) // 8)
                prompts = self.text.unique[::step][:8]
            nrow = len(prompts)
            prompts = [prompts[i % len(prompts)] for i in range(n)]
            pipe.text_encoder = self.text.encoder
        images = pipe.generate(n=n, steps=steps, sampler=self.cfg.sampler, seed=self.cfg.seed, progress=False,
                               class_labels=labels, prompt=prompts, guidance_scale=self.cfg.sample_guidance_scale)
        return save_grid(images, path, nrow=nrow, scale=2 if self.model_config.unet.image_size <= 32 else 1)

    def _ema_denoiser(self):
        den = Denoiser(self.ema.model, self.denoiser.schedule, self.model_config.parameterization)
        den.distilled_steps, den.guidance_range = self.denoiser.distilled_steps, self.denoiser.guidance_range
        return den

    def _budget_done(self) -> bool:
        if self.cfg.steps is not None and self.step >= self.cfg.steps:
            return True
        return self.cfg.minutes is not None and self.elapsed >= self.cfg.minutes * 60

    def _open_log(self):
        path = self.out / "log.csv"
        rows = []
        if path.exists() and self.step > 0:  # keep the rows up to the resumed step
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= self.step]
        import io

        text = io.StringIO()  # rewritten atomically, then appended to: a kill never loses the earlier rows
        writer = csv.DictWriter(text, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in rows)
        atomic_write_text(path, text.getvalue())
        fh = open(path, "a", newline="")
        return fh, csv.DictWriter(fh, fieldnames=LOG_FIELDS)

    def train(self) -> Path:
        """Run until the budget is spent; write the EMA model to ``OUT/model`` and ``OUT/samples.png``.

        In a distributed run only rank 0 writes (log, grids, checkpoints, model); the others
        wait at a barrier after each checkpoint, and rank 0 decides when a time budget ends.
        Rank 0 holds the run folder's lock (:class:`~torchdiffusion.io.runs.RunLock`) meanwhile.
        A stop signal ends the run after the current step with a checkpoint
        (:class:`~torchdiffusion.training.signals.TrainingStopped`).
        """
        with RunLock(self.out) if self.dist.is_main else contextlib.nullcontext():
            return self._train()

    def _train(self) -> Path:
        cfg, main = self.cfg, self.dist.is_main
        if cfg.steps is None and cfg.minutes is None:
            cfg.minutes = DEFAULT_MINUTES
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            log_fh, writer = self._open_log()

        with self.rng_isolated():  # building the feature network draws from the global RNG dropout uses
            evaluator = TrainingEvaluator.for_trainer(self) if main else None  # OUT/eval.csv, or None when off
        # the bar counts optimizer steps (its rate: steps/s of wall time, grids and evaluation included);
        # its postfix shows images/s of the optimizer steps alone, the number log.csv has
        bar = tqdm(total=cfg.steps, initial=self.step, desc="training", unit=" steps",
                   disable=not (cfg.progress and main), dynamic_ncols=True)
        window_loss, window_n, window_t0, window_start = 0.0, 0, self.train_seconds, self.step
        resumed_row = self.step > 0  # the first row after a resume is marked
        nan_run = 0  # consecutive skipped steps
        self.network.train()
        stop = StopOnSignal().__enter__()  # SIGTERM/SIGINT/SIGHUP: finish the step, checkpoint, stop
        stopped = False
        try:
            while True:
                # a stop signal on any rank stops all of them (and every rank reports that signal)
                signum = distributed.max_over_ranks(stop.signum or 0, self.dist, self.device)
                stopped = signum > 0
                if stopped or distributed.any_rank(self._budget_done(), self.dist, self.device):
                    break
                t0 = time.perf_counter()
                loss, grad_norm = self.train_step()
                dt_step = time.perf_counter() - t0
                self.elapsed += dt_step
                self.train_seconds += dt_step
                self.session_steps += 1
                if math.isfinite(loss):
                    nan_run = 0
                    window_loss += loss
                    window_n += 1
                else:  # train_step skipped this update
                    self.nan_skipped += 1
                    nan_run += 1
                    log.warning("step %d: non-finite loss or gradient; update skipped (%d in a row, %d in all)",
                                self.step, nan_run, self.nan_skipped)
                    if nan_run >= cfg.max_nan_steps:
                        raise TorchDiffusionError(
                            f"loss or gradients were NaN/Inf for {nan_run} steps in a row (up to step {self.step}; "
                            f"the last good checkpoint is kept): lower --lr (now {cfg.lr}) or --grad-clip, and with "
                            f"bf16/fp16 autocast (--precision {cfg.precision}) try --precision fp32; also check the "
                            "data for NaN/Inf pixels. --max-nan-steps sets how many are tolerated")
                if cfg.minutes is not None and cfg.steps is None and self.step > 20:
                    bar.total = int(cfg.minutes * 60 * self.step / max(self.elapsed, 1e-9))
                bar.update(1)
                if main and self.step % cfg.log_every == 0:
                    dt = self.train_seconds - window_t0
                    ips = (self.step - window_start) * cfg.batch_size / max(dt, 1e-9)
                    mean_loss = window_loss / window_n if window_n else float("nan")
                    writer.writerow({"step": self.step, "elapsed_s": f"{self.elapsed:.2f}",
                                     "loss": f"{mean_loss:.5f}", "lr": f"{lr_at(self.step - 1, cfg):.3g}",
                                     "grad_norm": f"{grad_norm:.4f}", "images_per_s": f"{ips:.1f}",
                                     "nan_skipped": self.nan_skipped, "window_steps": self.step - window_start,
                                     "resumed": int(resumed_row)})
                    resumed_row = False
                    log_fh.flush()
                    bar.set_postfix({"loss": f"{mean_loss:.4f}", "images/s": f"{ips:.0f}"})
                    window_loss, window_n, window_t0, window_start = 0.0, 0, self.train_seconds, self.step
                if main and self.step % cfg.sample_every == 0:
                    t0 = time.perf_counter()
                    with self.rng_isolated():
                        self.sample_grid(self.out / "samples" / f"step-{self.step:07d}.png", cfg.sample_n,
                                         cfg.sample_steps)
                    self.elapsed += time.perf_counter() - t0
                if evaluator is not None and evaluator.due(self.step):
                    t0 = time.perf_counter()
                    with self.rng_isolated():
                        evaluator.run(self)
                    self.elapsed += time.perf_counter() - t0  # counts against the budget, like grids
                if self.step % cfg.checkpoint_every == 0:
                    self._checkpoint_all_ranks()
            if evaluator is not None and not stopped and evaluator.due_final(self.step):
                with self.rng_isolated():
                    evaluator.run(self)  # the final weights (after the budget, like the final grid)
            if stopped:
                if not checkpoints_of(self.out) or checkpoints_of(self.out)[0][0] != self.step:
                    self._checkpoint_all_ranks()
                raise TrainingStopped(self.step, signum, self.out)
        finally:
            stop.__exit__(None, None, None)
            bar.close()
            if main:
                log_fh.close()
                if evaluator is not None:
                    evaluator.close()
        if not checkpoints_of(self.out) or checkpoints_of(self.out)[0][0] != self.step:
            self._checkpoint_all_ranks()
        if self.dist.enabled:
            diff = distributed.max_weight_difference(self.network, self.dist)
            if main:
                log.info("weights across %d ranks: max |difference| = %.3g", self.dist.world_size, diff)
        model_dir = self.out / "model"
        if main:
            self.export_model(model_dir)
            grid = self.sample_grid(self.out / "samples.png", cfg.sample_n, cfg.final_steps)
            log.debug("trained %d steps in %.1f min; model in %s, samples in %s", self.step, self.elapsed / 60,
                      model_dir, grid)  # the CLI prints the one summary line
        distributed.barrier(self.dist)
        return model_dir

    def rng_isolated(self):
        """A context in which the global torch RNG may be used (grids, evaluation, building the
        feature network) without changing the state training continues from: a run that
        evaluates is then bit-identical to one resumed from any of its checkpoints."""
        devices = [self.device] if self.device.type == "cuda" else []
        return torch.random.fork_rng(devices=devices)

    @property
    def images_per_s(self) -> float:
        """Images per second of this session's optimizer steps (all processes together)."""
        return self.session_steps * self.cfg.batch_size / max(self.train_seconds, 1e-9)

    def _checkpoint_all_ranks(self) -> None:
        if self.dist.is_main:
            self.save_checkpoint()
        distributed.barrier(self.dist)



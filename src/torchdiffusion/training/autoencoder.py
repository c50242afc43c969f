"""Training the autoencoder (``torchdiffusion train-vae``): reconstruction + KL + optional
patch-GAN, the first stage of latent diffusion (Rombach et al. 2022, §3.1).

The generator (autoencoder) loss per batch is

    L = L_rec + w_KL · KL/(C·H·W) + λ · d · L_G,

* L_rec: the per-pixel mean of |x - x̂| (``l1``) or (x - x̂)² (``l2``), x̂ decoded from a
  posterior sample z = μ + σ ε;
* KL: Σ_j ½(μ_j² + σ_j² - 1 - log σ_j²) per image (see :class:`autoencoder.DiagonalGaussian`),
  divided by the pixel count like L_rec, so w_KL means what LDM's ``kl_weight`` (1e-6) means
  with its summed losses;
* L_G = -E[D(x̂)]: the hinge generator loss against a PatchGAN discriminator D (Isola et al.
  2017, "pix2pix", §3.2: a conv net whose outputs each judge one overlapping patch), turned on
  after ``disc_start`` steps (d = 0 before, 1 after);
* λ: the adaptive weight of Esser et al. 2021 ("Taming Transformers", eq. 7),

      λ = ‖∇_{G_L} L_rec‖ / (‖∇_{G_L} L_G‖ + 10⁻⁴)     (clamped to [0, 10⁴], times ``disc_weight``)

  where G_L is the decoder's last layer: the GAN gradient is scaled to the size of the
  reconstruction gradient there, whatever their raw magnitudes.

The discriminator minimises the hinge loss ½(E[relu(1 - D(x))] + E[relu(1 + D(x̂))]). The
perceptual (LPIPS) term of LDM's loss is left out: it needs pretrained VGG weights.

Checkpoints (``OUT/checkpoints/step-NNNNNNN/``) hold the autoencoder, the discriminator, both
optimizers, the RNG states and the step (atomic, see :mod:`checkpoint`), so ``--resume``
continues exactly. At the end the autoencoder is exported to ``OUT/vae/`` with the latent
scale factor computed from the training images, held-out PSNR/SSIM go to ``OUT/eval.json`` and
a grid of held-out originals (odd rows) over reconstructions (even rows) to
``OUT/reconstructions.png``.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from torchdiffusion.networks.autoencoder import Autoencoder, AutoencoderConfig
from torchdiffusion.pipeline.folders import save_autoencoder
from torchdiffusion.training.signals import StopOnSignal, TrainingStopped
from torchdiffusion.io.checkpoint import (atomic_write_text, check_state, restore_rng, load_state_dict_strict, read_json, read_tensors, verify_checkpoint,
                         write_checkpoint)
from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.data import load_dataset
from torchdiffusion.errors import CheckpointError, ConfigError, TorchDiffusionError
from torchdiffusion.io.images import save_grid
from torchdiffusion.io.runs import VAE_CHECKPOINT_KIND, latest_checkpoint
from torchdiffusion.io.runs import checkpoints_of
from torchdiffusion.training.config import REC_LOSSES, VAETrainConfig
from torchdiffusion.data.dataset import split_holdout
from torchdiffusion.networks.discriminator import PatchDiscriminator
from torchdiffusion.evaluation.evaluate import evaluate_reconstruction, reconstruct
from torchdiffusion.training.optim import load_optimizer, optimizer_tensors
from torchdiffusion.denoiser.space import latent_scale_factor

log = logging.getLogger("torchdiffusion")
LOG_FIELDS = ["step", "elapsed_s", "rec_loss", "kl", "g_loss", "d_loss", "gan_weight", "images_per_s"]


# --- losses ------------------------------------------------------------------------------


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """½(E[relu(1 - D(x))] + E[relu(1 + D(x̂))])."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_gan_weight(rec_loss: Tensor, g_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4,
                        eps: float = 1e-4) -> Tensor:
    """λ = ‖∇_{last_layer} rec_loss‖ / (‖∇_{last_layer} g_loss‖ + eps), clamped to
    [0, max_weight] and detached (Esser et al. 2021, eq. 7)."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + eps)).clamp(0.0, max_weight).detach()


def reconstruction_loss(x: Tensor, x_hat: Tensor, kind: str) -> Tensor:
    if kind == "l1":
        return (x - x_hat).abs().mean()
    if kind == "l2":
        return ((x - x_hat) ** 2).mean()
    raise ConfigError(f"unknown reconstruction loss {kind!r}; choose one of {REC_LOSSES}")


# --- image quality -----------------------------------------------------------------------


def load_vae_data(cfg: VAETrainConfig, model_config: AutoencoderConfig) -> tuple[ImageDataset, ImageDataset]:
    """The training and held-out images for a run: MNIST's own train/test split, else a
    seeded ``holdout`` fraction of the data."""
    size, ch = model_config.image_size, model_config.in_channels
    if str(cfg.data).lower() == "mnist":
        return load_dataset("mnist", size, ch, split="train"), load_dataset("mnist", size, ch, split="test")
    return split_holdout(load_dataset(cfg.data, size, ch), cfg.holdout, cfg.seed)


# --- the trainer -------------------------------------------------------------------------
class VAETrainer:
    """Holds the state of a train-vae run; :meth:`train` runs the loop."""
    def __init__(self, model_config: AutoencoderConfig, cfg: VAETrainConfig,
                 data: tuple[ImageDataset, ImageDataset] | None = None):
        cfg.validate()
        model_config.validate()
        self.cfg, self.model_config = cfg, model_config
        self.out = Path(cfg.out)
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("--device cuda was given but no CUDA GPU is available; use --device cpu")
        self.device = torch.device(cfg.device)
        self.train_set, self.heldout = data if data is not None else load_vae_data(cfg, model_config)
        for ds in (self.train_set, self.heldout):
            if ds.channels != model_config.in_channels or ds.image_size != model_config.image_size:
                raise ConfigError(f"dataset {ds.name} has {ds.channels}×{ds.image_size}px images but the autoencoder "
                                  f"expects {model_config.in_channels}×{model_config.image_size}px")
        torch.manual_seed(cfg.seed)
        self.model = Autoencoder(model_config).to(self.device)
        self.disc = PatchDiscriminator(model_config.in_channels, cfg.disc_channels, cfg.disc_layers).to(self.device)
        if cfg.gan:
            self._check_disc_fits(model_config)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        self.opt_disc = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.elapsed = 0.0

    def _check_disc_fits(self, model_config: AutoencoderConfig) -> None:
        size = model_config.image_size
        self.disc.eval()
        try:
            with torch.no_grad():
                self.disc(torch.zeros(1, model_config.in_channels, size, size, device=self.device))
        except RuntimeError:
            raise ConfigError(f"{size}px images are too small for a {self.cfg.disc_layers}-layer PatchGAN "
                              "discriminator: lower --disc-layers") from None
        finally:
            self.disc.train()

    # --- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        opt_t, opt_meta = optimizer_tensors(self.opt)
        disc_t, disc_meta = optimizer_tensors(self.opt_disc)
        rng = {"generator": self.generator.get_state(), "torch_cpu": torch.get_rng_state()}
        state = {"step": self.step, "elapsed_s": self.elapsed, "optimizer": opt_meta, "disc_optimizer": disc_meta,
                 "train_config": asdict(self.cfg)}
        folder = self.out / "checkpoints" / f"step-{self.step:07d}"
        write_checkpoint(folder, {"model": self.model.state_dict(), "disc": self.disc.state_dict(),
                                  "optimizer": opt_t, "disc_optimizer": disc_t, "rng": rng},
                         {"config": self.model_config.to_dict(), "state": state}, kind=VAE_CHECKPOINT_KIND)
        for _, old in checkpoints_of(self.out)[self.cfg.keep_checkpoints:]:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def load_checkpoint(self, folder: Path) -> None:
        verify_checkpoint(folder, VAE_CHECKPOINT_KIND)
        saved = AutoencoderConfig.from_dict(read_json(folder, "config"))
        if saved.to_dict() != self.model_config.to_dict():
            raise CheckpointError(f"{folder}: checkpoint is of another autoencoder config than this run's")
        state = check_state(folder, read_json(folder, "state"), ("optimizer", "disc_optimizer"), ("step",))
        load_state_dict_strict(self.model, read_tensors(folder, "model"), folder / "model.safetensors")
        load_state_dict_strict(self.disc, read_tensors(folder, "disc"), folder / "disc.safetensors")
        load_optimizer(self.opt, read_tensors(folder, "optimizer"), state["optimizer"])
        load_optimizer(self.opt_disc, read_tensors(folder, "disc_optimizer"), state["disc_optimizer"])
        rng = read_tensors(folder, "rng")
        self.step = int(state["step"])
        self.elapsed = float(state["elapsed_s"])
        restore_rng(folder, rng, self.generator)  # last: nothing after it draws from the generators

    # --- the loop ----------------------------------------------------------------------
    def gan_active(self) -> bool:
        return self.cfg.gan and self.step >= self.cfg.disc_start

    def train_step(self) -> dict:
        cfg = self.cfg
        lr = cfg.lr * min(1.0, (self.step + 1) / max(1, cfg.warmup_steps))
        for opt in (self.opt, self.opt_disc):
            for group in opt.param_groups:
                group["lr"] = lr
        b = cfg.batch_size
        idx = torch.randint(len(self.train_set), (b,), generator=self.generator)
        flip = torch.rand(b, generator=self.generator) < 0.5 if cfg.hflip else None
        x = self.train_set.batch(idx, flip).to(self.device)
        c = self.model_config
        noise = torch.randn((b, c.latent_channels, x.shape[-2] // c.downsample_factor,
                             x.shape[-1] // c.downsample_factor), generator=self.generator)
        posterior = self.model.encode(x)
        x_hat = self.model.decode(posterior.sample(noise=noise))
        rec = reconstruction_loss(x, x_hat, cfg.rec_loss)
        kl = posterior.kl().mean() / x[0].numel()
        loss = rec + cfg.kl_weight * kl
        stats = {"rec_loss": rec.item(), "kl": kl.item(), "g_loss": float("nan"), "d_loss": float("nan"),
                 "gan_weight": float("nan")}
        gan = self.gan_active()
        if gan:
            self.disc.requires_grad_(False)
            g_loss = -self.disc(x_hat).mean()
            weight = adaptive_gan_weight(rec, g_loss, self.model.last_layer) * cfg.disc_weight
            loss = loss + weight * g_loss
            self.disc.requires_grad_(True)
            stats.update(g_loss=g_loss.item(), gan_weight=weight.item())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        if gan:
            self.opt_disc.zero_grad(set_to_none=True)
            d_loss = hinge_d_loss(self.disc(x), self.disc(x_hat.detach()))
            d_loss.backward()
            self.opt_disc.step()
            stats["d_loss"] = d_loss.item()
        self.step += 1
        total = loss.detach().item()
        if not math.isfinite(total):
            raise TorchDiffusionError(f"loss became {total} at step {self.step}: lower --lr (now {cfg.lr})")
        return stats

    def reconstruction_grid(self, path: Path, n: int = 32) -> Path:
        """Held-out originals (odd rows) over their reconstructions (even rows)."""
        n = min(n, len(self.heldout))
        x = self.heldout.batch(torch.arange(n))
        self.model.eval()
        rec = reconstruct(self.model, x)
        self.model.train()
        nrow = min(8, n)
        rows = [t for i in range(0, n, nrow) for t in (x[i:i + nrow], rec[i:i + nrow])]
        return save_grid(torch.cat(rows), path, nrow=nrow, scale=2 if self.model_config.image_size <= 32 else 1)

    def _budget_done(self) -> bool:
        if self.cfg.steps is not None and self.step >= self.cfg.steps:
            return True
        return self.cfg.minutes is not None and self.elapsed >= self.cfg.minutes * 60

    def _open_log(self):
        path = self.out / "log.csv"
        rows = []
        if path.exists() and self.step > 0:
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= self.step]
        fh = open(path, "w", newline="")
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in rows)
        fh.flush()
        return fh, writer

    def export(self) -> Path:
        """Write ``OUT/vae/`` with the scale factor measured on the training images."""
        self.model.eval()
        n = min(self.cfg.scale_images, len(self.train_set))
        idx = torch.randperm(len(self.train_set), generator=torch.Generator().manual_seed(self.cfg.seed))[:n]
        scale = latent_scale_factor(self.model, self.train_set.batch(idx.sort().values))
        exported = AutoencoderConfig.from_dict(dict(self.model_config.to_dict(), scale_factor=scale))
        self.model.config = exported
        folder = save_autoencoder(self.out / "vae", self.model, exported)
        self.model.config = self.model_config
        self.model.train()
        return folder

    def train(self) -> Path:
        cfg = self.cfg
        if cfg.steps is None and cfg.minutes is None:
            cfg.minutes = 5.0
        self.out.mkdir(parents=True, exist_ok=True)
        log_fh, writer = self._open_log()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="training vae", unit=" steps", disable=not cfg.progress,
                   dynamic_ncols=True)
        window: dict[str, list[float]] = {}
        window_t0, window_start = time.perf_counter(), self.step
        self.model.train()
        self.disc.train()
        stop = StopOnSignal().__enter__()  # SIGTERM/SIGINT/SIGHUP: finish the step, checkpoint, stop
        try:
            while not self._budget_done():
                if stop.requested:
                    if not checkpoints_of(self.out) or checkpoints_of(self.out)[0][0] != self.step:
                        self.save_checkpoint()
                    raise TrainingStopped(self.step, stop.signum, self.out)
                t0 = time.perf_counter()
                stats = self.train_step()
                self.elapsed += time.perf_counter() - t0
                for k, v in stats.items():
                    window.setdefault(k, []).append(v)
                if cfg.minutes is not None and cfg.steps is None and self.step > 20:
                    bar.total = int(cfg.minutes * 60 * self.step / max(self.elapsed, 1e-9))
                bar.update(1)
                if self.step % cfg.log_every == 0:
                    dt = time.perf_counter() - window_t0
                    row = {"step": self.step, "elapsed_s": f"{self.elapsed:.2f}",
                           "images_per_s": f"{(self.step - window_start) * cfg.batch_size / max(dt, 1e-9):.1f}"}
                    for k, vals in window.items():
                        vals = [v for v in vals if math.isfinite(v)]
                        row[k] = f"{sum(vals) / len(vals):.5g}" if vals else ""
                    writer.writerow(row)
                    log_fh.flush()
                    bar.set_postfix(rec=row["rec_loss"], kl=row["kl"])
                    window, window_t0, window_start = {}, time.perf_counter(), self.step
                if self.step % cfg.sample_every == 0:
                    t0 = time.perf_counter()
                    self.reconstruction_grid(self.out / "samples" / f"step-{self.step:07d}.png")
                    self.elapsed += time.perf_counter() - t0
                if self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            stop.__exit__(None, None, None)
            bar.close()
            log_fh.close()
        if not checkpoints_of(self.out) or checkpoints_of(self.out)[0][0] != self.step:
            self.save_checkpoint()
        folder = self.export()
        self.reconstruction_grid(self.out / "reconstructions.png")
        result = evaluate_reconstruction(self.model, self.heldout)
        result.update(step=self.step, train_seconds=self.elapsed, scale_factor=read_json(folder, "config")["scale_factor"])
        atomic_write_text(self.out / "eval.json", json.dumps(result, indent=2))
        log.info("held-out reconstruction (%d images): PSNR %.2f dB, SSIM %.4f; latents %d× smaller; VAE in %s",
                 result["n"], result["psnr"], result["ssim"], round(result["compression"]), folder)
        return folder


def prepare_vae_run(model_config: AutoencoderConfig | None, cfg: VAETrainConfig, resume: bool = False,
                    data: tuple[ImageDataset, ImageDataset] | None = None) -> VAETrainer:
    """A trainer for a new run, or (``resume``) one restored from the run's latest checkpoint
    (its configs come from the checkpoint; the budget may change)."""
    out = Path(cfg.out)
    existing = checkpoints_of(out)
    if resume:
        folder = latest_checkpoint(out, VAE_CHECKPOINT_KIND)
        if folder is None:
            raise CheckpointError(f"{out}: no usable train-vae checkpoint to resume from")
        saved_model = AutoencoderConfig.from_dict(read_json(folder, "config"))
        saved = VAETrainConfig.from_dict(read_json(folder, "state")["train_config"])
        for name in ("steps", "minutes", "progress", "device"):
            if getattr(cfg, name) is not None:
                setattr(saved, name, getattr(cfg, name))
        saved.out = str(out)
        trainer = VAETrainer(saved_model, saved, data)
        trainer.load_checkpoint(folder)
        log.info("resumed %s at step %d", folder, trainer.step)
        return trainer
    if existing:
        raise ConfigError(f"{out} already holds a training run (step {existing[0][0]}); pass --resume to continue "
                          "it or choose another --out")
    if model_config is None:
        raise ConfigError("a new train-vae run needs an autoencoder config")
    return VAETrainer(model_config, cfg, data)

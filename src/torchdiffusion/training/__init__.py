"""Training runs: diffusion (pixel or latent) and autoencoder trainers, their configs, optimizer
state, EMA, DDP, and the grids written while training."""
from torchdiffusion.training.config import TrainConfig, VAETrainConfig
from torchdiffusion.training.diffusion import Trainer
from torchdiffusion.training.run import prepare_run, trainer_class

__all__ = ["TrainConfig", "Trainer", "VAETrainConfig", "prepare_run", "trainer_class"]

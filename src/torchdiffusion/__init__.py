"""torchdiffusion: train, sample and edit with image diffusion models on PyTorch."""

__version__ = "0.1.0"

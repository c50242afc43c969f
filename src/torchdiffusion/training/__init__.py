"""torchdiffusion.training."""

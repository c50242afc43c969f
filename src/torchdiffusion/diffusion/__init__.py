"""torchdiffusion.diffusion."""

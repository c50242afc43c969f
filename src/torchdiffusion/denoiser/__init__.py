"""torchdiffusion.denoiser."""

"""torchdiffusion.io."""

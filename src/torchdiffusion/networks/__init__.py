"""torchdiffusion.networks."""

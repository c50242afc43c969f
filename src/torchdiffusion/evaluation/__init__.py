"""torchdiffusion.evaluation.evaluate."""

"""Judging samples with an independent model: FID/KID/precision/recall on named features, the
packaged MNIST classifier, PSNR/SSIM of reconstructions."""
from torchdiffusion.evaluation.evaluate import TrainingEvaluator, evaluate_pipeline, evaluate_reconstruction

__all__ = ["TrainingEvaluator", "evaluate_pipeline", "evaluate_reconstruction"]

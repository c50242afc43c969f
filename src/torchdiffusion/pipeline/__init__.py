"""A trained model ready to use: :class:`DiffusionPipeline` (pixel or latent), and the folders it
is saved in and loaded from (:mod:`torchdiffusion.pipeline.folders`)."""
from torchdiffusion.pipeline.folders import (load_autoencoder, load_components, load_model, save_autoencoder,
                                             save_model, save_pipeline)
from torchdiffusion.pipeline.pipeline import DiffusionPipeline

__all__ = ["DiffusionPipeline", "load_autoencoder", "load_components", "load_model", "save_autoencoder",
           "save_model", "save_pipeline"]

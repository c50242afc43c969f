"""On disk: atomic checksummed safetensors + JSON checkpoints, the folder vocabulary and path
resolvers (``runs``), images ↔ tensors, and the named fault points of the fault suite."""
from torchdiffusion.io.checkpoint import read_json, read_tensors, verify_checkpoint, write_checkpoint
from torchdiffusion.io.images import as_images, as_mask, save_grid, to_pil
from torchdiffusion.io.runs import (checkpoints_of, find_autoencoder_folder, find_latent_pipeline, find_model_folder,
                                    latest_checkpoint)

__all__ = ["as_images", "as_mask", "checkpoints_of", "find_autoencoder_folder", "find_latent_pipeline",
           "find_model_folder", "latest_checkpoint", "read_json", "read_tensors", "save_grid", "to_pil",
           "verify_checkpoint", "write_checkpoint"]

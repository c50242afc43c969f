"""Text conditioning for training and sampling: prompts → (context tokens, mask, pooled).

Training keeps the frozen encoder's embeddings of every distinct caption once (cached on
disk with :func:`text_encoder.cached_encode`), and a table ``choices`` (N, K) of caption
indices per image: K = 1 for an image folder with one caption per image, K = 16 for MNIST
(one per training template, a fresh one drawn each step, so the model learns the digit and
not one phrasing). Condition dropout replaces a caption by the empty prompt "", whose
embedding is the unconditional input of classifier-free guidance.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.errors import ConfigError, DataError
from torchdiffusion.networks.text_encoder import MiniLMEncoder
from torchdiffusion.data.captions import TRAIN_TEMPLATES, _fill
from torchdiffusion.networks.text_encoder import cached_encode

DEFAULT_ENCODER = {"name": "minilm", "max_length": 32}


def build_text_encoder(spec: dict | None = None, device="cpu"):
    """The frozen encoder a model config names (only all-MiniLM-L6-v2 so far)."""
    spec = dict(DEFAULT_ENCODER, **(spec or {}))
    if spec["name"] != "minilm":
        raise ConfigError(f"unknown text encoder {spec['name']!r}; available: minilm")

    return MiniLMEncoder(max_length=int(spec["max_length"]), device=device)


def caption_choices(ds: ImageDataset) -> tuple[list[str], Tensor]:
    """(distinct captions, choices (N, K) of indices into them) for a captioned dataset.

    MNIST gets its template captions (every training template of the image's digit); other
    datasets use their own captions, one per image.
    """
    if ds.name == "mnist" and ds.captions is None:

        texts = [[_fill(t, c) for t in TRAIN_TEMPLATES] for c in range(10)]
        unique = sorted({t for row in texts for t in row})
        where = {t: i for i, t in enumerate(unique)}
        per_class = torch.tensor([[where[t] for t in row] for row in texts])
        return unique, per_class[ds.labels]
    if ds.captions is None:
        raise DataError(f"dataset {ds.name} has no captions: add a metadata.jsonl (file_name, text) or a .txt "
                        "beside each image, or use --condition class / none")
    missing = sum(1 for c in ds.captions if not c)
    if missing == len(ds.captions):
        raise DataError(f"dataset {ds.name}: every caption is empty")
    unique = sorted(set(ds.captions))
    where = {t: i for i, t in enumerate(unique)}
    return unique, torch.tensor([[where[c]] for c in ds.captions])


class TextConditioner:
    """Embeddings of a dataset's captions, and the batch conditions drawn from them."""
    def __init__(self, encoder, dataset: ImageDataset, cache_dir: Path | None = None):

        self.encoder = encoder
        self.unique, self.choices = caption_choices(dataset)
        if cache_dir is not None:
            emb = cached_encode(encoder, self.unique, Path(cache_dir) / "caption_embeddings.safetensors")
        else:
            emb = encoder.encode(self.unique)
        null = encoder.null_embedding(1)
        # row len(unique) is the empty prompt (condition dropout)
        self.tokens = torch.cat([emb.tokens, null.tokens.to(emb.tokens.dtype)])
        self.mask = torch.cat([emb.mask, null.mask])
        self.pooled = torch.cat([emb.pooled, null.pooled.to(emb.pooled.dtype)])
        self.null_index = len(self.unique)

    def draw(self, idx: Tensor, drop: Tensor, generator: torch.Generator) -> Tensor:
        """Caption indices for images ``idx``: a random choice per image, null where ``drop``."""
        k = self.choices.shape[1]
        col = torch.randint(k, (len(idx),), generator=generator) if k > 1 else torch.zeros(len(idx), dtype=torch.long)
        cap = self.choices[idx, col]
        cap[drop] = self.null_index
        return cap

    def cond(self, caption_idx: Tensor, device) -> dict:
        return {"context": self.tokens[caption_idx].to(device), "context_mask": self.mask[caption_idx].to(device),
                "pooled": self.pooled[caption_idx].to(device)}


def prompt_conditions(encoder, prompts: list[str], device) -> dict:
    """Denoiser keyword arguments for a list of prompts."""
    emb = encoder.encode(list(prompts))
    return {"context": emb.tokens.to(device), "context_mask": emb.mask.to(device), "pooled": emb.pooled.to(device)}

